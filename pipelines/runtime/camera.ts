import { isDeepStrictEqual } from 'node:util';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import type { Logger } from '../../common/logger.ts';
import type { CameraTelemetry } from '../../contract/payloads.ts';
import type { Detection } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { type Box, boxOf, type Rect, rectOf } from '../../inference/rect.ts';
import { FrameSource, toModelFrame, type VideoFrame } from '../../video/frame-source.ts';
import { parseSourceUrl, type SourceSpec } from '../../video/source-url.ts';
import type { CameraSettings } from '../camera-settings.ts';
import { EventLifecycle, type PipelineEvent, type SceneEventMessage } from '../events/lifecycle.ts';
import { MotionGate } from '../motion.ts';
import { SceneEngine, type SceneStep } from '../scene/engine.ts';
import type { Scene } from '../scene/schema.ts';
import { renderAnnotatedJpeg } from '../snapshot.ts';
import type { Track } from '../tracking/tracker.ts';
import type { DetectionScheduler, DetectionStamps } from './scheduler.ts';
import { type PendingJpeg, SnapshotRenderer } from './snapshots.ts';
import { StallWatchdog } from './stall-watchdog.ts';
import { RateMeter, SampleWindow } from './stats.ts';

export interface Jpeg {
  jpeg: Buffer;
  width: number;
  height: number;
}

/** an event message ready for the uplink; its snapshot is rendered after it is emitted */
export interface CameraEvent {
  camera: string;
  message: SceneEventMessage;
  snapshot?: PendingJpeg;
  /** the frame's arrival (ms, performance clock) to the event being emitted */
  latencyMs: number;
  /** when the event was emitted (ms, performance clock): the listener's stamps go on from here */
  emittedAt: number;
  /** where `latencyMs` went, when the event came from a detected frame (the stages add up to it) */
  stages?: EventStages;
}

/** the parts of a frame → event latency (ms), in the order the frame goes through them */
export interface EventStages {
  /** the motion gate, frame reaching Node → submitted to the scheduler */
  motion: number;
  /** waiting for a batch to fill and a detector session to be free */
  slot: number;
  /** the inference call the frame was in */
  inference: number;
  /** waiting for the camera's earlier frames to be tracked and their events emitted */
  order: number;
  /** tracking, scene rules and the event lifecycle */
  rules: number;
  /** earlier events of the same frame: their listener (the snapshots are rendered after) */
  earlierEvents: number;
}

/** timestamps of one frame on its way to events (ms, performance clock) */
interface FrameStamps extends DetectionStamps {
  arrivedAt: number;
  submittedAt: number;
  observedAt?: number;
}

export interface CameraStatusChange {
  camera: string;
  state: 'online' | 'offline';
  reason?: string;
  at: Date;
}

/** one detected frame as the pipeline saw it, for whoever learns from it (the box's harvest) */
export interface DetectedFrame {
  camera: string;
  /** scene time, seconds (what the tracker was given) */
  t: number;
  frame: VideoFrame;
  /** the model frame's size (VideoFrame.model's pixels) */
  modelSize: { width: number; height: number };
  detections: readonly Detection[];
  /** the tracker's tracks after the frame */
  tracks: readonly Track[];
  /** the moving regions the detector was given (source pixels); absent for a whole frame */
  searched: readonly Box[] | undefined;
}

export interface CameraRuntimeOptions {
  camera: CameraSettings;
  scene: Scene;
  /** shares the box's detector; GStreamer prepares frames in its input size and colour order */
  scheduler: DetectionScheduler;
  /**
   * `live`: a camera — reconnects forever, wall-clock time, newest frame wins.
   * `replay`: a recording as fast as possible — every sampled frame is detected in order, scene
   * time is the stream time.
   */
  mode: 'live' | 'replay';
  log: Logger;
  /** replay: wall-clock time of stream time 0 (default: now) */
  replayStart?: Date;
  onEvent: (e: CameraEvent) => void | Promise<void>;
  onStatus?: (s: CameraStatusChange) => void;
  /** every observed frame's scene step and counters, in frame order (the accuracy evaluation reads them) */
  onStep?: (t: number, step: SceneStep, counters: Record<string, number>) => void;
  /** every detected frame after tracking, synchronously (keep it cheap: the camera waits) */
  onDetected?: (d: DetectedFrame) => void;
  /** live: the wait between reconnection attempts, doubling from `startMs` up to `maxMs` */
  reconnect?: { startMs: number; maxMs: number };
  /** renders the events' snapshots after they are emitted; the cameras of a box share one (default: the camera's own) */
  snapshots?: SnapshotRenderer;
}

const RECONNECT = { startMs: 250, maxMs: 2000 };
/** while a camera is offline, one log line when it goes, then at most one summary per this */
const OUTAGE_SUMMARY_MS = 60_000;

function eventStages(s: FrameStamps, ruledAt: number, emittedAt: number): EventStages {
  // a frame's inference call always starts and ends before it is observed
  const startedAt = s.startedAt ?? s.submittedAt;
  const inferredAt = s.inferredAt ?? startedAt;
  const observedAt = s.observedAt ?? inferredAt;
  return {
    motion: s.submittedAt - s.arrivedAt,
    slot: startedAt - s.submittedAt,
    inference: inferredAt - startedAt,
    order: observedAt - inferredAt,
    rules: ruledAt - observedAt,
    earlierEvents: emittedAt - ruledAt,
  };
}

/** waits `ms` or until `signal` aborts; leaves no listener behind either way */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * One camera: GStreamer source → motion gate → shared detector → tracker and scene rules → event
 * lifecycle → listener, each event's snapshot rendered after it (SnapshotRenderer). A live camera survives anything its source does:
 * unreachable, stalled (no frame for `stallTimeoutS`), end of stream, decoder errors — it goes
 * offline, ends its open events (`after.reason` "camera offline: …"), retries with bounded
 * exponential backoff, and comes back online on the first frame. The outage is logged when it
 * starts, then summarised at most once a minute.
 */
export class CameraRuntime {
  readonly id: string;
  private readonly spec: SourceSpec;
  private readonly stop$ = new AbortController();
  private source: FrameSource | undefined;
  private state: CameraTelemetry['state'] = 'starting';
  private engine: SceneEngine | undefined;
  private lifecycle: EventLifecycle;
  private motion: MotionGate;
  private scene: Scene;
  /** where a camera's motion gate refreshes within its period: cameras started together differ */
  private readonly motionPhase: number;
  private chain: Promise<void> = Promise.resolve();
  private latest: VideoFrame | undefined;
  private lastT = 0;
  private readonly framesIn = new RateMeter();
  private readonly framesDetected = new RateMeter();
  private readonly detectLatency = new SampleWindow();
  readonly eventLatency = new SampleWindow(10_000);
  private running: Promise<void> | undefined;
  private frameCount = 0;
  private detectedCount = 0;
  private restartRequested = false;
  private readonly snapshots: SnapshotRenderer;

  constructor(private readonly o: CameraRuntimeOptions) {
    this.id = o.camera.id;
    this.snapshots = o.snapshots ?? new SnapshotRenderer();
    this.spec = parseSourceUrl(o.camera.url);
    this.scene = o.scene;
    const start = o.replayStart?.getTime() ?? Date.now();
    this.lifecycle = new EventLifecycle(
      this.id,
      o.mode === 'live' ? (t) => new Date(t * 1000) : (t) => new Date(start + t * 1000),
      o.scene.snapshots.enabled,
    );
    // cameras started together refresh at different moments, each always at the same one
    this.motionPhase = Number.parseInt(sha256Hex(this.id).slice(0, 8), 16) / 2 ** 32;
    this.motion = this.newMotionGate(o.scene);
    o.scheduler.register(this.id, o.mode === 'live' ? 'newest' : 'ordered');
  }

  private newMotionGate(scene: Scene): MotionGate {
    const { width, height } = this.o.scheduler.input;
    return new MotionGate(scene.motion, width, height, this.motionPhase);
  }

  /** starts the camera in the background; `done` settles when it stops (replay: at end of file) */
  start(): void {
    this.running ??= (this.o.mode === 'live' ? this.runLive() : this.runReplay()).finally(() =>
      this.o.scheduler.unregister(this.id),
    );
  }

  get done(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private newSource(): FrameSource {
    const live = this.o.mode === 'live';
    const { camera } = this.o;
    const input = this.o.scheduler.input;
    return new FrameSource(
      {
        source: this.spec,
        model: input,
        ...(live ? { maxFps: camera.detectFps, realtime: true } : {}),
        rtspTransport: camera.rtspTransport,
      },
      this.o.log,
      camera.decoder,
    );
  }

  private setState(state: 'online' | 'offline', reason?: string): void {
    if (this.state === state) return;
    const wasStarting = this.state === 'starting';
    this.state = state;
    if (state === 'offline' && wasStarting) {
      this.o.log.warn({ camera: this.id, reason }, 'camera unavailable');
    } else {
      this.o.log.info({ camera: this.id, state, reason }, `camera ${state}`);
    }
    this.o.onStatus?.({ camera: this.id, state, ...(reason ? { reason } : {}), at: new Date() });
  }

  private async runLive(): Promise<void> {
    const reconnect = this.o.reconnect ?? RECONNECT;
    let backoff = reconnect.startMs;
    let attempts = 0;
    let offlineSince = 0;
    let lastSummary = 0;
    const { signal } = this.stop$;
    while (!signal.aborted) {
      const source = this.newSource();
      this.source = source;
      let reason = 'end of stream';
      const watchdog = new StallWatchdog(source, this.o.camera.stallTimeoutS);
      try {
        source.start();
        for (;;) {
          const frame = await watchdog.pull(() => source.next());
          if (!frame) break;
          if (this.state !== 'online') this.setState('online');
          backoff = reconnect.startMs;
          attempts = 0;
          this.onFrame(frame, frame.receivedAt / 1000);
        }
      } catch (err) {
        reason = errorMessage(err);
      } finally {
        watchdog.stop();
        source.stop();
      }
      if (watchdog.stalled) reason = `stalled: no frame for ${this.o.camera.stallTimeoutS} s`;
      if (signal.aborted) break;
      if (this.restartRequested) {
        this.restartRequested = false;
        reason = 'restart requested';
      }
      const looping = this.spec.kind === 'file' && this.o.camera.loop && reason === 'end of stream';
      if (looping) continue;
      const now = Date.now();
      if (this.state !== 'offline') {
        this.setState('offline', reason);
        offlineSince = now;
        lastSummary = now;
        await this.endOpenEvents(() => now / 1000, `camera offline: ${reason}`);
      } else if (now - lastSummary >= OUTAGE_SUMMARY_MS) {
        lastSummary = now;
        this.o.log.warn(
          { camera: this.id, reason, attempts, offlineS: Math.round((now - offlineSince) / 1000) },
          'camera still offline; reconnecting',
        );
      }
      attempts++;
      await sleep(backoff * (0.8 + Math.random() * 0.4), signal);
      backoff = Math.min(reconnect.maxMs, backoff * 2);
    }
    await this.endOpenEvents(() => Date.now() / 1000, 'stopped');
  }

  private async runReplay(): Promise<void> {
    const source = this.newSource();
    this.source = source;
    source.start();
    this.setState('online');
    let nextSample = 0;
    // results of submitted frames, oldest first: waiting on them keeps the queue bounded
    const outstanding: Promise<unknown>[] = [];
    const watchdog = new StallWatchdog(source, this.o.camera.stallTimeoutS);
    let lastIndex = -1;
    try {
      for (;;) {
        const frame = await watchdog.pull(() => source.next());
        if (!frame) break;
        lastIndex = frame.index;
        const t = frame.index / (frame.fps ?? 10);
        if (t + 1e-6 < nextSample) continue;
        nextSample = Math.max(nextSample + 1 / this.o.camera.detectFps, t);
        // which tracked objects the regions hold must not depend on how far detection has got
        if (this.motion.readsTracked(t)) await this.chain;
        const submitted = this.onFrame(frame, t);
        if (submitted) outstanding.push(submitted);
        while (outstanding.length > this.o.scheduler.queueLimit) await outstanding.shift();
      }
    } finally {
      watchdog.stop();
      source.stop();
    }
    await this.endOpenEvents(() => this.lastT, 'stopped');
    if (watchdog.stalled) {
      throw new ArgusError(
        `${this.o.camera.url}: no frame for ${this.o.camera.stallTimeoutS} s after frame ${lastIndex}; the recording is truncated or the decoder hung`,
      );
    }
  }

  /** motion gate, then detection; returns the detection promise when the frame was submitted */
  private onFrame(frame: VideoFrame, t: number): Promise<unknown> | undefined {
    this.frameCount++;
    this.framesIn.tick();
    this.latest = frame;
    const arrivedAt = performance.now();
    const decision = this.motion.assess(frame.model, t, () => this.trackedRegions(frame));
    if (!decision.detect) return undefined;
    const stamps: FrameStamps = { arrivedAt, submittedAt: performance.now() };
    const result = this.o.scheduler.submit(this.id, toModelFrame(frame), decision.regions, stamps);
    this.chain = this.chain
      .then(() => result)
      .then(async (detections) => {
        if (!detections) return;
        stamps.observedAt = performance.now();
        this.detectLatency.add(stamps.observedAt - stamps.submittedAt);
        this.framesDetected.tick();
        this.detectedCount++;
        await this.observe(frame, t, detections, stamps, decision.regions);
      })
      .catch((err) =>
        this.o.log.error({ camera: this.id, err: errorMessage(err) }, 'frame processing failed'),
      );
    return result;
  }

  /** source pixels per model-frame pixel, across and down */
  private sourcePerModel(frame: VideoFrame): { sx: number; sy: number } {
    const { input } = this.o.scheduler;
    return { sx: frame.full.width / input.width, sy: frame.full.height / input.height };
  }

  /** the boxes of the objects tracked so far, in model-frame pixels */
  private trackedRegions(frame: VideoFrame): Rect[] {
    const { sx, sy } = this.sourcePerModel(frame);
    return (this.engine?.trackedBoxes() ?? []).map((box) => rectOf(box, sx, sy));
  }

  private async observe(
    frame: VideoFrame,
    t: number,
    detections: Detection[],
    stamps: FrameStamps,
    regions: readonly Rect[] | undefined,
  ): Promise<void> {
    this.engine = (this.engine ?? new SceneEngine(this.scene, frame.full.width, frame.full.height)).resize(
      frame.full.width,
      frame.full.height,
    );
    this.lastT = t;
    const { sx, sy } = this.sourcePerModel(frame);
    const searched = regions?.map((r) => boxOf(r, sx, sy));
    const step = this.engine.observe(detections, t, searched);
    this.o.onStep?.(t, step, this.engine.counters());
    this.o.onDetected?.({
      camera: this.id,
      t,
      frame,
      modelSize: this.o.scheduler.input,
      detections,
      tracks: step.tracks,
      searched,
    });
    const events = this.lifecycle.process(
      step.transitions,
      t,
      step.tracks,
      frame.full,
      this.engine.counters(),
    );
    await this.emit(events, stamps.arrivedAt, stamps);
  }

  /** `stamps`: the detected frame the events came from, whose timestamps make the events' stages */
  private async emit(events: PipelineEvent[], arrivedAt: number, stamps?: FrameStamps): Promise<void> {
    const ruledAt = performance.now();
    for (const e of events) {
      let snapshot: PendingJpeg | undefined;
      if (e.snapshot) {
        const { frame, box, caption } = e.snapshot;
        snapshot = this.snapshots.render(
          frame,
          box ? [{ box, label: caption }] : [],
          this.scene.snapshots.quality,
        );
      }
      const emittedAt = performance.now();
      const latencyMs = emittedAt - arrivedAt;
      this.eventLatency.add(latencyMs);
      await this.o.onEvent({
        camera: this.id,
        message: e.message,
        ...(snapshot ? { snapshot } : {}),
        latencyMs,
        emittedAt,
        ...(stamps ? { stages: eventStages(stamps, ruledAt, emittedAt) } : {}),
      });
    }
  }

  /** waits for frames in flight, then ends the scene's open events at the scene time `clock` tells then */
  private async endOpenEvents(clock: () => number, reason: string): Promise<void> {
    await this.chain;
    if (!this.engine) return;
    const t = clock();
    const events = this.lifecycle.process(
      this.engine.close(t, reason),
      t,
      [],
      undefined,
      this.engine.counters(),
    );
    await this.emit(events, performance.now());
  }

  /** stops the camera; open events end with reason "stopped" */
  async stop(): Promise<void> {
    this.stop$.abort();
    this.source?.stop();
    await this.done;
  }

  /** drops the current connection; a live camera reconnects after a short backoff */
  restart(): void {
    this.restartRequested = true;
    this.source?.stop();
  }

  /** a JPEG of the newest frame */
  async snapshotNow(): Promise<Jpeg> {
    const frame = this.latest;
    if (!frame) throw new ArgusError(`camera ${this.id} has not delivered a frame yet`);
    return {
      jpeg: await renderAnnotatedJpeg(frame.full, [], this.scene.snapshots.quality),
      width: frame.full.width,
      height: frame.full.height,
    };
  }

  /**
   * Runs `scene` from the next detected frame on, without touching the video: frames keep coming
   * from the same source. The scene engine keeps the state of unchanged rules and ends the open
   * events of rules removed or changed (see SceneEngine.reconfigure); the motion gate starts over
   * when its settings change (it learns the background again from the next frame). Frames already
   * in detection are observed under the old scene first.
   */
  applyScene(scene: Scene): Promise<void> {
    const applied = this.chain.then(async () => {
      if (!isDeepStrictEqual(scene.motion, this.scene.motion)) this.motion = this.newMotionGate(scene);
      this.scene = scene;
      this.lifecycle.snapshots = scene.snapshots.enabled;
      const engine = this.engine;
      if (!engine) return;
      const t = this.o.mode === 'live' ? Date.now() / 1000 : this.lastT;
      const ended = engine.reconfigure(scene, t);
      await this.emit(this.lifecycle.process(ended, t, [], undefined, engine.counters()), performance.now());
    });
    this.chain = applied.catch((err) =>
      this.o.log.error({ camera: this.id, err: errorMessage(err) }, 'applying the scene failed'),
    );
    return applied;
  }

  /** the scene the camera runs */
  get currentScene(): Scene {
    return this.scene;
  }

  /** the newest frame the source delivered, as the detector takes it (undefined before the first) */
  latestFrame(): { frame: ModelFrame; receivedAt: number } | undefined {
    const f = this.latest;
    return f ? { frame: toModelFrame(f), receivedAt: f.receivedAt } : undefined;
  }

  get frames(): number {
    return this.frameCount;
  }

  /** frames run through the detector since the camera started */
  get detectedFrames(): number {
    return this.detectedCount;
  }

  /** detect latencies of the recent frames (ms) */
  detectLatencies(): readonly number[] {
    return this.detectLatency.values();
  }

  stats(): CameraTelemetry {
    const s = this.o.scheduler.stats(this.id);
    return {
      id: this.id,
      state: this.state,
      fpsIn: Number(this.framesIn.rate().toFixed(2)),
      fpsDetect: Number(this.framesDetected.rate().toFixed(2)),
      detectLatencyMs: Number(this.detectLatency.percentile(50).toFixed(1)),
      drops: s.drops,
      motionSkippedShare: Number(this.motion.skippedShare.toFixed(3)),
      motionSearchedShare: Number(this.motion.searchedShare.toFixed(3)),
    };
  }
}
