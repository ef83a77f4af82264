#!/usr/bin/python3
"""An RTSP camera that films a clock, for the live view's glass-to-glass latency (127.0.0.1 only).

    /usr/bin/python3 scripts/rtsp-clock-server.py --port 8554 --path cam-1

Each frame shows the wall-clock time it was made at (milliseconds since the epoch, modulo 2^32)
as 32 black or white blocks in a row, most significant bit first, each block 16x128 pixels of a
512x128 frame; a viewer that reads the blocks of the frame it shows and subtracts from its own
clock (the same machine) has the latency from the camera's "glass" to its screen. H.264 by
x264enc (tune=zerolatency, a key frame every second), served like scripts/rtsp-server.py.
Prints `READY rtsp://127.0.0.1:<port>/<path>` once it listens.
"""

import argparse
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

BITS = 32
WIDTH, HEIGHT = 256, 64


def frame(ms: int) -> bytes:
    """a GRAY8 frame of the 32 bits of `ms`, 8 pixels per bit (scaled twice by the pipeline)"""
    row = b"".join((b"\xff" if (ms >> (BITS - 1 - i)) & 1 else b"\x00") * (WIDTH // BITS) for i in range(BITS))
    return row * HEIGHT


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="cam-1")
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    Gst.init(None)

    channel = "argus-clock"
    player = Gst.parse_launch(
        f"appsrc name=src is-live=true format=time do-timestamp=true "
        f"caps=video/x-raw,format=GRAY8,width={WIDTH},height={HEIGHT},framerate={args.fps}/1 ! "
        f"videoconvert ! videoscale ! video/x-raw,format=I420,width={WIDTH * 2},height={HEIGHT * 2} ! "
        f"intervideosink channel={channel} sync=false"
    )
    src = player.get_by_name("src")

    def push():
        buf = Gst.Buffer.new_wrapped(frame(int(time.time() * 1000) % (1 << BITS)))
        src.emit("push-buffer", buf)
        return True

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( intervideosrc channel={channel} timeout=18446744073709551615 ! videoconvert ! "
        f"video/x-raw,format=I420,framerate={args.fps}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bitrate=1024 threads=1 ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(f"/{args.path.strip('/')}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    player.set_state(Gst.State.PLAYING)
    GLib.timeout_add(max(1, 1000 // args.fps), push)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: (loop.quit(), False)[1])
    print(f"READY rtsp://127.0.0.1:{args.port}/{args.path.strip('/')}", flush=True)
    try:
        loop.run()
    finally:
        player.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
