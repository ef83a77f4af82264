import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import sharp from 'sharp';
import Type from 'typebox';
import { ArgusError, errorMessage } from '../common/errors.ts';
import { timeOrderedId } from '../common/ids.ts';
import type { Logger } from '../common/logger.ts';
import { compileSchema } from '../common/schema.ts';
import { type CameraTelemetry, EventMessageSchema } from '../contract/index.ts';
import type { CameraSettings } from '../pipelines/camera-settings.ts';
import type { CameraHost, HostEvent, HostStatus, Jpeg } from './camera-host.ts';
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
 */
export class RecordedEventsHost implements CameraHost {
  private recording: RecordedEvent[] = [];
  private readonly cameras = new Map<string, CameraReplay>();
  private timer: NodeJS.Timeout | undefined;
  private readonly eventListeners: ((e: HostEvent) => void)[] = [];
  private readonly statusListeners: ((s: HostStatus) => void)[] = [];

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

  async start(cameras: readonly CameraSettings[], _configDir: string): Promise<void> {
    if (this.timer) throw new ArgusError('the recorded-events host is already running');
    this.recording = await loadRecording(this.settings.events);
    const now = performance.now();
    for (const c of cameras.filter((cam) => cam.enabled)) {
      this.cameras.set(c.id, {
        id: c.id,
        state: 'starting',
        next: 0,
        runStart: now,
        runEmitted: 0,
        open: new Map(),
        lastSnapshot: undefined,
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
    return [...this.cameras.values()].map((cam) => ({
      id: cam.id,
      state: cam.state,
      fpsIn: 0,
      fpsDetect: 0,
      detectLatencyMs: 0,
      drops: 0,
      motionSkippedShare: 0,
    }));
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
    return { camera: cam.id, message, ...(recorded.snapshot ? { snapshot: recorded.snapshot } : {}) };
  }
}
