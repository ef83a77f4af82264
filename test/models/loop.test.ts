import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import { ArgusError } from '../../common/errors.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { generateSigningKey, loadSigningKey, trustPublicKey } from '../../models/bundle/keys.ts';
import { verifyBundle } from '../../models/bundle/verify.ts';
import type { HarvestedFrame, HarvestedFrames } from '../../models/loop/frames.ts';
import { runLoop } from '../../models/loop/loop.ts';
import { readLoopState } from '../../models/loop/state.ts';
import { readVideoImages } from '../../models/teacher/annotated.ts';
import { vtestAnnotatedPersons } from '../helpers/annotated.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The loop runner on a small site (12 frames of vtest.avi: 8 to train on, the 4 latest held out),
 * with a one-member teacher to keep it fast: a run aborted in its teacher step leaves the finished
 * collect step and no partial teacher output; run again, it resumes there (the source is not read
 * again) and ends with every step's output in the work directory.
 */

const INDICES = [0, 40, 80, 120, 160, 200, 240, 280, 520, 560, 640, 720];
const BASE = Date.parse('2026-12-01T08:00:00Z');

describe('the data–model loop runner', () => {
  let dir: string;
  let frames: HarvestedFrame[];

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-loop-'));
    const images = await readVideoImages(SAMPLE_VIDEO, INDICES, { width: 768, height: 576 });
    frames = [];
    for (const i of INDICES) {
      const img = images.get(i)!;
      const jpeg = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
        .jpeg({ quality: 85 })
        .toBuffer();
      frames.push({ id: `cam-1/${i}`, capturedAt: new Date(BASE + i * 100).toISOString(), jpeg });
    }
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses at its start a run without hand-annotated frames, or with any setting out of its bounds, before reading a frame', async () => {
    const annotated = await vtestAnnotatedPersons([0]);
    const untouchable: HarvestedFrames = {
      frames() {
        throw new Error('a refused run read its source');
      },
    };
    const workDir = join(dir, 'refused');
    const refused = async (settings: Record<string, unknown>) => {
      let caught: unknown;
      await runLoop({ site: 'campus', workDir, source: untouchable, ...settings } as never).catch((e) => {
        caught = e;
      });
      assert.ok(caught instanceof ArgusError, `accepted ${JSON.stringify(settings)}: ${String(caught)}`);
      await assert.rejects(stat(workDir), { code: 'ENOENT' });
      return caught;
    };
    const none = await refused({});
    assert.match(none.message, /name no hand-annotated frames of the site \("annotated"\)/);
    assert.match(none.hint ?? '', /loop\.options\.annotated/);
    assert.match((await refused({ annotated: { ...annotated, frames: [] } })).message, /\/annotated\/frames/);

    const bounded: [string, fc.Arbitrary<unknown>][] = [
      [
        'heldOutShare',
        fc.oneof(fc.double({ max: 0.0099, noNaN: true }), fc.double({ min: 0.9901, noNaN: true })),
      ],
      [
        'maxFrames',
        fc.oneof(fc.integer({ max: 1 }), fc.integer({ min: 100_001 }), fc.double({ min: 2.1, max: 9.9 })),
      ],
      ['calibrationFrames', fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 1001 }))],
      ['bundleVersion', fc.oneof(fc.integer({ max: 0 }), fc.constant(2 ** 31), fc.constant(1.5))],
      [
        'expiresInDays',
        fc.oneof(fc.double({ max: 0.99, noNaN: true }), fc.double({ min: 3650.1, noNaN: true })),
      ],
      ['threads', fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 257 }), fc.constant(Number.NaN))],
      ['heldOutFrom', fc.string({ maxLength: 12 })],
      ['bundleName', fc.constantFrom('', 'Upper', '../escape', 'a'.repeat(65))],
      ['teacher', fc.constant({ scoreThreshold: 2 })],
      ['adapt', fc.constant({ epochs: 0 })],
      ['gate', fc.constant({ minGapClosedShare: 1.5 })],
      ['unknownOption', fc.anything().filter((v) => v !== undefined)],
      ['annotated', fc.oneof(fc.constant(null), fc.string(), fc.constant({ ...annotated, width: 0 }))],
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...bounded).chain(([name, values]) => fc.tuple(fc.constant(name), values)),
        async ([name, value]) => {
          const err = await refused({ annotated, [name]: value });
          assert.match(
            err.message,
            new RegExp(name === 'unknownOption' ? 'unknown key' : 'invalid|config|gate|options'),
          );
        },
      ),
      { numRuns: 120 },
    );
  });

  it('resumes an interrupted run at the step it was in, leaving no partial artifact', async () => {
    const workDir = join(dir, 'work');
    const key = await generateSigningKey('loop-test', join(dir, 'keys'));
    await trustPublicKey(key.publicKeyPath, join(dir, 'keys', 'trusted'));
    const common = {
      site: 'campus',
      workDir,
      teacher: {
        members: [{ model: 'nanodet', input: { width: 768, height: 576 }, flip: false }],
        scoreThreshold: 0.4,
      },
      annotated: await vtestAnnotatedPersons([0, 300, 600]),
      adapt: { epochs: 2 },
      calibrationFrames: 4,
      threads: 2,
    };
    const aborter = new AbortController();
    const seen: string[] = [];
    let read = 0;
    const source: HarvestedFrames = {
      async *frames() {
        for (const f of frames) {
          read++;
          yield f;
        }
      },
    };
    await assert.rejects(
      runLoop({
        ...common,
        source,
        signal: aborter.signal,
        onProgress: (step, fraction) => {
          seen.push(step);
          if (step === 'teacher' && fraction > 0.3) aborter.abort(new Error('stopped by the test'));
        },
      }),
      /stopped by the test/,
    );
    assert.equal(read, INDICES.length);
    const interrupted = await readLoopState(workDir);
    assert.equal(interrupted?.step, 'teacher');
    assert.deepEqual(Object.keys(interrupted!.results), ['collect']);
    assert.equal(interrupted!.results.collect!.train, 8);
    assert.equal(interrupted!.results.collect!.heldOut, 4);
    const entries = await readdir(workDir);
    assert.deepEqual(entries.sort(), ['collect', 'state.json'], `work directory holds ${entries.join(', ')}`);

    const untouchable: HarvestedFrames = {
      frames() {
        throw new Error('a resumed run read its source again');
      },
    };
    const steps: string[] = [];
    const result = await runLoop({
      ...common,
      source: untouchable,
      signingKey: await loadSigningKey(key.privateKeyPath),
      onProgress: (step) => {
        if (steps.at(-1) !== step) steps.push(step);
      },
    });
    assert.deepEqual(steps, ['teacher', 'adapt', 'quantize', 'gate', 'sign']);
    const done = await readLoopState(workDir);
    assert.equal(done?.step, 'done');
    for (const step of ['collect', 'teacher', 'adapt', 'quantize', 'gate'])
      assert.ok((await stat(join(workDir, step))).isDirectory(), step);
    const labels = (await readFile(join(workDir, 'teacher', 'labels.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(labels.length, INDICES.length);
    const metrics = result.report.steps.gate!.metrics as Record<string, number>;
    assert.equal(metrics.heldOutFrames, 4);
    assert.ok(Number.isFinite(metrics.agreementBefore) && Number.isFinite(metrics.agreementAfter));
    if (result.passed) {
      const verified = await verifyBundle(result.bundlePath!, { keyring: join(dir, 'keys', 'trusted') });
      const step = verified.manifest.kind === 'model' ? verified.manifest.lineage.steps.at(-1) : undefined;
      assert.equal(step?.kind, 'loop');
    } else {
      assert.ok(result.report.failures.length > 0);
      assert.equal(result.bundlePath, undefined);
    }
    assert.deepEqual(
      (await readdir(workDir)).filter((e) => e.endsWith('.partial')),
      [],
    );
  });
});
