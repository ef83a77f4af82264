import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import type { Box } from '../../inference/rect.ts';
import { SnapshotRenderer } from '../../pipelines/runtime/snapshots.ts';
import { type Annotation, drawAnnotations, renderAnnotatedJpeg } from '../../pipelines/snapshot.ts';
import type { FullFrame } from '../../video/frame-source.ts';
import { type BlockPlanes, blockLayout } from '../../video/i420.ts';
import { readFrames } from '../helpers/frames.ts';

/**
 * A packed I420 frame in RGB, as a JPEG decoder shows it: float BT.601 per pixel, stored through a
 * Uint8ClampedArray (clamps to 0..255, rounds half to even).
 */
function referenceRgb(frame: FullFrame): Uint8Array {
  const { width: w, height: h, data } = frame;
  const exact = new Float64Array(w * h * 3);
  const cw = Math.ceil(w / 2);
  const uOff = w * h;
  const vOff = uOff + cw * Math.ceil(h / 2);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const chroma = Math.floor(y / 2) * cw + Math.floor(x / 2);
      const c = 1.164 * (data[y * w + x]! - 16);
      const u = data[uOff + chroma]! - 128;
      const v = data[vOff + chroma]! - 128;
      const o = (y * w + x) * 3;
      exact[o] = c + 1.596 * v;
      exact[o + 1] = c - 0.392 * u - 0.813 * v;
      exact[o + 2] = c + 2.017 * u;
    }
  }
  return new Uint8Array(Uint8ClampedArray.from(exact).buffer);
}

function i420Size(w: number, h: number): number {
  return w * h + 2 * Math.ceil(w / 2) * Math.ceil(h / 2);
}

/** deterministic pseudo-random bytes (LCG), so a failure reproduces */
function pseudoRandomFrame(w: number, h: number, seed: number): FullFrame {
  const data = new Uint8Array(i420Size(w, h));
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  return { data, width: w, height: h, format: 'I420' };
}

/**
 * A smooth gradient in luma and both chroma planes, 1280×720 by default. That width makes the outline
 * 4 px: a JPEG's 4:2:0 chroma, upsampled by interpolating neighbouring samples, bleeds the background
 * into a 2 px line (the 768×576 sample video's) by up to 70 per channel, but leaves the middle two pixels
 * of a 4 px band whose edges fall on even coordinates within 30 of the line's colour.
 */
function gradientFrame(w = 1280, h = 720): FullFrame {
  const cw = Math.ceil(w / 2);
  const ch = Math.ceil(h / 2);
  const data = new Uint8Array(i420Size(w, h));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) data[y * w + x] = 40 + Math.round((150 * (x + y)) / (w + h));
  }
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      data[w * h + y * cw + x] = 100 + Math.round((60 * x) / cw);
      data[w * h + cw * ch + y * cw + x] = 100 + Math.round((60 * y) / ch);
    }
  }
  return { data, width: w, height: h, format: 'I420' };
}

/** a gradient whose every pixel is inside the RGB gamut (luma 60–190, chroma 110–146), so no conversion clamps it */
function inGamutFrame(w: number, h: number): FullFrame {
  const cw = Math.ceil(w / 2);
  const ch = Math.ceil(h / 2);
  const data = new Uint8Array(i420Size(w, h));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) data[y * w + x] = 60 + Math.round((130 * (x + y)) / (w + h));
  }
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      data[w * h + y * cw + x] = 110 + Math.round((36 * x) / cw);
      data[w * h + cw * ch + y * cw + x] = 110 + Math.round((36 * y) / ch);
    }
  }
  return { data, width: w, height: h, format: 'I420' };
}

type Rgb = readonly [number, number, number];

const YELLOW: Rgb = [0xff, 0xd4, 0x00];

/** a decoded JPEG */
interface Decoded {
  pixel(x: number, y: number): Rgb;
  width: number;
  height: number;
}

async function decodeJpeg(jpeg: Buffer): Promise<Decoded> {
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  return {
    pixel: (x, y) => {
      const o = (y * info.width + x) * 3;
      return [data[o]!, data[o + 1]!, data[o + 2]!];
    },
    width: info.width,
    height: info.height,
  };
}

function rgbAt(rgb: Uint8Array, width: number, x: number, y: number): Rgb {
  const o = (y * width + x) * 3;
  return [rgb[o]!, rgb[o + 1]!, rgb[o + 2]!];
}

function assertNear(actual: Rgb, expected: Rgb, tolerance: number, where: string): void {
  const off = actual.some((v, c) => Math.abs(v - expected[c]!) > tolerance);
  assert.ok(!off, `${where}: ${actual.join(',')}, expected ${expected.join(',')} ±${tolerance}`);
}

/**
 * the middle two pixels across each side of a box's 4 px outline (the band starts 2 px before the edge),
 * leaving out 6 px at each corner, where the JPEG's chroma bleeds in from two sides
 */
function outlineMiddle([x1, y1, x2, y2]: Box): Array<[number, number]> {
  const points: Array<[number, number]> = [];
  for (let x = x1 + 6; x < x2 - 6; x++) {
    for (const y of [y1 - 1, y1, y2 - 1, y2]) points.push([x, y]);
  }
  for (let y = y1 + 6; y < y2 - 6; y++) {
    for (const x of [x1 - 1, x1, x2 - 1, x2]) points.push([x, y]);
  }
  return points;
}

/** how many pixels of the rectangle differ from the frame's own by more than 60 in some channel */
function changedPixels(
  out: Decoded,
  rgb: Uint8Array,
  [left, top, right, bottom]: readonly [number, number, number, number],
): number {
  let n = 0;
  for (let y = Math.max(0, top); y < Math.min(out.height, bottom); y++) {
    for (let x = Math.max(0, left); x < Math.min(out.width, right); x++) {
      const expected = rgbAt(rgb, out.width, x, y);
      if (out.pixel(x, y).some((v, c) => Math.abs(v - expected[c]!) > 60)) n++;
    }
  }
  return n;
}

/** the drawing drawAnnotations replaced: one frame-sized SVG of every box, then every label, composited by sharp in RGB */
async function fullFrameSvgRgb(frame: FullFrame, annotations: readonly Annotation[]): Promise<Uint8Array> {
  const { width: w, height: h } = frame;
  const stroke = Math.max(2, Math.round(w / 320));
  const font = Math.max(12, Math.round(w / 48));
  // every box, then every label over them
  const rects = annotations.map((a) => {
    const [x1, y1, x2, y2] = a.box.map((v) => Math.round(v)) as Box;
    return `<rect x="${x1}" y="${y1}" width="${Math.max(1, x2 - x1)}" height="${Math.max(1, y2 - y1)}" fill="none" stroke="${a.color ?? '#ffd400'}" stroke-width="${stroke}"/>`;
  });
  const texts = annotations.map((a) => {
    const [x1, y1, , y2] = a.box.map((v) => Math.round(v)) as Box;
    const ty = y1 - font - 4 >= 0 ? y1 - 4 : y2 + font + 2;
    const text = a.label.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
    return `<text x="${x1}" y="${ty}" font-family="sans-serif" font-size="${font}" fill="${a.color ?? '#ffd400'}" stroke="black" stroke-width="0.6">${text}</text>`;
  });
  const shapes = [...rects, ...texts];
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${shapes.join('')}</svg>`;
  return sharp(referenceRgb(frame), { raw: { width: w, height: h, channels: 3 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .removeAlpha()
    .raw()
    .toBuffer();
}

/**
 * the RGB drawing as a JPEG's 4:2:0 subsampling stores it, so that it can be compared with the I420
 * one: where it drew on a 2×2 block, the block's chroma (BT.601 YCbCr, full range) averaged over its
 * pixels; elsewhere the frame's own pixels (averaging the frame's own colours would move those that
 * the conversion to RGB clamped)
 */
function subsampleChroma(drawn: Uint8Array, frame: Uint8Array, w: number, h: number): Uint8Array {
  const out = new Uint8ClampedArray(drawn.length);
  for (let by = 0; by < h; by += 2) {
    for (let bx = 0; bx < w; bx += 2) {
      const pixels: number[] = [];
      for (let y = by; y < Math.min(by + 2, h); y++)
        for (let x = bx; x < Math.min(bx + 2, w); x++) pixels.push((y * w + x) * 3);
      const touched = pixels.some((o) => [0, 1, 2].some((c) => drawn[o + c] !== frame[o + c]));
      if (!touched) {
        for (const o of pixels) for (let c = 0; c < 3; c++) out[o + c] = frame[o + c]!;
        continue;
      }
      let cb = 0;
      let cr = 0;
      for (const o of pixels) {
        const [r, g, b] = [drawn[o]!, drawn[o + 1]!, drawn[o + 2]!];
        cb += -0.168736 * r - 0.331264 * g + 0.5 * b;
        cr += 0.5 * r - 0.418688 * g - 0.081312 * b;
      }
      cb /= pixels.length;
      cr /= pixels.length;
      for (const o of pixels) {
        const luma = 0.299 * drawn[o]! + 0.587 * drawn[o + 1]! + 0.114 * drawn[o + 2]!;
        out[o] = luma + 1.402 * cr;
        out[o + 1] = luma - 0.344136 * cb - 0.714136 * cr;
        out[o + 2] = luma + 1.772 * cb;
      }
    }
  }
  return new Uint8Array(out.buffer);
}

/** planes in whole blocks in RGB, as referenceRgb converts them */
function blockRgb({ data, width, height }: BlockPlanes): Uint8Array {
  const layout = blockLayout(width, height);
  const packed = new Uint8Array(i420Size(width, height));
  const cw = Math.ceil(width / 2);
  const ch = Math.ceil(height / 2);
  for (let y = 0; y < height; y++)
    packed.set(data.subarray(y * layout.yStride, y * layout.yStride + width), y * width);
  for (let y = 0; y < ch; y++) {
    packed.set(
      data.subarray(layout.uOffset + y * layout.cStride, layout.uOffset + y * layout.cStride + cw),
      width * height + y * cw,
    );
    packed.set(
      data.subarray(layout.vOffset + y * layout.cStride, layout.vOffset + y * layout.cStride + cw),
      width * height + cw * ch + y * cw,
    );
  }
  return referenceRgb({ data: packed, width, height, format: 'I420' });
}

/** the largest difference of any channel of any pixel between the I420 drawing and the RGB one, subsampled alike */
async function worstAgainstSvg(frame: FullFrame, annotations: readonly Annotation[]): Promise<number> {
  const drawn = blockRgb(await drawAnnotations(frame, annotations));
  const expected = subsampleChroma(
    await fullFrameSvgRgb(frame, annotations),
    referenceRgb(frame),
    frame.width,
    frame.height,
  );
  let worst = 0;
  for (let i = 0; i < drawn.length; i++) worst = Math.max(worst, Math.abs(drawn[i]! - expected[i]!));
  return worst;
}

describe('renderAnnotatedJpeg', () => {
  let video: FullFrame;
  before(async () => {
    video = (await readFrames([0], { width: 64, height: 48, format: 'RGB' })).get(0)!.full;
  });

  it('draws the outline in the annotation colour (default and #rgb) and leaves the inside as it was', async () => {
    const frame = gradientFrame();
    const rgb = referenceRgb(frame);
    const yellowBox: Box = [400, 300, 640, 560];
    const blueBox: Box = [800, 200, 1000, 400];
    const out = await decodeJpeg(
      await renderAnnotatedJpeg(frame, [
        { box: yellowBox, label: 'WW' },
        { box: blueBox, label: 'car 0.91', color: '#0af' },
      ]),
    );
    assert.equal(out.width, 1280);
    assert.equal(out.height, 720);
    for (const [x, y] of outlineMiddle(yellowBox)) assertNear(out.pixel(x, y), YELLOW, 40, `(${x},${y})`);
    for (const [x, y] of outlineMiddle(blueBox))
      assertNear(out.pixel(x, y), [0, 0xaa, 0xff], 40, `(${x},${y})`);
    for (const [x, y] of [
      [520, 430],
      [430, 330],
      [610, 530],
      [900, 300],
    ] as const) {
      assertNear(out.pixel(x, y), rgbAt(rgb, 1280, x, y), 25, `inside (${x},${y})`);
    }
  });

  it('boxes partly or wholly outside the frame, degenerate, inverted or fractional render without throwing', async () => {
    const frame = gradientFrame();
    const annotations: Annotation[] = [
      { box: [-50, -30, 100, 80], label: 'top left' },
      { box: [1200, 600, 1500, 900], label: 'bottom right, label past the edge' },
      { box: [-400, -400, -100, -100], label: 'outside' },
      { box: [2000, 300, 2100, 400], label: 'outside' },
      { box: [200, 200, 200, 200], label: 'a point' },
      { box: [300, 300, 250, 250], label: 'inverted' },
      { box: [10.4, 620.6, 50.5, 660.2], label: 'fractional' },
      { box: [600, 300, 700, 400], label: '' },
    ];
    const out = await decodeJpeg(await renderAnnotatedJpeg(frame, annotations));
    assert.equal(out.width, 1280);
    assert.equal(out.height, 720);
    // the visible sides of the partly outside boxes
    for (let y = 10; y < 70; y++)
      assertNear(out.pixel(100, y), YELLOW, 40, `right side of the top-left box, y ${y}`);
    for (let x = 1210; x < 1270; x++)
      assertNear(out.pixel(x, 600), YELLOW, 40, `top of the bottom-right box, x ${x}`);
  });

  it('puts the label above the box, or below it when there is no room above', async () => {
    const frame = gradientFrame();
    const rgb = referenceRgb(frame);
    // 1280 wide: 27 px font; the label needs y1 − 27 − 4 ≥ 0 to go above
    const font = 27;
    const roomy: Box = [200, 200, 400, 400];
    const atTop: Box = [700, 20, 900, 200];
    const out = await decodeJpeg(
      await renderAnnotatedJpeg(frame, [
        { box: roomy, label: 'person 0.87' },
        { box: atTop, label: 'person 0.87' },
      ]),
    );
    const above = ([x1, y1]: Box) => [x1 + 4, y1 - font - 4, x1 + 150, y1 - 4] as const;
    const below = ([x1, , , y2]: Box) => [x1 + 4, y2 + 6, x1 + 150, y2 + font + 6] as const;
    assert.ok(changedPixels(out, rgb, above(roomy)) > 100, 'no label above the box with room above it');
    assert.equal(changedPixels(out, rgb, below(roomy)), 0, 'something below the box with room above it');
    assert.ok(changedPixels(out, rgb, below(atTop)) > 100, 'no label below the box at the top edge');
    assert.equal(changedPixels(out, rgb, [700, 0, 900, 16]), 0, 'something above the box at the top edge');
  });

  it('rejects a colour that is not #rgb or #rrggbb', async () => {
    await assert.rejects(
      renderAnnotatedJpeg(gradientFrame(64, 48), [{ box: [4, 4, 20, 20], label: 'x', color: 'red' }]),
      /expected #rgb or #rrggbb/,
    );
  });

  // Compared before the JPEG, both pictures with the chroma of each 2×2 block averaged: the outline
  // matches the SVG's exactly for an even stroke (2 px at 768, 4 px at 1280); the labels are the
  // same SVG text, blended within ±1. What is left is the conversions' rounding (3 on the gradient)
  // and, on the sample video, the RGB drawing's clamping: its gravel is brighter than white in RGB
  // (274, 272, 284 beside the box), which the RGB drawing clamps before it averages a block that
  // the outline touches, and the I420 drawing does not (29)
  it('draws the same picture as the frame-sized SVG it replaced', async () => {
    const cases: Array<[string, FullFrame, Annotation[], number]> = [
      ['the sample video', video, [{ box: [300.4, 200, 420, 459.6], label: 'person 0.87' }], 32],
      [
        'a 1280×720 gradient',
        gradientFrame(),
        [
          { box: [100, 100, 300, 400], label: 'line-crossing: person left→right' },
          { box: [700, 10, 900, 200], label: 'ǄWWW@@ <&> "quoted"', color: '#00ff80' },
          { box: [1100, 500, 1400, 800], label: 'person past the edge' },
          { box: [-80, 500, 60, 650], label: 'left of the frame' },
        ],
        4,
      ],
    ];
    for (const [name, frame, annotations, limit] of cases) {
      const worst = await worstAgainstSvg(frame, annotations);
      assert.ok(worst <= limit, `${name}: a pixel differs by ${worst}`);
    }
  });

  it('draws what the frame-sized SVG draws for any boxes and labels on a frame of any size (property)', async () => {
    const coordinate = fc.integer({ min: -40, max: 160 });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 120 }),
        fc.integer({ min: 1, max: 90 }),
        fc.array(
          fc.record({
            box: fc.tuple(coordinate, coordinate, coordinate, coordinate),
            label: fc.constantFrom('', 'person 0.87', 'W', 'car → zone'),
            color: fc.constantFrom(undefined, '#0af', '#ff0080', '#fff', '#000000'),
          }),
          { maxLength: 4 },
        ),
        async (w, h, drawn) => {
          const annotations: Annotation[] = drawn.map(({ box, label, color }) => ({
            box,
            label,
            ...(color ? { color } : {}),
          }));
          const worst = await worstAgainstSvg(inGamutFrame(w, h), annotations);
          assert.ok(worst <= 4, `${w}×${h}, ${JSON.stringify(annotations)}: a pixel differs by ${worst}`);
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('SnapshotRenderer', () => {
  const frame = (seed: number) => pseudoRandomFrame(64, 48, seed);
  const outcome = (p: Promise<Buffer>) =>
    p.then(
      (jpeg) => (jpeg[0] === 0xff && jpeg[1] === 0xd8 ? 'jpeg' : 'not a jpeg'),
      (err: Error) => err.message,
    );

  it('renders after the caller returns, in order, and drops what exceeds its bounds at once', async () => {
    const renderer = new SnapshotRenderer({ concurrency: 1, maxQueued: 2, maxQueuedBytes: 1 << 20 });
    const pending = [1, 2, 3, 4].map((seed) => renderer.render(frame(seed), [], 80));
    // nothing rendered yet: the event that asked for it is not held up by the picture
    assert.deepEqual(renderer.counts, { rendered: 0, dropped: 2, failed: 0 });
    assert.deepEqual(
      pending.map((p) => [p.width, p.height]),
      [
        [64, 48],
        [64, 48],
        [64, 48],
        [64, 48],
      ],
    );
    const outcomes = await Promise.all(pending.map((p) => outcome(p.jpeg)));
    assert.deepEqual(outcomes.slice(0, 2), ['jpeg', 'jpeg']);
    for (const o of outcomes.slice(2)) assert.match(o, /snapshot dropped: 2 snapshots/);
    await renderer.idle();
    assert.deepEqual(renderer.counts, { rendered: 2, dropped: 2, failed: 0 });
  });

  it('bounds the bytes of the frames waiting, and counts a snapshot that fails to render', async () => {
    const one = frame(5).data.byteLength;
    const renderer = new SnapshotRenderer({ concurrency: 1, maxQueued: 100, maxQueuedBytes: one });
    const kept = renderer.render(frame(5), [], 80);
    const dropped = renderer.render(frame(6), [], 80);
    assert.match(await outcome(dropped.jpeg), /snapshot dropped/);
    assert.equal(await outcome(kept.jpeg), 'jpeg');
    // a frame sharp cannot encode (no pixels)
    const broken = renderer.render({ data: new Uint8Array(0), width: 0, height: 0, format: 'I420' }, [], 80);
    assert.notEqual(await outcome(broken.jpeg), 'jpeg');
    const after = renderer.render(frame(7), [], 80);
    assert.equal(await outcome(after.jpeg), 'jpeg', 'a failed snapshot stops none after it');
    await renderer.idle();
    assert.deepEqual(renderer.counts, { rendered: 2, dropped: 1, failed: 1 });
    assert.equal(renderer.pending, 0);
  });
});
