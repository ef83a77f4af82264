import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import { timeOrderedId } from '../../common/ids.ts';
import type { Logger } from '../../common/logger.ts';
import { CONTRACT_BOUNDS } from '../../contract/bounds.ts';
import {
  type ArtifactKind,
  type ArtifactRef,
  FINAL_UPDATE_STATES,
  type HealthFigures,
  otaValidators,
  type ShadowFigures,
  type UpdateAssignment,
  type UpdateState,
  type UpdateStatus,
} from '../../contract/ota.ts';
import { CONTRACT_VERSION } from '../../contract/topics.ts';
import { readDescriptor } from '../../inference/descriptor.ts';
import { DESCRIPTOR_FILE } from '../../inference/model-dir.ts';
import { type BundleLimits, digestStream, type EntryDigest } from '../../models/bundle/container.ts';
import {
  ANY_HARDWARE_CLASS,
  MANIFEST_FILE,
  parseManifest,
  SIGNATURE_FILE,
} from '../../models/bundle/manifest.ts';
import { BundleRejected } from '../../models/bundle/rejection.ts';
import { readByVerification, type VerifiedDigests, verifyBundleDigests } from '../../models/bundle/verify.ts';
import { DownloadFailed, type DownloadTls, downloadArtifact } from './download.ts';
import { readJsonFile, writeJsonDurable } from './durable.ts';
import {
  healthFigures,
  judgeHealth,
  judgeShadow,
  type Stretch,
  summarise,
  type TimedSample,
} from './health.ts';
import { isUpdateHost, type UpdateHost } from './host.ts';
import { type Committed, otherSlot, type Slot, Slots } from './slots.ts';
import { TokenBucket } from './token-bucket.ts';
import { TrustedVersions } from './trusted.ts';

/**
 * The device updater: one explicit state machine per artifact kind (a model and a scene update
 * may run side by side; a newer assignment of a kind replaces one not installing yet, and is
 * refused — `failed` at seq 0, naming the one in the way — while that one installs or is in its
 * health window, so the control plane sees it and nothing is lost silently):
 *
 *   queued → downloading → verifying → shadow (models) → installing → health → committed
 *   any step before installing → failed | canceled;  installing → failed (previous restored);
 *   health → rolled-back
 *
 * Each step is written to `<ota dir>/active/<kind>.json` (fsynced, renamed in) together with the
 * status that reports it, before the step acts, and the status goes to the spool (QoS 1, survives
 * offline). A process killed at any point finds the record at its next start and re-sends the
 * recorded status (same id and seq: the control plane takes it once), then resumes the step: a
 * download continues with `Range`, verification and shadow run again, an install is redone from
 * the start (the host was started on the committed slots, the candidate's slot is written again
 * if it is not intact). A kill inside the health window rolls back: the box booted the committed
 * version, and it reports that. `committed` is written, and sent, only after the committed pointer
 * names the new slot, which happens only after the health window passed.
 */

export interface OtaSettings {
  /** download bandwidth cap, bytes per second over all downloads of the box; 0 = none */
  maxBytesPerS: number;
  /** trusted public keys (default: the key directory's `trusted/`) */
  keyring?: string | undefined;
  limits: BundleLimits;
  /** at most one `downloading` progress status per this many seconds */
  progressS: number;
  /** the health figures are sampled from the host every this many seconds */
  sampleS: number;
  /** longest wait between download attempts */
  retryMaxS: number;
}

/** what the box runs without a committed update: its config's model and scenes */
export interface FactoryDefault {
  modelDir: string;
  /** every enabled camera and its scene file (absolute) */
  cameras: { id: string; sceneFile: string }[];
}

export interface RunningModel {
  dir: string;
  /** from its descriptor; undefined when that cannot be read */
  name: string | undefined;
  version: number | undefined;
  /** undefined: the factory default */
  slot: Slot | undefined;
}

export interface RunningScene {
  file: string;
  /** undefined, version 0: the scene of the local config */
  name: string | undefined;
  version: number;
  slot: Slot | undefined;
}

export interface Running {
  model: RunningModel;
  /** by camera */
  scenes: Map<string, RunningScene>;
}

export interface UpdaterOptions {
  device: string;
  hardwareClass: string;
  /** `<state dir>/ota` */
  otaDir: string;
  /** the download URL of an artifact for this box */
  artifactUrl: (artifactId: string) => string;
  credential: () => string;
  tls?: DownloadTls | undefined;
  /** the local address downloads leave from (a box with several interfaces); the system's choice when absent */
  localAddress?: string | undefined;
  settings: OtaSettings;
  factory: FactoryDefault;
  /** spools a status for the control plane (validated there) */
  report: (status: UpdateStatus) => void;
  /**
   * what the box runs changed: a swap to the candidate, a switch back, a commit. Awaited before
   * the status that follows is reported, so that the box's telemetry (the agent sends it at once)
   * names the version it runs before the control plane hears of the state.
   */
  changed?: () => Promise<void>;
  log: Logger;
}

/** the persisted record of an assignment in progress */
interface ActiveRecord {
  v: 1;
  assignment: UpdateAssignment;
  /** the cameras a scene goes to (resolved when it arrived) */
  cameras: string[];
  state: UpdateState;
  /** the status that reported `state` (re-sent as it is after a restart) */
  last: UpdateStatus;
  etag?: string | undefined;
  /** the figures before the swap (health), written before the swap */
  before?: Stretch | undefined;
  /** wall-clock ms at the start of the health window */
  healthStartedAt?: number | undefined;
}

interface HistoryRecord {
  v: 1;
  /** final statuses of recent assignments, newest last */
  done: UpdateStatus[];
}

type StopKind = 'cancel' | 'replaced' | 'deadline' | 'shutdown';

class Stop extends Error {
  constructor(
    readonly kind: StopKind,
    message: string,
  ) {
    super(message);
  }
}

/** a step's refusal with its final state */
class Refusal extends Error {
  constructor(
    readonly state: 'failed' | 'rolled-back',
    message: string,
    readonly figures: { shadow?: ShadowFigures; health?: HealthFigures } = {},
  ) {
    super(message);
  }
}

interface Job {
  rec: ActiveRecord;
  abort: AbortController;
  done: Promise<void>;
  deadlineTimer: NodeJS.Timeout | undefined;
  /** ms of the last progress status */
  lastProgress: number;
  /** the slot(s) were written from the bundle this process verified (a resumed job checks them again) */
  unpacked: boolean;
  /** the bundle's files as this process unpacked them while downloading, not yet verified */
  staged: Staged | undefined;
}

/** a bundle unpacked into a staging directory beside its slot, with the digests of its files */
interface Staged {
  dir: string;
  digests: Map<string, EntryDigest>;
}

const HISTORY = 64;
const RING_MAX = 3600;
/** the figures before a swap cover the health window, or at least this much of it */
const BEFORE_MIN_S = 30;
const MAX_TIMER_MS = 2 ** 31 - 1;

function text(s: string): string {
  return s.replaceAll('\u0000', '').slice(0, CONTRACT_BOUNDS.text);
}

/**
 * `work`, or the signal's reason once it aborts, whichever comes first: a step bounded by a
 * time-out ends at it even while what it waits on (e.g. loading sessions at the lowest priority on
 * a busy box) does not look at the signal
 */
function boundedBy<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  });
}

function reasonOf(err: unknown): string {
  if (err instanceof BundleRejected) return `${err.reason}: ${errorMessage(err)}`;
  if (err instanceof DownloadFailed) return `download ${err.reason}: ${errorMessage(err)}`;
  return errorMessage(err);
}

export class Updater {
  private readonly slots: Slots;
  private readonly trusted: TrustedVersions;
  private readonly bucket: TokenBucket;
  private readonly jobs = new Map<ArtifactKind, Job>();
  private committedPointer: Committed = { v: 1, scenes: {} };
  /** why the committed pointer could not be read: updates are refused until it is repaired */
  private pointerProblem: string | undefined;
  private readonly ring: TimedSample[] = [];
  private sampler: NodeJS.Timeout | undefined;
  private host: () => unknown = () => undefined;
  private history: HistoryRecord = { v: 1, done: [] };
  private factoryModel: { name: string; version: number } | undefined;

  /** the config's model and cameras changed (a reload): what the box falls back to without a commit */
  setFactory(factory: FactoryDefault): void {
    this.o.factory = factory;
  }

  private constructor(private readonly o: UpdaterOptions) {
    this.slots = new Slots(o.otaDir);
    this.trusted = new TrustedVersions(o.otaDir);
    this.bucket = new TokenBucket(o.settings.maxBytesPerS);
  }

  private get log(): Logger {
    return this.o.log;
  }

  /**
   * Reads the updater's state: the committed pointer (a committed slot that no longer matches its
   * manifest is not run: the factory default takes its place, with an error in the log), the
   * assignments in progress and the recent history. Call `start` once the host runs.
   */
  static async open(o: UpdaterOptions): Promise<Updater> {
    const u = new Updater(o);
    await mkdir(join(o.otaDir, 'active'), { recursive: true });
    await u.slots.sweep();
    try {
      u.committedPointer = await u.slots.committed();
    } catch (err) {
      u.pointerProblem = errorMessage(err);
      o.log.error(
        { file: u.slots.pointerFile, err: u.pointerProblem },
        'the committed pointer cannot be read: running the config model and scenes, refusing updates until it is repaired',
      );
    }
    await u.checkCommittedSlots();
    try {
      const h = (await readJsonFile(join(o.otaDir, 'history.json'))) as HistoryRecord | undefined;
      if (h && Array.isArray(h.done))
        u.history = { v: 1, done: h.done.filter((s) => otaValidators.update.check(s)) };
    } catch (err) {
      o.log.warn({ err: errorMessage(err) }, 'update history unreadable; starting a new one');
    }
    try {
      const d = await readDescriptor(join(o.factory.modelDir, DESCRIPTOR_FILE));
      u.factoryModel = { name: d.name, version: d.version };
    } catch {
      u.factoryModel = undefined;
    }
    return u;
  }

  /** drops committed entries whose slot is damaged (the box then runs the config's version there) */
  private async checkCommittedSlots(): Promise<void> {
    const c = this.committedPointer;
    if (c.model) {
      const problem = await this.slots.check(this.slots.modelSlotDir(c.model.slot));
      if (problem) {
        this.log.error(
          { slot: c.model.slot, problem },
          'the committed model slot is damaged; running the config model instead',
        );
        delete c.model;
      }
    }
    for (const [camera, s] of Object.entries(c.scenes)) {
      const problem = await this.slots.check(this.slots.sceneSlotDir(camera, s.slot));
      if (problem) {
        this.log.error(
          { camera, slot: s.slot, problem },
          'a committed scene slot is damaged; running the config scene',
        );
        delete c.scenes[camera];
      }
    }
  }

  /** what the box runs: the committed slots, else the config (factory default) */
  running(): Running {
    const c = this.committedPointer;
    const model: RunningModel = c.model
      ? {
          dir: this.slots.modelSlotDir(c.model.slot),
          name: c.model.name,
          version: c.model.version,
          slot: c.model.slot,
        }
      : {
          dir: this.o.factory.modelDir,
          name: this.factoryModel?.name,
          version: this.factoryModel?.version,
          slot: undefined,
        };
    const scenes = new Map<string, RunningScene>();
    for (const cam of this.o.factory.cameras) {
      const s = c.scenes[cam.id];
      scenes.set(
        cam.id,
        s
          ? {
              file: join(this.slots.sceneSlotDir(cam.id, s.slot), s.file),
              name: s.name,
              version: s.version,
              slot: s.slot,
            }
          : { file: cam.sceneFile, name: undefined, version: 0, slot: undefined },
      );
    }
    return { model, scenes };
  }

  /** assignments in progress, by kind (for health and tests) */
  active(): { kind: ArtifactKind; assignment: string; state: UpdateState }[] {
    return [...this.jobs.entries()].map(([kind, j]) => ({
      kind,
      assignment: j.rec.assignment.assignment,
      state: j.rec.state,
    }));
  }

  /**
   * Starts sampling the host's health figures and resumes what a previous run left in progress.
   * `host` returns the current camera host (the agent replaces it on a config reload).
   */
  async start(host: () => unknown): Promise<void> {
    this.host = host;
    this.sampler = setInterval(() => this.sample(), this.o.settings.sampleS * 1000);
    this.sample();
    for (const kind of ['model', 'scene'] as const) {
      const file = this.activeFile(kind);
      let rec: ActiveRecord | undefined;
      try {
        rec = (await readJsonFile(file)) as ActiveRecord | undefined;
        if (rec && (!otaValidators.assignment.check(rec.assignment) || !otaValidators.update.check(rec.last)))
          throw new Error('it is not an update record');
      } catch (err) {
        this.log.error(
          { file, err: errorMessage(err) },
          'update record unreadable: set aside, nothing of it is run',
        );
        await rename(file, `${file}.unreadable`).catch(() => undefined);
        rec = undefined;
      }
      if (!rec) continue;
      // the status recorded with the state may not have reached the spool before the process ended
      this.o.report(rec.last);
      if (FINAL_UPDATE_STATES.includes(rec.state)) {
        await this.archive(rec);
        continue;
      }
      this.log.info(
        { assignment: rec.assignment.assignment, state: rec.state },
        'resuming an update the previous run left in progress',
      );
      this.launch(rec, true);
    }
  }

  /** aborts the steps in progress (their records stay: the next start resumes them) and stops sampling */
  async stop(): Promise<void> {
    clearInterval(this.sampler);
    const jobs = [...this.jobs.values()];
    for (const j of jobs) j.abort.abort(new Stop('shutdown', 'the agent is stopping'));
    await Promise.all(jobs.map((j) => j.done));
  }

  private sample(): void {
    const host = this.host();
    if (!isUpdateHost(host)) return;
    let s: TimedSample;
    try {
      s = { ...host.healthSample(), t: performance.now() };
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'health sample failed');
      return;
    }
    const prev = this.ring[this.ring.length - 1];
    // a new host (config reload) counts from 0 again: the stretch before it does not compare
    if (prev && (s.events < prev.events || s.detectorRestarts < prev.detectorRestarts)) this.ring.length = 0;
    this.ring.push(s);
    if (this.ring.length > RING_MAX) this.ring.splice(0, this.ring.length - RING_MAX);
  }

  private activeFile(kind: ArtifactKind): string {
    return join(this.o.otaDir, 'active', `${kind}.json`);
  }

  private downloadFile(artifactId: string): string {
    return join(this.o.otaDir, 'download', `${artifactId}.bundle`);
  }

  // ---- commands ------------------------------------------------------------------------------

  /** the `update` command: takes the assignment (its steps run in the background) */
  async assign(args: unknown): Promise<{ ok: boolean; message: string; data?: Record<string, unknown> }> {
    const a = otaValidators.assignment.parse(args, 'the update assignment');
    const kind = a.artifact.kind;
    const finished = this.history.done.find((s) => s.assignment === a.assignment);
    if (finished) {
      this.o.report(finished);
      return {
        ok: true,
        message: `assignment ${a.assignment} already ended ${finished.state}`,
        data: { state: finished.state },
      };
    }
    const current = this.jobs.get(kind);
    if (current?.rec.assignment.assignment === a.assignment)
      return {
        ok: true,
        message: `assignment ${a.assignment} is in progress (${current.rec.state})`,
        data: { state: current.rec.state },
      };
    let cameras: string[] = [];
    let refusal: string | undefined;
    if (kind === 'scene') {
      const known = new Set(this.o.factory.cameras.map((c) => c.id));
      cameras = a.cameras ?? [...known];
      const unknown = cameras.filter((c) => !known.has(c));
      if (unknown.length > 0)
        refusal = `camera(s) ${unknown.join(', ')} are not enabled on this box (it has ${[...known].join(', ') || 'none'})`;
      else if (cameras.length === 0) refusal = 'this box has no enabled camera to take the scene';
    }
    if (this.pointerProblem)
      refusal = `this box cannot read its committed pointer (${this.pointerProblem}); repair ${this.slots.pointerFile}`;
    if (Date.parse(a.deadline) <= Date.now()) refusal = `the assignment's deadline ${a.deadline} has passed`;
    if (!refusal && current) {
      if (current.rec.state === 'installing' || current.rec.state === 'health') {
        refusal = `assignment ${current.rec.assignment.assignment} of this kind is being installed (${current.rec.state}); send this one after it ended`;
      } else {
        current.abort.abort(new Stop('replaced', `replaced by assignment ${a.assignment}`));
        await current.done;
      }
    }
    const rec: ActiveRecord = {
      v: 1,
      assignment: a,
      cameras,
      state: 'queued',
      last: this.status(a, 0, 'queued'),
    };
    if (refusal) {
      // nothing of it ran: the answer is its final status (the record of another job stays untouched)
      const failed = this.status(a, 0, 'failed', { reason: text(refusal) });
      await this.remember(failed);
      this.o.report(failed);
      return { ok: false, message: refusal };
    }
    await writeJsonDurable(this.activeFile(kind), rec);
    this.o.report(rec.last);
    this.launch(rec, false);
    return {
      ok: true,
      message: `assignment ${a.assignment} queued: ${kind} ${a.artifact.name} v${a.artifact.version}`,
    };
  }

  /** the `update-cancel` command: cancels an assignment that is not being installed yet */
  async cancel(args: unknown): Promise<{ ok: boolean; message: string }> {
    const { assignment } = otaValidators.cancel.parse(args, 'the update cancel');
    const job = [...this.jobs.values()].find((j) => j.rec.assignment.assignment === assignment);
    if (!job) {
      const finished = this.history.done.find((s) => s.assignment === assignment);
      return finished
        ? { ok: false, message: `assignment ${assignment} already ended ${finished.state}` }
        : { ok: false, message: `this box has no assignment ${assignment}` };
    }
    if (job.rec.state === 'installing' || job.rec.state === 'health')
      return {
        ok: false,
        message: `assignment ${assignment} is ${job.rec.state === 'health' ? 'installed and in its health window' : 'being installed'}; it commits or rolls back on its own`,
      };
    job.abort.abort(new Stop('cancel', 'canceled by the control plane'));
    await job.done;
    return { ok: true, message: `assignment ${assignment} canceled` };
  }

  // ---- the state machine -----------------------------------------------------------------------

  private status(
    a: UpdateAssignment,
    seq: number,
    state: UpdateState,
    extra: Partial<Pick<UpdateStatus, 'reason' | 'progress' | 'shadow' | 'health'>> = {},
  ): UpdateStatus {
    return {
      v: CONTRACT_VERSION,
      id: timeOrderedId(),
      device: this.o.device,
      assignment: a.assignment,
      rollout: a.rollout,
      artifact: a.artifact,
      seq,
      state,
      at: new Date().toISOString(),
      ...extra,
    };
  }

  /** records `state` (with its status) durably, then spools the status */
  private async enter(
    job: Job,
    state: UpdateState,
    extra: Partial<Pick<UpdateStatus, 'reason' | 'progress' | 'shadow' | 'health'>> = {},
  ): Promise<void> {
    const rec = job.rec;
    rec.state = state;
    rec.last = this.status(rec.assignment, rec.last.seq + 1, state, extra);
    await writeJsonDurable(this.activeFile(rec.assignment.artifact.kind), rec);
    this.o.report(rec.last);
  }

  private launch(rec: ActiveRecord, resumed: boolean): void {
    const abort = new AbortController();
    const job: Job = {
      rec,
      abort,
      done: Promise.resolve(),
      deadlineTimer: undefined,
      lastProgress: 0,
      unpacked: false,
      staged: undefined,
    };
    const armDeadline = () => {
      const left = Date.parse(rec.assignment.deadline) - Date.now();
      job.deadlineTimer = setTimeout(
        () => {
          if (Date.parse(rec.assignment.deadline) > Date.now()) armDeadline();
          else
            abort.abort(new Stop('deadline', `the assignment's deadline ${rec.assignment.deadline} passed`));
        },
        Math.max(0, Math.min(left, MAX_TIMER_MS)),
      );
    };
    armDeadline();
    this.jobs.set(rec.assignment.artifact.kind, job);
    job.done = this.run(job, resumed)
      .catch((err) =>
        this.log.error(
          { assignment: rec.assignment.assignment, err: errorMessage(err) },
          'update step failed',
        ),
      )
      .finally(() => {
        clearTimeout(job.deadlineTimer);
        if (this.jobs.get(rec.assignment.artifact.kind) === job)
          this.jobs.delete(rec.assignment.artifact.kind);
      });
  }

  private async run(job: Job, resumed: boolean): Promise<void> {
    const rec = job.rec;
    const signal = job.abort.signal;
    try {
      if (resumed && rec.state === 'health') {
        await this.resumeHealth(job);
        return;
      }
      for (;;) {
        signal.throwIfAborted();
        switch (rec.state) {
          case 'queued':
            await this.enter(job, 'downloading', {
              progress: { bytes: 0, total: rec.assignment.artifact.bytes },
            });
            break;
          case 'downloading':
            job.staged = await this.download(job, true);
            await this.enter(job, 'verifying');
            break;
          case 'verifying': {
            await this.verifyAndUnpack(job);
            await this.waitInstallAt(job);
            const shadow = rec.assignment.artifact.kind === 'model' && rec.assignment.shadow;
            await this.enter(job, shadow ? 'shadow' : 'installing');
            break;
          }
          case 'shadow': {
            await this.shadow(job);
            await this.enter(job, 'installing');
            break;
          }
          case 'installing':
            await this.install(job);
            await this.enter(job, 'health');
            break;
          case 'health':
            await this.healthWindow(job);
            return;
          default:
            return;
        }
      }
    } catch (err) {
      await this.settle(job, err);
    } finally {
      await this.dropStaged(job);
    }
  }

  /** ends a job that a step stopped or refused, in the state that tells the truth */
  private async settle(job: Job, err: unknown): Promise<void> {
    const rec = job.rec;
    const installed = rec.state === 'installing' || rec.state === 'health';
    if (err instanceof Stop && err.kind === 'shutdown') return;
    if (err instanceof Refusal) {
      await this.finish(job, err.state, err.message, err.figures);
      return;
    }
    const reason = err instanceof Stop ? err.message : reasonOf(err);
    if (rec.state === 'health') {
      await this.rollBack(job);
      await this.finish(job, 'rolled-back', `${reason}; the box runs ${this.describeRunning(rec)} again`);
      return;
    }
    if (installed) {
      await this.rollBack(job);
      await this.finish(
        job,
        'failed',
        `installing: ${reason}; the box runs ${this.describeRunning(rec)} again`,
      );
      return;
    }
    await this.finish(job, err instanceof Stop && err.kind !== 'deadline' ? 'canceled' : 'failed', reason);
  }

  private describeRunning(rec: ActiveRecord): string {
    const r = this.running();
    if (rec.assignment.artifact.kind === 'model')
      return `model ${r.model.name ?? r.model.dir}${r.model.version ? ` v${r.model.version}` : ''}`;
    const versions = rec.cameras.map((c) => {
      const s = r.scenes.get(c);
      return `${c}: ${s?.version ? `${s.name ?? 'scene'} v${s.version}` : 'the config scene'}`;
    });
    return versions.join(', ');
  }

  private async finish(
    job: Job,
    state: 'committed' | 'failed' | 'rolled-back' | 'canceled',
    reason?: string,
    figures: { shadow?: ShadowFigures; health?: HealthFigures } = {},
  ): Promise<void> {
    await this.enter(job, state, { ...(reason ? { reason: text(reason) } : {}), ...figures });
    this.log[state === 'committed' ? 'info' : 'warn'](
      {
        assignment: job.rec.assignment.assignment,
        artifact: job.rec.assignment.artifact.name,
        state,
        reason,
      },
      `update ${state}`,
    );
    await this.archive(job.rec);
  }

  /** moves a final record into the history and removes what the download left */
  private async remember(final: UpdateStatus): Promise<void> {
    if (this.history.done.some((s) => s.id === final.id)) return;
    this.history.done.push(final);
    if (this.history.done.length > HISTORY) this.history.done.splice(0, this.history.done.length - HISTORY);
    await writeJsonDurable(join(this.o.otaDir, 'history.json'), this.history);
  }

  private async archive(rec: ActiveRecord): Promise<void> {
    await this.remember(rec.last);
    const kind = rec.assignment.artifact.kind;
    const current = this.jobs.get(kind);
    if (!current || current.rec === rec) await rm(this.activeFile(kind), { force: true });
    const other = this.jobs.get(kind === 'model' ? 'scene' : 'model');
    const keep = other?.rec.assignment.artifact.id;
    const dir = join(this.o.otaDir, 'download');
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      if (keep && f.startsWith(keep)) continue;
      await rm(join(dir, f), { force: true });
    }
  }

  // ---- steps -----------------------------------------------------------------------------------

  /**
   * Downloads the artifact and unpacks it in the same pass into a new staging directory beside the
   * (first) slot it goes to: every file written once, hashed as it passes, within the bundle
   * limits; only the manifest, signature and descriptor are held in memory. The download's partial
   * file keeps the archive's bytes for a resume: after a restart they are read back through the
   * same pass (the staging directory of the killed process was swept) and the rest comes with
   * `Range`. `progress`: report `downloading` progress (not when a later state reads the partial
   * file again).
   */
  private async download(job: Job, progress: boolean): Promise<Staged> {
    const rec = job.rec;
    const a = rec.assignment.artifact;
    const limits = this.o.settings.limits;
    if (a.bytes > limits.maxBundleBytes)
      throw new BundleRejected(
        'too-large',
        `the artifact is ${a.bytes} bytes, more than this box's limit of ${limits.maxBundleBytes} (ota.limits.maxBundleBytes)`,
        'a bundle this large is refused before it is downloaded; if it is genuine, raise the limit',
      );
    const what = `bundle ${this.describe(rec)}`;
    const [target] = this.targets(rec);
    const progressMs = this.o.settings.progressS * 1000;
    let reporting = Promise.resolve();
    const request = {
      url: this.o.artifactUrl(a.id),
      credential: this.o.credential,
      tls: this.o.tls,
      localAddress: this.o.localAddress,
      file: this.downloadFile(a.id),
      bytes: a.bytes,
      sha256: a.id,
      bucket: this.bucket,
      signal: job.abort.signal,
      etag: rec.etag,
      saveEtag: async (etag: string | undefined) => {
        rec.etag = etag;
        await writeJsonDurable(this.activeFile(a.kind), rec);
      },
      onProgress: (bytes: number) => {
        const now = performance.now();
        if (!progress || now - job.lastProgress < progressMs || bytes >= a.bytes) return;
        job.lastProgress = now;
        reporting = reporting.then(() =>
          this.enter(job, 'downloading', { progress: { bytes, total: a.bytes } }).catch((err) =>
            this.log.warn({ err: errorMessage(err) }, 'progress not recorded'),
          ),
        );
      },
      retryMaxMs: this.o.settings.retryMaxS * 1000,
      onRetry: (problem: string, waitMs: number) =>
        this.log.warn(
          { assignment: rec.assignment.assignment, problem, waitMs },
          'download interrupted; resuming',
        ),
    };
    try {
      return await downloadArtifact(request, async (bytes) => {
        const dir = await this.slots.staging(target!.dir);
        try {
          return {
            dir,
            digests: await digestStream(bytes, what, limits, { keep: readByVerification, writeTo: dir }),
          };
        } catch (err) {
          await rm(dir, { recursive: true, force: true });
          throw err;
        }
      });
    } catch (err) {
      // bytes that are not the artifact are the truer reason: the rest is downloaded to tell
      if (err instanceof BundleRejected) await downloadArtifact(request);
      throw err;
    } finally {
      await reporting;
    }
  }

  private describe(rec: ActiveRecord): string {
    const a = rec.assignment.artifact;
    return `${a.kind} ${a.name} v${a.version} (artifact ${a.id.slice(0, 12)}…)`;
  }

  private async dropStaged(job: Job): Promise<void> {
    const staged = job.staged;
    job.staged = undefined;
    if (staged) await rm(staged.dir, { recursive: true, force: true });
  }

  /**
   * The version the bundle must exceed: the trusted store's, and what the box runs of that name.
   * One exception, a rollback: the very bundle (same sha256) this box committed just before the
   * one it now runs of that name may come back although it is older — its bytes were verified and
   * trusted here once, and only that one step back is open, never an older bundle nor one the box
   * never ran. The trusted version does not go down: after a rollback the box takes only a version
   * above the one it rolled back from.
   */
  private async lastTrusted(
    kind: ArtifactKind,
    name: string,
    artifactId: string,
  ): Promise<number | undefined> {
    if (this.previousCommit(kind, name)?.id === artifactId) return undefined;
    const versions = [await this.trusted.get(kind, name)];
    const r = this.running();
    if (kind === 'model' && r.model.name === name) versions.push(r.model.version);
    if (kind === 'scene') for (const s of r.scenes.values()) if (s.name === name) versions.push(s.version);
    const known = versions.filter((v): v is number => v !== undefined);
    return known.length > 0 ? Math.max(...known) : undefined;
  }

  /** the artifact committed before the latest commit of that kind and name, when that was a step forward */
  private previousCommit(kind: ArtifactKind, name: string): ArtifactRef | undefined {
    const commits = this.history.done.filter(
      (s) => s.state === 'committed' && s.artifact.kind === kind && s.artifact.name === name,
    );
    const [previous, latest] = commits.slice(-2);
    // only a step back: after a rollback the one rolled back from is not "previous"
    return previous && latest && previous.artifact.version < latest.artifact.version
      ? previous.artifact
      : undefined;
  }

  private async verify(rec: ActiveRecord, digests: Map<string, EntryDigest>): Promise<VerifiedDigests> {
    const a = rec.assignment.artifact;
    const verified = await verifyBundleDigests(this.describe(rec), digests, {
      ...(this.o.settings.keyring ? { keyring: this.o.settings.keyring } : {}),
      limits: this.o.settings.limits,
      trustedVersion: (m) => this.lastTrusted(m.kind, m.name, a.id),
    });
    for (const k of verified.unreadableKeys)
      this.log.warn(
        { file: k.file, problem: k.problem },
        'an unreadable key file of the keyring was skipped',
      );
    const m = verified.manifest;
    if (m.kind !== a.kind || m.name !== a.name || m.version !== a.version)
      throw new Refusal(
        'failed',
        `mismatch: the bundle holds ${m.kind} ${m.name} v${m.version}, the assignment names ${a.kind} ${a.name} v${a.version}`,
      );
    // a target of class `any` fits every box: the registry's fallback variant (models/bundle/manifest.ts)
    const fits = (c: string) => c === this.o.hardwareClass || c === ANY_HARDWARE_CLASS;
    if (m.kind === 'model' && !m.targets.some((t) => fits(t.hardwareClass)))
      throw new Refusal(
        'failed',
        `wrong-hardware: the bundle is built for ${m.targets.map((t) => t.hardwareClass).join(', ')}; this box is ${this.o.hardwareClass}`,
      );
    return verified;
  }

  /** the slot (or per camera, the slots) the candidate goes into: never a committed one */
  private targets(rec: ActiveRecord): { camera: string | undefined; dir: string }[] {
    const c = this.committedPointer;
    if (rec.assignment.artifact.kind === 'model')
      return [{ camera: undefined, dir: this.slots.modelSlotDir(otherSlot(c.model?.slot)) }];
    return rec.cameras.map((camera) => ({
      camera,
      dir: this.slots.sceneSlotDir(camera, otherSlot(c.scenes[camera]?.slot)),
    }));
  }

  /**
   * Verifies the bundle this process unpacked while downloading (or, for a job resumed after a
   * restart, unpacks it again from the partial file, which is whole by now) and moves it into the
   * candidate's slot(s): the staging directory becomes the first slot, the other cameras of a scene
   * get a copy. Nothing unverified is ever in a slot.
   */
  private async verifyAndUnpack(job: Job): Promise<void> {
    job.staged ??= await this.download(job, false);
    const verified = await this.verify(job.rec, job.staged.digests);
    job.abort.signal.throwIfAborted();
    job.unpacked = false;
    const names = [...verified.manifest.files.map((f) => f.path), MANIFEST_FILE, SIGNATURE_FILE];
    const [first, ...others] = this.targets(job.rec);
    await this.slots.install(job.staged.dir, first!.dir);
    job.staged = undefined;
    for (const t of others) await this.slots.copy(first!.dir, names, t.dir);
    job.unpacked = true;
  }

  private async waitInstallAt(job: Job): Promise<void> {
    const at = job.rec.assignment.installAt;
    if (!at) return;
    for (let left = Date.parse(at) - Date.now(); left > 0; left = Date.parse(at) - Date.now())
      await sleep(Math.min(left, MAX_TIMER_MS), job.abort.signal);
  }

  private updateHost(): UpdateHost {
    const host = this.host();
    if (!isUpdateHost(host))
      throw new ArgusError("this box's camera host cannot take updates (no swap support)");
    return host;
  }

  private async shadow(job: Job): Promise<ShadowFigures> {
    const t = job.rec.assignment.shadow!;
    const [target] = this.targets(job.rec);
    await this.ensureUnpacked(job);
    const timeout = AbortSignal.timeout(t.timeoutS * 1000);
    const signal = AbortSignal.any([job.abort.signal, timeout]);
    let figures: ShadowFigures;
    try {
      figures = await boundedBy(this.updateHost().shadowModel(target!.dir, t, signal), signal);
    } catch (err) {
      if (job.abort.signal.aborted) throw job.abort.signal.reason;
      if (timeout.aborted)
        throw new Refusal(
          'failed',
          `shadow: the frames were not gathered and run within the rollout's ${t.timeoutS} s`,
        );
      throw new Refusal('failed', `shadow: ${errorMessage(err)}`);
    }
    const refusal = judgeShadow(figures, t);
    if (refusal) throw new Refusal('failed', `shadow: ${refusal}`, { shadow: figures });
    await this.enter(job, 'shadow', { shadow: figures });
    return figures;
  }

  /**
   * the candidate's slot(s) as verified: as this process wrote them from the verified bundle, or
   * (a job resumed after a restart) checked against their manifest and written again if not intact
   */
  private async ensureUnpacked(job: Job): Promise<void> {
    if (job.unpacked) return;
    for (const t of this.targets(job.rec)) {
      if ((await this.slots.check(t.dir)) !== undefined) {
        await this.verifyAndUnpack(job);
        return;
      }
    }
  }

  /** the figures before the swap: the health window's length of samples, or at least BEFORE_MIN_S of it */
  private async before(job: Job): Promise<Stretch> {
    const windowS = job.rec.assignment.health.windowS;
    const needS = Math.min(windowS, BEFORE_MIN_S);
    const sampleMs = this.o.settings.sampleS * 1000;
    for (;;) {
      const now = performance.now();
      const oldest = this.ring[0];
      if (oldest && now - oldest.t >= needS * 1000)
        return summarise(this.ring.filter((s) => s.t >= now - windowS * 1000 - sampleMs));
      await sleep(sampleMs, job.abort.signal);
    }
  }

  private async install(job: Job): Promise<void> {
    const rec = job.rec;
    const host = this.updateHost();
    await this.ensureUnpacked(job);
    rec.before = await this.before(job);
    rec.healthStartedAt = Date.now();
    await writeJsonDurable(this.activeFile(rec.assignment.artifact.kind), rec);
    const targets = this.targets(rec);
    try {
      if (rec.assignment.artifact.kind === 'model') {
        await host.swapModel(targets[0]!.dir);
      } else {
        const file = await this.sceneFileOf(targets[0]!.dir);
        for (const t of targets)
          await host.applyScene([t.camera!], join(t.dir, file), rec.assignment.artifact.version);
      }
    } finally {
      // also after a failed swap: a scene may have gone to some of the cameras
      await this.changed();
    }
    rec.healthStartedAt = Date.now();
  }

  private async sceneFileOf(dir: string): Promise<string> {
    const m = parseManifest(await readFile(join(dir, MANIFEST_FILE)), join(dir, MANIFEST_FILE));
    if (m.kind !== 'scene') throw new ArgusError(`${dir} holds a ${m.kind}, not a scene`);
    return m.scene.file;
  }

  /** puts back what the committed pointer names (the previous version) */
  private async rollBack(job: Job): Promise<void> {
    const rec = job.rec;
    const host = this.host();
    if (!isUpdateHost(host)) return;
    const r = this.running();
    try {
      if (rec.assignment.artifact.kind === 'model') {
        await host.swapModel(r.model.dir);
      } else {
        for (const camera of rec.cameras) {
          const s = r.scenes.get(camera);
          if (s) await host.applyScene([camera], s.file, s.version);
        }
      }
    } catch (err) {
      this.log.error(
        { assignment: rec.assignment.assignment, err: errorMessage(err) },
        'switching back to the committed version failed; it runs again at the next start',
      );
    }
    await this.changed();
  }

  private async changed(): Promise<void> {
    try {
      await this.o.changed?.();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'the change of version was not told');
    }
  }

  private async healthWindow(job: Job): Promise<void> {
    const rec = job.rec;
    const h = rec.assignment.health;
    const before = rec.before!;
    const startedMono = performance.now() - (Date.now() - (rec.healthStartedAt ?? Date.now()));
    const samples: TimedSample[] = [];
    const figures = () => healthFigures(before, summarise(samples), (performance.now() - startedMono) / 1000);
    try {
      for (;;) {
        await sleep(this.o.settings.sampleS * 1000, job.abort.signal);
        const host = this.updateHost();
        samples.push({ ...host.healthSample(), t: performance.now() });
        const f = figures();
        if (f.detectorRestarts > h.maxDetectorRestarts) {
          await this.rollBack(job);
          throw new Refusal(
            'rolled-back',
            `${judgeHealth(f, h)}; the box runs ${this.describeRunning(rec)} again`,
            { health: f },
          );
        }
        if (f.elapsedS >= h.windowS) break;
      }
    } catch (err) {
      if (err instanceof Refusal) throw err;
      if (err instanceof Stop && err.kind === 'shutdown') throw err;
      await this.rollBack(job);
      throw new Refusal(
        'rolled-back',
        `${err instanceof Stop ? err.message : errorMessage(err)} inside the health window; the box runs ${this.describeRunning(rec)} again`,
        { health: figures() },
      );
    }
    const f = figures();
    const refusal = judgeHealth(f, h);
    if (refusal) {
      await this.rollBack(job);
      throw new Refusal(
        'rolled-back',
        `health: ${refusal}; the box runs ${this.describeRunning(rec)} again`,
        { health: f },
      );
    }
    await this.commit(job);
    await this.changed();
    await this.finish(job, 'committed', undefined, { health: f });
  }

  /** the committed pointer names the new slot(s), then the version is trusted */
  private async commit(job: Job): Promise<void> {
    const rec = job.rec;
    const a = rec.assignment;
    const next: Committed = structuredClone(this.committedPointer);
    if (a.artifact.kind === 'model') {
      next.model = {
        slot: otherSlot(this.committedPointer.model?.slot),
        name: a.artifact.name,
        version: a.artifact.version,
        assignment: a.assignment,
      };
    } else {
      for (const t of this.targets(rec)) {
        next.scenes[t.camera!] = {
          slot: otherSlot(this.committedPointer.scenes[t.camera!]?.slot),
          name: a.artifact.name,
          version: a.artifact.version,
          file: await this.sceneFileOf(t.dir),
          assignment: a.assignment,
        };
      }
    }
    await this.slots.commit(next);
    this.committedPointer = next;
    await this.trusted.trust(a.artifact.kind, a.artifact.name, a.artifact.version);
  }

  /**
   * The agent restarted inside the health window: the host was started on the committed slots. If
   * the pointer already names this assignment the commit was done and only its status is missing;
   * otherwise the box runs the previous version and the update is rolled back.
   */
  private async resumeHealth(job: Job): Promise<void> {
    const rec = job.rec;
    const a = rec.assignment;
    const c = this.committedPointer;
    const done =
      a.artifact.kind === 'model'
        ? c.model?.assignment === a.assignment
        : rec.cameras.every((camera) => c.scenes[camera]?.assignment === a.assignment);
    if (done) {
      await this.trusted.trust(a.artifact.kind, a.artifact.name, a.artifact.version);
      await this.finish(job, 'committed');
      return;
    }
    await this.finish(
      job,
      'rolled-back',
      `the agent restarted inside the health window; the box runs ${this.describeRunning(rec)} again`,
    );
  }
}
