import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ArgusError } from '../../common/errors.ts';
import { type Fmp4Piece, Fmp4Splitter } from '../../device/live/fmp4.ts';

/** 30 frames of H.264 (a key frame every 10) remuxed by mp4mux the way the live view's passthrough does */
function encodedStream(): Buffer {
  return execFileSync(
    'gst-launch-1.0',
    [
      '-q',
      'videotestsrc',
      'num-buffers=30',
      '!',
      'video/x-raw,width=320,height=240,framerate=10/1',
      '!',
      'x264enc',
      'key-int-max=10',
      'bframes=0',
      'tune=zerolatency',
      '!',
      'h264parse',
      '!',
      'mp4mux',
      'fragment-duration=100',
      'streamable=true',
      '!',
      'fdsink',
      'fd=1',
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
}

const summary = (pieces: Fmp4Piece[]) =>
  pieces.map((p) =>
    p.kind === 'init' ? `init ${p.mime} ${p.bytes.length}` : `${p.key ? 'K' : '-'}${p.bytes.length}`,
  );

describe('fragmented MP4 splitter (the passthrough of the live view)', () => {
  const stream = encodedStream();
  const whole = new Fmp4Splitter().push(stream);

  it('finds the init segment with its codec, then a fragment per frame, every 10th starting with a key frame', () => {
    const first = whole[0]!;
    assert.equal(first.kind, 'init');
    assert.match(first.kind === 'init' ? first.mime : '', /^video\/mp4; codecs="avc1\.[0-9a-f]{6}"$/);
    const fragments = whole.slice(1);
    // a fragment per 100 ms (one frame); at the end of the stream mp4mux flushes the last two together
    assert.ok(fragments.length >= 29 && fragments.length <= 30, `${fragments.length} fragments`);
    assert.deepEqual(
      fragments.flatMap((f, i) => (f.kind === 'fragment' && f.key ? [i] : [])),
      [0, 10, 20],
    );
    assert.equal(
      whole.reduce((n, p) => n + p.bytes.length, 0),
      stream.length,
      'every byte of the stream is in a piece',
    );
  });

  it('gives the same pieces however the pipe cuts the stream', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 40 }), (cuts) => {
        const at = [...new Set(cuts)].sort((a, b) => a - b);
        const splitter = new Fmp4Splitter();
        const pieces: Fmp4Piece[] = [];
        let from = 0;
        for (const to of [...at, stream.length]) {
          pieces.push(...splitter.push(stream.subarray(from, to)));
          from = to;
        }
        assert.deepEqual(summary(pieces), summary(whole));
      }),
      { numRuns: 100 },
    );
  });

  it('refuses bytes that are not fragmented MP4 with an error, never more memory or a crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 2000 }), (bytes) => {
        const splitter = new Fmp4Splitter();
        try {
          splitter.push(Buffer.from(bytes));
        } catch (err) {
          assert.ok(err instanceof ArgusError, String(err));
        }
      }),
      { numRuns: 300 },
    );
    assert.throws(
      () => new Fmp4Splitter().push(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x6d, 0x6f, 0x6f, 0x66])),
      /not fragmented MP4/,
    );
  });
});
