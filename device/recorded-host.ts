import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import sharp from 'sharp';
import Type from 'typebox';
import { ArgusError, errorMessage } from '../common/errors.ts';
import { timeOrderedId } from '../common/ids.ts';
import type { Logger } from '../common/logger.ts';
import { compileSchema } from '../common/schema.ts';
import { CONTRACT_BOUNDS } from '../contract/bounds.ts';
import { type CameraTelemetry, EventMessageSchema } from '../contract/index.ts';
import type { ShadowFigures, ShadowThresholds } from '../contract/ota.ts';
import { loadModel } from '../inference/model-dir.ts';
import type { HealthSample } from '../ota/updater/host.ts';
import type { CameraSettings } from '../pipelines/camera-settings.ts';
import { checkSceneLabels, loadScene } from '../pipelines/scene/load.ts';
import type { HostEvent, HostStatus, Jpeg, UpdatableHost } from './camera-host.ts';
import type { RecordedSettings } from './config.ts';

/** one line of a recording: what `argus replay --json --snapshots DIR` prints for an event */
const RecordingLineSchema = Type.Object(
  {
    ...Type.Omit(EventMessageSchema, ['v', 'device', 'cameraSeq', 'snapshot']).properties,
    /** the event's snapshot, relative to the recording file */
    snapshotFile: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);
type RecordingLine = Type.Static<typeof RecordingLineSchema>;
const lineValidator = compileSchema<RecordingLine>(RecordingLineSchema);

export interface RecordedEvent {
  message: HostEvent['message'];
  snapshot?: Jpeg;
}

const MAX_REPORTED_PROBLEMS = 20;

/**
 * Reads a recording (JSON lines of pipeline event messages, e.g. the output of `argus replay --json
 * --snapshots DIR`; its closing `{"summary": …}` line is skipped) with the JPEG of every
 * `snapshotFile`. Problems are reported as file:line with what is wrong.
 */
export async function loadRecording(file: string): Promise<RecordedEvent[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ArgusError(`cannot read recording ${file}: ${(err as Error).message}`, 'check recorded.events');
  }
  const problems: string[] = [];
  const events: RecordedEvent[] = [];
  const lines = text.split('\n');
  for (const [i, raw] of lines.entries()) {
    const where = `${file}:${i + 1}`;
    if (raw.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      problems.push(`  ${where}: not JSON: ${(err as Error).message}`);
      continue;
    }
    if (typeof value === 'object' && value !== null && 'summary' in value) continue;
    const issues = lineValidator.issues(value);
    if (issues.length > 0) {
      problems.push(...issues.map((p) => `  ${where}: ${p.path || '(line)'}: ${p.message}`));
      continue;
    }
    const { snapshotFile, ...message } = value as RecordingLine;
    const event: RecordedEvent = { message };
    if (snapshotFile) {
      const path = resolve(dirname(file), snapshotFile);
      try {
        const jpeg = await readFile(path);
        const meta = await sharp(jpeg).metadata();
        if (meta.format !== 'jpeg') throw new Error(`it is ${meta.format ?? 'not an image'}, not a JPEG`);
        event.snapshot = { jpeg, width: meta.width ?? 0, height: meta.height ?? 0 };
      } catch (err) {
        problems.push(`  ${where}: snapshotFile ${path}: ${errorMessage(err)}`);
        continue;
      }
    }
    events.push(event);
  }
  if (problems.length > 0) {
    const more =
      problems.length > MAX_REPORTED_PROBLEMS
        ? `\n  … and ${problems.length - MAX_REPORTED_PROBLEMS} more`
        : '';
    throw new ArgusError(
      `recording ${file} is invalid:\n${problems.slice(0, MAX_REPORTED_PROBLEMS).join('\n')}${more}`,
      'fix or remove these lines; a recording holds one pipeline event message per line',
    );
  }
  if (events.length === 0)
    throw new ArgusError(`recording ${file} holds no events`, 'record some with `argus replay --json`');
  return events;
}

interface CameraReplay {
  id: string;
  state: CameraTelemetry['state'];
  /** index of the next recorded event */
  next: number;
  /** pacing: when the current run started (performance clock, ms) and how many it emitted since */
  runStart: number;
  runEmitted: number;
  /** recorded event id → the id and start of its replayed copy, and its last message */
  open: Map<string, { id: string; startedAt: string; last?: HostEvent['message'] }>;
  lastSnapshot: Jpeg | undefined;
  /** the scene it reports: the config's file (version 0), or the one applied last */
  scene: { name: string; version: number };
}

const RESTART_PAUSE_MS = 200;

/**
 * A camera host that replays a recording of pipeline events instead of running cameras: every
 * enabled camera of the config plays the whole recording at `eventsPerSecond` (looping if asked),
 * as if its pipeline had produced it now. Each replayed event gets a fresh id (stable over its
 * lifecycle, new on every loop) and current timestamps; the recorded snapshots come along; an event
 * the recording leaves open ends at its end (`after.reason` "end of recording"), and a camera going
 * offline (restart, stop) ends its open events ("camera offline: …"). Used to
 * exercise the uplink, spool and control plane without cameras or a detector.
 *
 * For OTA updates it does what it can without video: a model swap checks the model directory
 * (descriptor and file hash) and reports it in telemetry, a scene apply validates the scene and
 * reports it for its cameras; the recording plays on unchanged. Shadow validation needs live frames
 * and a detector and is refused, saying so.
 */
export class RecordedEventsHost implements UpdatableHost {
  private recording: RecordedEvent[] = [];
  private readonly cameras = new Map<string, CameraReplay>();
  private timer: NodeJS.Timeout | undefined;
  private readonly eventListeners: ((e: HostEvent) => void)[] = [];
  private readonly statusListeners: ((s: HostStatus) => void)[] = [];
  /** the model it reports after a swap (none runs) */
  private model: { name: string; version: number; labels: readonly string[] } | undefined;
  /** event messages produced since the host started */
  private eventMessages = 0;

  constructor(
    private readonly settings: RecordedSettings,
    private readonly log: Logger,
  ) {}

  onEvent(listener: (e: HostEvent) => void): void {
    this.eventListeners.push(listener);
  }

  onStatus(listener: (s: HostStatus) => void): void {
    this.statusListeners.push(listener);
  }

  async start(cameras: readonly CameraSettings[], configDir: string): Promise<void> {
    if (this.timer) throw new ArgusError('the recorded-events host is already running');
    this.recording = await loadRecording(this.settings.events);
    const now = performance.now();
    const enabled = cameras.filter((cam) => cam.enabled);
    // the scene files are read for their names only: a recording does not run them
    const names = await Promise.all(
      enabled.map((c) =>
        loadScene(resolve(configDir, c.scene)).then(
          (scene) => scene.name,
          () => c.scene,
        ),
      ),
    );
    for (const [i, c] of enabled.entries()) {
      this.cameras.set(c.id, {
        id: c.id,
        state: 'starting',
        next: 0,
        runStart: now,
        runEmitted: 0,
        open: new Map(),
        lastSnapshot: undefined,
        scene: { name: names[i]!.slice(0, CONTRACT_BOUNDS.name), version: 0 },
      });
    }
    for (const cam of this.cameras.values()) this.setState(cam, 'online');
    const rate = this.settings.eventsPerSecond;
    this.timer = setInterval(() => this.tick(), Math.min(100, Math.max(5, 1000 / rate)));
    this.log.info(
      {
        recording: this.settings.events,
        events: this.recording.length,
        cameras: this.cameras.size,
        eventsPerSecond: rate,
      },
      'replaying recorded events',
    );
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const cam of this.cameras.values()) this.setState(cam, 'offline', 'stopped');
    this.cameras.clear();
  }

  async restartCamera(id: string): Promise<void> {
    const cam = this.camera(id);
    this.setState(cam, 'offline', 'restart requested');
    await new Promise((r) => setTimeout(r, RESTART_PAUSE_MS));
    if (this.cameras.get(id) !== cam) return;
    cam.runStart = performance.now();
    cam.runEmitted = 0;
    this.setState(cam, 'online');
  }

  async snapshotNow(id: string): Promise<Jpeg> {
    const cam = this.camera(id);
    const snapshot = cam.lastSnapshot ?? this.recording.find((e) => e.snapshot)?.snapshot;
    if (!snapshot) throw new ArgusError(`camera ${id} has no snapshot: the recording has none`);
    return snapshot;
  }

  /** a recording replays events: no detector runs */
  detectorStats(): undefined {
    return undefined;
  }

  stats(): CameraTelemetry[] {
    const m = this.model;
    return [...this.cameras.values()].map((cam) => ({
      id: cam.id,
      state: cam.state,
      fpsIn: 0,
      fpsDetect: 0,
      detectLatencyMs: 0,
      drops: 0,
      motionSkippedShare: 0,
      ...(m ? { model: { name: m.name, version: m.version } } : {}),
      scene: cam.scene,
    }));
  }

  async shadowModel(
    _candidateModelDir: string,
    _thresholds: ShadowThresholds,
    _signal: AbortSignal,
  ): Promise<ShadowFigures> {
    throw new ArgusError(
      'this box replays recorded events and runs no detector on live frames: a model cannot be validated in shadow here',
      'roll models out with a shadow step to boxes with cameras only, or assign this box the update without one',
    );
  }

  /** checks the model directory (it loads, its file matches its hash) and reports it from now on */
  async swapModel(modelDir: string): Promise<void> {
    const { descriptor: d } = await loadModel(modelDir);
    this.model = { name: d.name, version: d.version, labels: d.labels };
    this.log.info({ model: d.name, version: d.version }, 'model recorded as swapped (no detector runs here)');
  }

  /** validates the scene (against the swapped-in model's labels, if any) and reports it for the cameras */
  async applyScene(cameras: readonly string[], sceneFile: string, version: number): Promise<void> {
    const targets = cameras.length > 0 ? cameras.map((id) => this.camera(id)) : [...this.cameras.values()];
    const scene = await loadScene(sceneFile);
    if (this.model) checkSceneLabels(scene, this.model.labels, sceneFile);
    for (const cam of targets) cam.scene = { name: scene.name.slice(0, CONTRACT_BOUNDS.name), version };
    this.log.info(
      { scene: scene.name, version, cameras: targets.map((c) => c.id) },
      'scene recorded as applied',
    );
  }

  /** no detector: its figures are zero; events count the replayed messages */
  healthSample(): HealthSample {
    return {
      detectFps: 0,
      detectLatencyMs: 0,
      detectorRestarts: 0,
      events: this.eventMessages,
    };
  }

  private camera(id: string): CameraReplay {
    const cam = this.cameras.get(id);
    if (!cam) {
      throw new ArgusError(
        `no camera "${id}" on this device`,
        `cameras: ${[...this.cameras.keys()].join(', ') || 'none'}`,
      );
    }
    return cam;
  }

  private setState(cam: CameraReplay, state: 'online' | 'offline', reason?: string): void {
    if (cam.state === state) return;
    cam.state = state;
    const status: HostStatus = { camera: cam.id, state, ...(reason ? { reason } : {}), at: new Date() };
    for (const l of this.statusListeners) l(status);
    if (state === 'offline') this.endOpen(cam, `camera offline: ${reason ?? 'no reason given'}`);
  }

  /** ends the camera's open replayed events, `reason` in their `after` */
  private endOpen(cam: CameraReplay, reason: string): void {
    const at = new Date().toISOString();
    const ends: HostEvent[] = [];
    for (const { last } of cam.open.values()) {
      if (!last) continue;
      ends.push({
        camera: cam.id,
        message: {
          ...last,
          seq: last.seq + 1,
          phase: 'end',
          at,
          endedAt: at,
          before: last.after,
          after: { reason },
        },
      });
    }
    cam.open.clear();
    this.eventMessages += ends.length;
    for (const e of ends) for (const l of this.eventListeners) l(e);
  }

  private tick(): void {
    const now = performance.now();
    for (const cam of this.cameras.values()) {
      const due = Math.floor(((now - cam.runStart) * this.settings.eventsPerSecond) / 1000);
      while (cam.state === 'online' && cam.runEmitted < due) this.emit(cam);
    }
  }

  private emit(cam: CameraReplay): void {
    const recorded = this.recording[cam.next]!;
    cam.runEmitted++;
    cam.next++;
    const event = this.replay(cam, recorded);
    if (event) this.eventMessages++;
    if (event) for (const l of this.eventListeners) l(event);
    if (cam.next === this.recording.length) {
      cam.next = 0;
      this.endOpen(cam, 'end of recording');
      if (!this.settings.loop) this.setState(cam, 'offline', 'end of recording');
    }
  }

  /** the recorded event as if it happened now; none for the rest of an event ended meanwhile (camera offline) */
  private replay(cam: CameraReplay, recorded: RecordedEvent): HostEvent | undefined {
    const m = recorded.message;
    const at = new Date().toISOString();
    let replayed = cam.open.get(m.id);
    if (!replayed && m.phase !== 'new') return undefined;
    if (!replayed || m.phase === 'new') {
      replayed = { id: timeOrderedId(), startedAt: at };
      cam.open.set(m.id, replayed);
    }
    if (m.phase === 'end') cam.open.delete(m.id);
    const message: HostEvent['message'] = {
      ...m,
      id: replayed.id,
      camera: cam.id,
      startedAt: replayed.startedAt,
      at,
      ...(m.endedAt ? { endedAt: at } : {}),
    };
    replayed.last = message;
    if (recorded.snapshot) cam.lastSnapshot = recorded.snapshot;
    const s = recorded.snapshot;
    return {
      camera: cam.id,
      message,
      ...(s ? { snapshot: { width: s.width, height: s.height, jpeg: Promise.resolve(s.jpeg) } } : {}),
    };
  }
}
