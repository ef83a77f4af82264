import assert from 'node:assert/strict';
import { cp, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { errorMessage } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { Detector } from '../../inference/detector.ts';
import { resolveModelDir } from '../../inference/model-dir.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import {
  DEFAULT_RESTART_POLICY,
  RestartBackoff,
  ThreadedDetector,
} from '../../inference/threaded-detector.ts';
import { readModelFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const log = createLogger('test-threaded-detector');
const settings = { ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 };

/**
 * Ends a detector thread the way a crash does, without the detector asking: the thread takes the
 * protocol's close message, which the detector did not send. (Worker.terminate would do the same
 * only while the thread is idle: inside an ONNX Runtime call it aborts the whole process.) Calls
 * made after this reach a thread that has closed and are never answered.
 */
async function crash(worker: Worker): Promise<void> {
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  worker.postMessage('close');
  await exited;
}

/** the next worker thread this process starts (from `process`' 'worker' event) */
function nextWorker(): Promise<Worker> {
  return new Promise((resolve) => process.once('worker', resolve));
}

async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!(await condition())) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** why a detection call fails ('' when it does not) */
function failure(call: Promise<unknown>): Promise<string> {
  return call.then(() => '', errorMessage);
}

const activeTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('detector on a worker thread', () => {
  let frames: ModelFrame[];
  before(async () => {
    await ensureCatalogModels();
    const probe = await Detector.load(settings, log);
    frames = await readModelFrames([0, 300, 600], probe);
    await probe.close();
  });

  it('finds exactly what the detector on the calling thread finds, batched and concurrently', async () => {
    const local = await Detector.load(settings, log);
    const threaded = await ThreadedDetector.load(settings, log);
    try {
      assert.equal(threaded.inputWidth, local.inputWidth, 'frames above are sized for the model');
      assert.equal(threaded.descriptor.input.colorOrder, 'BGR');
      const expected = await local.detect(frames);
      assert.ok(
        expected.every((d) => d.length >= 3),
        'people in every frame',
      );
      assert.deepEqual(await threaded.detect(frames), expected);
      // requests in flight at once come back to their callers
      const oneByOne = await Promise.all(frames.map((f) => threaded.detect([f])));
      assert.deepEqual(
        oneByOne.map((r) => r[0]),
        expected,
      );
      // inputs smaller than the model's (its sizeStep allows them) mixed with whole ones in one call
      const top: ModelFrame = {
        pixels: frames[1]!.pixels.subarray(0, 416 * 224 * 3),
        size: { width: 416, height: 224 },
        sourceWidth: 416,
        sourceHeight: 224,
      };
      const mixed = await local.detect([frames[0]!, top, frames[2]!]);
      assert.deepEqual(mixed[0], expected[0]);
      assert.deepEqual(mixed[2], expected[2]);
      assert.ok(mixed[1]!.length > 0, 'people in the top of the frame');
      assert.ok(mixed[1]!.every((d) => d.box[3] <= 224));
      assert.deepEqual(await threaded.detect([frames[0]!, top, frames[2]!]), mixed);
      // the frames stay usable by the caller (they are copied, not transferred)
      assert.ok(frames.every((f) => f.pixels.byteLength === 416 * 416 * 3));
      // a frame handed over goes to the thread without a copy: the caller's view is detached
      const handed: ModelFrame = {
        ...frames[0]!,
        pixels: new Uint8Array(frames[0]!.pixels),
        handedOver: true,
      };
      assert.deepEqual(await threaded.detect([handed]), [expected[0]]);
      assert.equal(handed.pixels.byteLength, 0);
    } finally {
      await local.close();
      await threaded.close();
    }
  });

  it('refuses a frame of the wrong size and a call after close, and reports a model that does not load', async () => {
    const threaded = await ThreadedDetector.load(settings, log);
    await assert.rejects(
      threaded.detect([{ pixels: new Uint8Array(10), sourceWidth: 4, sourceHeight: 4 }]),
      /frame of 10 bytes does not match its 416×416 input \(519168 bytes\)/,
    );
    const odd = { width: 100, height: 64 };
    await assert.rejects(
      threaded.detect([
        { pixels: new Uint8Array(100 * 64 * 3), size: odd, sourceWidth: 100, sourceHeight: 64 },
      ]),
      /a 100×64 input for model nanodet, which takes multiples of 32 up to 416×416/,
    );
    await threaded.close();
    await assert.rejects(threaded.detect(frames.slice(0, 1)), /detector closed/);
    await assert.rejects(
      ThreadedDetector.load({ ...settings, model: 'no-such-model' }, log),
      /no-such-model/,
    );
  });

  it('runs its thread at the configured priority, or at the default where it may not raise it', async () => {
    const raised = await ThreadedDetector.load({ ...settings, threadNice: -5 }, log);
    const lowered = await ThreadedDetector.load({ ...settings, threadNice: 5 }, log);
    try {
      assert.equal(raised.nice, process.getuid?.() === 0 ? -5 : 0);
      assert.equal(lowered.nice, 5);
    } finally {
      await raised.close();
      await lowered.close();
    }
  });

  it('restarts a crashed thread, and keeps trying while its model is missing or another one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'argus-threaded-detector-'));
    const model = join(dir, 'nanodet');
    await cp(resolveModelDir('nanodet'), model, { recursive: true });
    const first = nextWorker();
    const threaded = await ThreadedDetector.load({ ...settings, model }, log, {
      firstDelayMs: 50,
      maxDelayMs: 400,
      healthyAfterMs: 60_000,
    });
    try {
      const expected = await threaded.detect(frames);
      // the frames in flight and the calls until a thread is back fail, naming the crash
      const crashed = crash(await first);
      const inFlight = threaded.detect(frames);
      // as the scheduler does: the next batch goes as soon as the previous one failed
      const next = inFlight.catch(() => threaded.detect(frames));
      const second = nextWorker();
      await crashed;
      await assert.rejects(inFlight, /^ArgusError: detector thread crashed: exited with code 0$/);
      await assert.rejects(next, /detector thread crashed/);
      await assert.rejects(
        threaded.detect(frames),
        /detector thread crashed \(exited with code 0\) and is being restarted/,
      );
      assert.equal(threaded.restarts, 0);
      await until('the restart', () => threaded.restarts === 1);
      assert.deepEqual(await threaded.detect(frames), expected);

      // a crash while the model is gone: attempts fail and go on until it is back
      const attempts: Worker[] = [];
      const count = (w: Worker) => attempts.push(w);
      process.on('worker', count);
      await rename(model, `${model}-away`);
      await crash(await second);
      await until('an attempt after a failed one', async () => {
        const why = await failure(threaded.detect(frames));
        assert.match(why, /detector thread crashed \(exited with code 0\) and is being restarted/);
        return (
          attempts.length >= 2 && /the last attempt failed: model ".*nanodet" is not installed/.test(why)
        );
      });
      // nor does a thread that loads another model in its place
      await cp(resolveModelDir('centernet'), model, { recursive: true });
      await until('an attempt on the other model', async () =>
        /the last attempt failed: the restarted detector thread loaded a different model than the cameras were set up for \(centernet/.test(
          await failure(threaded.detect(frames)),
        ),
      );
      assert.equal(threaded.restarts, 1);
      await rm(model, { recursive: true });
      await rename(`${model}-away`, model);
      await until('the second restart', () => threaded.restarts === 2);
      process.off('worker', count);
      assert.deepEqual(await threaded.detect(frames), expected);
    } finally {
      await threaded.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stops restarting when closed, leaving no timer and no thread', async () => {
    // closed while waiting to restart
    const waited = nextWorker();
    const waiting = await ThreadedDetector.load(settings, log, {
      firstDelayMs: 60_000,
      maxDelayMs: 60_000,
      healthyAfterMs: 60_000,
    });
    const timers = activeTimers();
    await crash(await waited);
    await assert.rejects(waiting.detect(frames), /being restarted/);
    assert.equal(activeTimers(), timers + 1, 'the wait before the restart');
    await waiting.close();
    assert.equal(activeTimers(), timers);
    await assert.rejects(waiting.detect(frames), /detector closed/);

    // closed while the new thread loads the model
    const crashing = nextWorker();
    const starting = await ThreadedDetector.load(settings, log, {
      ...DEFAULT_RESTART_POLICY,
      firstDelayMs: 0,
    });
    const attempt = nextWorker();
    await crash(await crashing);
    const restarting = await attempt;
    await starting.close();
    assert.equal(restarting.threadId, -1, 'the thread being started has ended');
    assert.equal(starting.restarts, 0);
    await assert.rejects(starting.detect(frames), /detector closed/);
  });
});

describe('detector thread restart backoff', () => {
  it('doubles the wait from 0.5 s to 30 s, and starts over after a minute without a crash', () => {
    const backoff = new RestartBackoff(DEFAULT_RESTART_POLICY);
    backoff.up(0);
    const waits = [10_000, 10_500, 11_500, 13_500, 17_500, 25_500, 41_500, 71_500].map((t) =>
      backoff.delay(t),
    );
    assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    backoff.up(100_000);
    assert.equal(backoff.delay(159_999), 30_000, 'a thread that crashed within a minute');
    backoff.up(200_000);
    assert.equal(backoff.delay(260_000), 500, 'a thread that ran for a minute');
    assert.equal(backoff.delay(260_500), 1000);
  });
});
