import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import type { FullFrame } from '../../video/frame-source.ts';
import {
  blockPlanes,
  gstI420Layout,
  type I420Layout,
  i420LayoutOf,
  packedI420Layout,
} from '../../video/i420.ts';
import { JpegEncoder } from '../../video/jpeg-encoder.ts';

/** a frame of one colour (Y, U, V as a decoder emits them) in the given layout, the padding left at 0 */
function uniformFrame(
  width: number,
  height: number,
  [y, u, v]: readonly number[],
  layout: I420Layout,
): FullFrame {
  const data = new Uint8Array(layout.size);
  for (let row = 0; row < height; row++) data.fill(y!, row * layout.yStride, row * layout.yStride + width);
  for (let row = 0; row < layout.chromaHeight; row++) {
    data.fill(
      u!,
      layout.uOffset + row * layout.cStride,
      layout.uOffset + row * layout.cStride + layout.chromaWidth,
    );
    data.fill(
      v!,
      layout.vOffset + row * layout.cStride,
      layout.vOffset + row * layout.cStride + layout.chromaWidth,
    );
  }
  return { data, width, height, format: 'I420' };
}

/** BT.601 limited range to RGB, clamped: what the colour looks like */
function rgbOf([y, u, v]: readonly number[]): number[] {
  const c = 1.164 * (y! - 16);
  const clamp = (x: number) => Math.min(255, Math.max(0, x));
  return [
    clamp(c + 1.596 * (v! - 128)),
    clamp(c - 0.392 * (u! - 128) - 0.813 * (v! - 128)),
    clamp(c + 2.017 * (u! - 128)),
  ];
}

async function decode(jpeg: Buffer): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  return { data, width: info.width, height: info.height };
}

/** the largest difference of any channel of any pixel from one colour */
function worstFrom(decoded: { data: Buffer }, rgb: readonly number[]): number {
  let worst = 0;
  for (let i = 0; i < decoded.data.length; i++)
    worst = Math.max(worst, Math.abs(decoded.data[i]! - rgb[i % 3]!));
  return worst;
}

describe('I420 layouts', () => {
  it("GStreamer's pads rows to 4 bytes and planes to an even number of rows; packed does not", () => {
    assert.deepEqual(gstI420Layout(768, 576), packedI420Layout(768, 576));
    const gst = gstI420Layout(7, 5);
    assert.deepEqual(
      [gst.yStride, gst.cStride, gst.uOffset, gst.vOffset, gst.size, gst.chromaWidth, gst.chromaHeight],
      [8, 4, 48, 60, 72, 4, 3],
    );
    const packed = packedI420Layout(7, 5);
    assert.deepEqual(
      [packed.yStride, packed.cStride, packed.uOffset, packed.vOffset, packed.size],
      [7, 4, 35, 47, 59],
    );
  });

  it('tells the layout by the length, and refuses any other length or size', () => {
    assert.equal(i420LayoutOf({ data: new Uint8Array(72), width: 7, height: 5, format: 'I420' }).yStride, 8);
    assert.equal(i420LayoutOf({ data: new Uint8Array(59), width: 7, height: 5, format: 'I420' }).yStride, 7);
    assert.throws(
      () => i420LayoutOf({ data: new Uint8Array(60), width: 7, height: 5, format: 'I420' }),
      /7×5 holds 72 bytes \(59 packed\), not 60/,
    );
    assert.throws(
      () => i420LayoutOf({ data: new Uint8Array(0), width: 0, height: 5, format: 'I420' }),
      /0×5/,
    );
  });
});

describe('JpegEncoder', () => {
  const encoder = new JpegEncoder({ maxSizes: 3, timeoutMs: 10_000 });
  after(() => encoder.close());

  it('widens the limited range of the planes to the full range a JPEG holds: black is black, white is white', async () => {
    const w = 64;
    const h = 32;
    const layout = gstI420Layout(w, h);
    const frame = uniformFrame(w, h, [128, 128, 128], layout);
    for (let row = 0; row < h; row++) {
      frame.data.fill(16, row * w, row * w + w / 2);
      frame.data.fill(235, row * w + w / 2, row * w + w);
    }
    const out = await decode(await encoder.encode(blockPlanes(frame, false), 95));
    const at = (x: number, y: number) => [...out.data.subarray((y * w + x) * 3, (y * w + x) * 3 + 3)];
    for (const v of at(8, 16)) assert.ok(v <= 3, `black decodes as ${at(8, 16)}`);
    for (const v of at(56, 16)) assert.ok(v >= 252, `white decodes as ${at(56, 16)}`);
  });

  it('keeps the colour and size of frames of any size, in either layout (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 40 }),
        fc.boolean(),
        // colours well inside the gamut: a uniform block has no edge for the JPEG to ring on
        fc.tuple(
          fc.integer({ min: 60, max: 180 }),
          fc.integer({ min: 100, max: 156 }),
          fc.integer({ min: 100, max: 156 }),
        ),
        async (w, h, packed, yuv) => {
          const layout = packed ? packedI420Layout(w, h) : gstI420Layout(w, h);
          const out = await decode(
            await encoder.encode(blockPlanes(uniformFrame(w, h, yuv, layout), false), 90),
          );
          assert.deepEqual([out.width, out.height], [w, h]);
          const worst = worstFrom(out, rgbOf(yuv));
          assert.ok(
            worst <= 6,
            `${w}×${h} ${packed ? 'packed' : 'GStreamer layout'} YUV ${yuv}: off by ${worst}`,
          );
        },
      ),
      { numRuns: 40 },
    );
  });

  it('gives each frame its own JPEG when many of several sizes are in flight, beyond the sizes it keeps', async () => {
    const colours = [
      [81, 90, 240],
      [145, 54, 34],
      [41, 240, 110],
      [210, 16, 146],
      [170, 166, 16],
    ];
    const sizes = [
      [64, 48],
      [32, 32],
      [30, 18],
      [16, 16],
      [48, 64],
    ];
    const jobs = colours.flatMap((yuv, i) =>
      sizes.map(([w, h], k) => ({ yuv, w: w!, h: h!, order: i * sizes.length + k })),
    );
    const jpegs = await Promise.all(
      jobs.map((j) =>
        encoder.encode(blockPlanes(uniformFrame(j.w, j.h, j.yuv, gstI420Layout(j.w, j.h)), false), 90),
      ),
    );
    for (const [n, jpeg] of jpegs.entries()) {
      const { yuv, w, h } = jobs[n]!;
      const out = await decode(jpeg);
      assert.deepEqual([out.width, out.height], [w, h]);
      assert.ok(worstFrom(out, rgbOf(yuv)) <= 12, `job ${n} (${w}×${h}) came back in another colour`);
    }
  });

  it('refuses a quality out of 1–100 and planes whose bytes do not fit their size, naming them', async () => {
    const planes = blockPlanes(uniformFrame(16, 16, [128, 128, 128], gstI420Layout(16, 16)), false);
    await assert.rejects(encoder.encode(planes, 0), /JPEG quality 0: expected an integer from 1 to 100/);
    await assert.rejects(encoder.encode(planes, 80.5), /JPEG quality 80.5/);
    await assert.rejects(
      encoder.encode({ ...planes, data: planes.data.subarray(1) }, 80),
      /JPEG planes of 16×16 take 384 bytes, not 383/,
    );
    assert.ok((await encoder.encode(planes, 80)).length > 0, 'a good frame after the refused ones');
  });
});
