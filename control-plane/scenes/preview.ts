import { access } from 'node:fs/promises';
import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { DetectorPool } from '../../inference/detector-pool.ts';
import { DEFAULT_DETECTOR_SETTINGS, type DetectorSettings } from '../../inference/settings.ts';
import { ensureModelInstalled } from '../../models/store.ts';
import type { SceneEventMessage } from '../../pipelines/events/lifecycle.ts';
import { replayRecording } from '../../pipelines/runtime/replay.ts';
import type { Scene } from '../../pipelines/scene/schema.ts';
import type { SceneEditorSettings } from '../config.ts';
import { SceneRefused } from './refused.ts';

/** event messages one preview answers at most (the count says how many there were) */
export const MAX_PREVIEW_EVENTS = 1000;

export interface PreviewRequest {
  scene: Scene;
  /** a name of `scenes.recordings` */
  recording: string;
  /** seconds of the recording to replay (at most `scenes.previewSeconds`) */
  seconds: number;
  detectFps: number;
}

export interface PreviewResult {
  events: SceneEventMessage[];
  /** every event message raised, also those past MAX_PREVIEW_EVENTS */
  eventCount: number;
  frames: number;
  recordedSeconds: number;
  seconds: number;
  /** why it ended before the seconds asked for: the time limit, or the request went away */
  stopped: 'time-limit' | 'canceled' | null;
}

/**
 * Scene previews: a scene replayed over a recording through the pipeline the boxes run
 * (`replayRecording`, as `argus replay` does), on the control plane, to list the events the scene
 * would raise before it is published. Bounded: one preview per operator at a time (409),
 * `scenes.previewsAtOnce` in all (503), `scenes.previewSeconds` of a recording, stopped after
 * `scenes.previewTimeoutS`; the detector runs one session on one thread at low priority, loaded
 * for the preview and closed after it.
 */
export class ScenePreviews {
  private readonly running = new Set<string>();

  constructor(
    private readonly settings: SceneEditorSettings,
    private readonly log: Logger,
  ) {}

  get recordings(): string[] {
    return Object.keys(this.settings.recordings).sort();
  }

  get detector(): DetectorSettings {
    return {
      ...DEFAULT_DETECTOR_SETTINGS,
      model: this.settings.model,
      sessions: 1,
      intraOpThreads: 1,
      threadNice: 10,
      maxBatch: 1,
    };
  }

  async run(operator: string, request: PreviewRequest, cancel: AbortSignal): Promise<PreviewResult> {
    const video = this.settings.recordings[request.recording];
    if (!video)
      throw new SceneRefused(
        `no recording "${request.recording}" to preview on`,
        400,
        this.recordings.length
          ? `choose one of ${this.recordings.join(', ')}`
          : 'list the recordings previews may replay in the control plane config (scenes.recordings)',
      );
    await access(video).catch(() => {
      throw new ArgusError(
        `recording "${request.recording}" (${video}) cannot be read`,
        'check scenes.recordings in the control plane config',
      );
    });
    if (this.running.has(operator))
      throw new SceneRefused(
        `a preview of ${operator} is running`,
        409,
        'wait for it to end (one preview per operator at a time)',
      );
    if (this.running.size >= this.settings.previewsAtOnce)
      throw new SceneRefused(
        `${this.running.size} previews are running, the limit (scenes.previewsAtOnce)`,
        503,
        'retry in a minute',
      );
    this.running.add(operator);
    const stop = new AbortController();
    let stopped: PreviewResult['stopped'] = null;
    const timer = setTimeout(() => {
      stopped = 'time-limit';
      stop.abort();
    }, this.settings.previewTimeoutS * 1000);
    const canceled = () => {
      stopped ??= 'canceled';
      stop.abort();
    };
    cancel.addEventListener('abort', canceled, { once: true });
    try {
      const settings = this.detector;
      await ensureModelInstalled(settings.model, stop.signal);
      const detector = await DetectorPool.load(settings, this.log);
      try {
        const events: SceneEventMessage[] = [];
        let eventCount = 0;
        const summary = await replayRecording({
          video,
          scene: request.scene,
          scenePath: `the scene editor's preview of ${operator}`,
          detector,
          maxBatch: settings.maxBatch,
          detectFps: request.detectFps,
          log: this.log,
          signal: stop.signal,
          maxSeconds: Math.min(request.seconds, this.settings.previewSeconds),
          onEvent: (e) => {
            eventCount++;
            if (events.length < MAX_PREVIEW_EVENTS) events.push(e.message);
          },
        });
        return {
          events,
          eventCount,
          frames: summary.frames,
          recordedSeconds: summary.recordedSeconds,
          seconds: summary.seconds,
          stopped,
        };
      } finally {
        await detector.close();
      }
    } finally {
      clearTimeout(timer);
      cancel.removeEventListener('abort', canceled);
      this.running.delete(operator);
    }
  }
}
