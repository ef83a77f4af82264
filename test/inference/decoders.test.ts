import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decode } from '../../inference/decoders.ts';
import type { GflDecoderSpec, ModelDescriptor } from '../../inference/descriptor.ts';
import type { RawDetection } from '../../inference/nms.ts';

/** the GFL decoding written plainly: every class of every cell against the threshold */
function reference(
  spec: GflDecoderSpec,
  outputs: Record<string, Float32Array>,
  threshold: number,
  classes: number,
  size: number,
): RawDetection[] {
  const bins = spec.regMax + 1;
  const logit = spec.scoresActivated ? threshold : Math.log(threshold / (1 - threshold));
  const side = (boxes: Float32Array, off: number) => {
    const values = Array.from(boxes.subarray(off, off + bins));
    const max = Math.max(...values);
    const e = values.map((v) => Math.exp(v - max));
    return e.reduce((s, v, b) => s + b * v, 0) / e.reduce((s, v) => s + v, 0);
  };
  const found: RawDetection[] = [];
  spec.strides.forEach((stride, level) => {
    const scores = outputs[spec.scoreOutputs[level]!]!;
    const boxes = outputs[spec.boxOutputs[level]!]!;
    const cols = Math.ceil(size / stride);
    for (let cell = 0; cell < scores.length / classes; cell++) {
      const cx = ((cell % cols) + 0.5) * stride;
      const cy = (Math.floor(cell / cols) + 0.5) * stride;
      const off = cell * 4 * bins;
      const box: [number, number, number, number] = [
        Math.max(0, cx - side(boxes, off) * stride),
        Math.max(0, cy - side(boxes, off + bins) * stride),
        Math.min(size, cx + side(boxes, off + 2 * bins) * stride),
        Math.min(size, cy + side(boxes, off + 3 * bins) * stride),
      ];
      for (let c = 0; c < classes; c++) {
        const s = scores[cell * classes + c]!;
        if (s >= logit)
          found.push({ box, classId: c, score: spec.scoresActivated ? s : 1 / (1 + Math.exp(-s)) });
      }
    }
  });
  return found;
}

describe('GFL decoding', () => {
  it('finds every class of every cell whose score reaches the threshold, as a plain scan does', () => {
    fc.assert(
      fc.property(
        fc.record({
          classes: fc.integer({ min: 1, max: 11 }),
          activated: fc.boolean(),
          threshold: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
          regMax: fc.integer({ min: 1, max: 7 }),
          // cells per side of the input at stride 8; the coarser level has half as many
          side: fc.integer({ min: 1, max: 6 }),
          // how often a score lands near the threshold: from none to most
          dense: fc.double({ min: 0, max: 1, noNaN: true }),
          seed: fc.integer(),
        }),
        ({ classes, activated, threshold, regMax, side, dense, seed }) => {
          const spec: GflDecoderSpec = {
            kind: 'gfl',
            strides: [8, 16],
            regMax,
            scoresActivated: activated,
            scoreOutputs: ['s8', 's16'],
            boxOutputs: ['b8', 'b16'],
          };
          const size = side * 8 * 2;
          let state = seed >>> 0 || 1;
          const random = () => {
            state ^= state << 13;
            state ^= state >>> 17;
            state ^= state << 5;
            return (state >>> 0) / 2 ** 32;
          };
          const logit = activated ? threshold : Math.log(threshold / (1 - threshold));
          const score = () => {
            if (random() >= dense) return activated ? random() * threshold * 0.9 : logit - 1 - random() * 5;
            // at the threshold exactly, just below it or above it
            const pick = random();
            return pick < 0.3 ? logit : pick < 0.6 ? logit - 1e-6 : logit + random();
          };
          const outputs: Record<string, Float32Array> = {};
          for (const [i, stride] of spec.strides.entries()) {
            const cells = Math.ceil(size / stride) ** 2;
            outputs[spec.scoreOutputs[i]!] = Float32Array.from({ length: cells * classes }, score);
            outputs[spec.boxOutputs[i]!] = Float32Array.from(
              { length: cells * 4 * (regMax + 1) },
              () => random() * 6 - 3,
            );
          }
          const descriptor = { decoder: spec } as ModelDescriptor;
          const params = {
            scoreThreshold: threshold,
            inputWidth: size,
            inputHeight: size,
            numClasses: classes,
          };
          const expected = reference(spec, outputs, threshold, classes, size);
          const actual = decode(descriptor, outputs, params);
          assert.equal(actual.length, expected.length);
          actual.forEach((d, i) => {
            const e = expected[i]!;
            assert.equal(d.classId, e.classId);
            assert.ok(Math.abs(d.score - e.score) < 1e-9);
            for (const [k, v] of d.box.entries())
              assert.ok(Math.abs(v - e.box[k]!) < 1e-6, `box ${d.box} against ${e.box}`);
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});
