#!/usr/bin/python3
"""A looping RTSP server for tests, benchmarks and demos (GStreamer RTSP server, 127.0.0.1 only).

    /usr/bin/python3 scripts/rtsp-server.py --port 8554 --file vtest.avi --paths cam-1,cam-2

One player decodes the file as a live source into `intervideosink` and seeks back to 0 at the end of
the stream, so the video loops forever. One media reads that player through `intervideosrc` and
encodes it as H.264 or, with `--codec h265`, H.265 (x264enc / x265enc tune=zerolatency, key frame
every 10 frames); every path and every
client plays that same media, as cameras with their own encoders would: the box under test does
not pay for one encoder per camera.
Prints `READY rtsp://127.0.0.1:<port>/<path> ...` once it listens. Use Debian's /usr/bin/python3:
a pyenv `python3` on PATH may lack `gi`.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class OneMediaFactory(GstRtspServer.RTSPMediaFactory):
    """A shared media factory that gives every path it is mounted on the same media."""

    def do_gen_key(self, _url):
        return "argus-one-media"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--file", default="/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    ap.add_argument("--paths", default="cam-1", help="comma-separated mount paths")
    ap.add_argument("--fps", type=int, default=10, help="frame rate served")
    ap.add_argument("--bitrate", type=int, default=1024, help="encoder bitrate, kbit/s")
    ap.add_argument("--codec", choices=["h264", "h265"], default="h264")
    args = ap.parse_args()
    Gst.init(None)

    channel = "argus-rtsp"
    # the player: decode at the recording's own pace (sync=true) into the inter-video channel
    player = Gst.parse_launch(
        f'filesrc location="{args.file}" ! decodebin ! videoconvert ! videorate ! '
        f"video/x-raw,format=I420,framerate={args.fps}/1 ! "
        f"intervideosink channel={channel} sync=true"
    )
    loops = {"n": 0}

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            loops["n"] += 1
            player.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"player error: {err.message} ({dbg})", file=sys.stderr, flush=True)
            loop.quit()
        return True

    bus = player.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    paths = [p.strip().strip("/") for p in args.paths.split(",") if p.strip()]
    factory = OneMediaFactory()
    encoder = {
        "h264": f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate={args.bitrate} "
        "threads=1 ! rtph264pay name=pay0 pt=96 config-interval=1",
        "h265": f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate={args.bitrate} "
        "option-string=pools=1:frame-threads=1 ! rtph265pay name=pay0 pt=96 config-interval=1",
    }[args.codec]
    factory.set_launch(
        f"( intervideosrc channel={channel} timeout=18446744073709551615 ! videoconvert ! "
        f"video/x-raw,format=I420,framerate={args.fps}/1 ! {encoder} )"
    )
    factory.set_shared(True)
    for path in paths:
        mounts.add_factory(f"/{path}", factory)

    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    player.set_state(Gst.State.PLAYING)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: (loop.quit(), False)[1])
    urls = " ".join(f"rtsp://127.0.0.1:{args.port}/{p}" for p in paths)
    print(f"READY {urls}", flush=True)
    try:
        loop.run()
    finally:
        player.set_state(Gst.State.NULL)
        print(f"stopped after {loops['n']} loops", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
