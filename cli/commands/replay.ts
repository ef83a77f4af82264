import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { DetectorPool } from '../../inference/detector-pool.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { ensureModelInstalled, readModelDescriptor } from '../../models/store.ts';
import { describeAccuracy, observationRecorder, scoreObservation } from '../../pipelines/evaluate/events.ts';
import { loadEventTruth } from '../../pipelines/evaluate/truth.ts';
import type { CameraEvent } from '../../pipelines/runtime/camera.ts';
import { growHeapForVideo } from '../../pipelines/runtime/heap.ts';
import { replayRecording } from '../../pipelines/runtime/replay.ts';
import { loadScene } from '../../pipelines/scene/load.ts';
import { type Command, parseCommandArgs, parsePositiveNumber } from '../command.ts';

/** one line per event; an event about many objects (a crowd) names no track */
function describe(e: CameraEvent): string {
  const m = e.message;
  const where = m.zone ?? m.line ?? '';
  const extra = m.direction ? ` ${m.direction}` : '';
  const after = Object.entries(m.after)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `${m.at.slice(11, 23)}  ${m.phase.padEnd(6)} ${m.ruleType.padEnd(10)} ${m.rule.padEnd(14)} ${m.trackId >= 0 ? `${m.label}#${m.trackId}` : `${m.label} group`}${extra}${where && where !== m.rule ? ` @${where}` : ''}  ${after}`;
}

export const replay: Command = {
  path: ['replay'],
  summary: 'run a scene over a recording faster than real time and print its events',
  usage:
    'argus replay <video-file> --scene <scene.yaml> [--json] [--fps N] [--snapshots DIR] [--model NAME] [--threads N] [--batch N] [--truth FILE]',
  example: 'scenes/vtest-campus.yaml',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      scene: {
        type: 'string',
        value: 'FILE',
        description: 'the scene (YAML) to run: classes, tracker and rules (required)',
      },
      json: {
        type: 'boolean',
        description:
          'print each event message as a JSON line (a recording for the device agent), then a summary',
      },
      fps: {
        type: 'string',
        value: 'N',
        description: 'frames per second of the recording to detect (default 5)',
      },
      snapshots: {
        type: 'string',
        value: 'DIR',
        description:
          'write each event snapshot there as RULE-ID-SEQ.jpg (named in --json output as snapshotFile)',
      },
      model: { type: 'string', value: 'NAME', description: 'the model, a catalog name or a model directory' },
      threads: { type: 'string', value: 'N', description: 'inference threads (0: as many as cores)' },
      batch: { type: 'string', value: 'N', description: 'frames per inference call at most' },
      truth: {
        type: 'string',
        value: 'FILE',
        description:
          'ground truth of the recording (JSON, as test/fixtures/vtest-events-truth.json): print crossing recall and precision, count error, occupancy error, IDF1 and false events of the scene',
      },
    });
    if (positionals.length !== 1 || !values.scene) {
      throw new ArgusError('replay needs one recording and --scene', `usage: ${this.usage}`);
    }
    const log = createLogger('replay');
    const settings = {
      ...DEFAULT_DETECTOR_SETTINGS,
      model: values.model ?? DEFAULT_DETECTOR_SETTINGS.model,
      intraOpThreads: parsePositiveNumber(values.threads, '--threads') ?? 0,
      maxBatch: parsePositiveNumber(values.batch, '--batch') ?? DEFAULT_DETECTOR_SETTINGS.maxBatch,
    };
    growHeapForVideo();
    await ensureModelInstalled(settings.model, ctx.signal);
    // the scene is checked before the detector loads: a mistake in it is reported at once
    const scene = await loadScene(values.scene, (await readModelDescriptor(settings.model)).labels);
    const truth = values.truth ? await loadEventTruth(values.truth) : undefined;
    const recorder = observationRecorder();
    if (values.snapshots) await mkdir(values.snapshots, { recursive: true });
    const detector = await DetectorPool.load(settings, log);
    // the detector's threads keep the process alive: closed whatever fails below (the source)
    try {
      let events = 0;
      const replayed = await replayRecording({
        video: positionals[0]!,
        scene,
        scenePath: values.scene,
        detector,
        maxBatch: settings.maxBatch,
        detectFps: parsePositiveNumber(values.fps, '--fps') ?? 5,
        log,
        signal: ctx.signal,
        onStep: recorder.onStep,
        onEvent: async (e) => {
          events++;
          recorder.onEvent(e.message);
          let snapshot: string | undefined;
          if (e.snapshot && values.snapshots) {
            // the whole id: time-ordered ids share their first characters within a recording
            snapshot = join(values.snapshots, `${e.message.rule}-${e.message.id}-${e.message.seq}.jpg`);
            // a recording's replay waits for each picture: it goes no faster than the files it writes
            await writeFile(snapshot, await e.snapshot.jpeg);
          }
          ctx.stdout.write(
            values.json
              ? `${JSON.stringify({ ...e.message, ...(snapshot ? { snapshotFile: snapshot } : {}) })}\n`
              : `${describe(e)}\n`,
          );
        },
      });
      const summary = {
        events,
        frames: replayed.frames,
        seconds: Number(replayed.seconds.toFixed(2)),
        fps: Number((replayed.frames / replayed.seconds).toFixed(1)),
        motionSkippedShare: replayed.motionSkippedShare,
        motionSearchedShare: replayed.motionSearchedShare,
      };
      ctx.stdout.write(
        values.json
          ? `${JSON.stringify({ summary })}\n`
          : `\n${events} event messages from ${replayed.frames} frames in ${summary.seconds} s (${summary.fps} frames/s, ${(100 * summary.motionSkippedShare).toFixed(0)}% skipped by motion gating, ${(100 * summary.motionSearchedShare).toFixed(0)}% of the pixels detected)\n`,
      );
      if (truth) {
        const accuracy = scoreObservation(truth, recorder.observation);
        ctx.stdout.write(
          values.json
            ? `${JSON.stringify({ accuracy })}\n`
            : `\naccuracy against ${values.truth}:\n${describeAccuracy(accuracy)}\n`,
        );
      }
      return 0;
    } finally {
      await detector.close();
    }
  },
};
