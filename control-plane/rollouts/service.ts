import { timeOrderedId } from '../../common/ids.ts';
import type { ArtifactRef, Identity, Telemetry } from '../../contract/index.ts';
import type { DeviceHealth } from '../device-health.ts';
import { Refused } from '../refused.ts';
import type { DeviceRecord, Repository } from '../storage/repository.ts';
import {
  type AssignmentRow,
  type AssignmentState,
  FAILED_STATES,
  type HistoryRow,
  type RolloutRow,
  type RolloutState,
  RolloutStore,
  type WaveRow,
} from '../storage/rollouts.ts';
import { type ArtifactVariants, type DeviceTraits, expiredReason } from './engine.ts';
import {
  MAX_ROLLOUT_DEVICES,
  planWaves,
  type RolloutRequest,
  rolloutRequest,
  TIME_ZONE_LABEL,
  validTimeZone,
} from './spec.ts';

/** a request the rollouts refuse, with the HTTP status that says why */
export class RolloutRefused extends Refused {
  override readonly name = 'RolloutRefused';
}

export interface WaveView extends WaveRow {
  /** install assignments per state */
  counts: Partial<Record<AssignmentState, number>>;
}

/** per version of the rollout's artifact: the target devices running it and their mean figures */
export interface VersionKpi {
  version: number;
  devices: number;
  cameras: number;
  meanDetectFps: number;
  meanDetectLatencyMs: number;
}

export interface RolloutDetail {
  rollout: RolloutRow;
  waves: WaveView[];
  /** rollback assignments (after an abort) per state */
  rollbacks: Partial<Record<AssignmentState, number>>;
  /** devices that failed, rolled back or timed out, with the reason */
  failures: AssignmentRow[];
  versions: VersionKpi[];
  history: HistoryRow[];
}

const FAILURES_SHOWN = 200;
const HISTORY_SHOWN = 100;
const IDS_PER_QUERY = 500;

const short = (list: readonly string[]) =>
  list.length > 10 ? `${list.slice(0, 10).join(', ')} and ${list.length - 10} more` : list.join(', ');

const traitsOf = (d: DeviceRecord): DeviceTraits | undefined =>
  d.identity
    ? { hardwareClass: d.identity.hardwareClass, executionProviders: d.identity.executionProviders }
    : undefined;

/**
 * The operators' side of rollouts (the API's and the CLI's): create one (its devices chosen,
 * each with its variant, planned into waves, refused when a device is in another active rollout
 * of the same artifact kind), pause, resume, cancel, and what a rollout looks like now. Every
 * change is a guarded write, so requests on several replicas and the engine never undo each
 * other; the engine (on the lease holder) acts on what they wrote.
 */
export class Rollouts {
  readonly store: RolloutStore;
  /**
   * called after a request created, resumed or ended a rollout, and by ingest when a device's update
   * ended: the engine acts on it soon (server.ts sets it to poke the engine's leased job)
   */
  onChanged: () => void = () => {};

  constructor(
    private readonly repo: Repository,
    private readonly variants: () => ArtifactVariants | undefined,
    private readonly health: DeviceHealth,
    private readonly clock: () => number = Date.now,
  ) {
    this.store = new RolloutStore(repo.sql);
  }

  /** the traits (from the identity) of each of the devices that sent one */
  async traits(devices: readonly string[]): Promise<Map<string, DeviceTraits>> {
    const out = new Map<string, DeviceTraits>();
    for (const d of await this.devices(devices)) {
      const t = traitsOf(d);
      if (t) out.set(d.id, t);
    }
    return out;
  }

  /** the devices, of those given, that are online and not degraded */
  async healthy(devices: readonly string[]): Promise<Set<string>> {
    const records = await this.devices(devices);
    const assessed = await this.health.assess(records);
    return new Set(records.filter((_, i) => assessed[i]!.health.status === 'ok').map((d) => d.id));
  }

  private async devices(ids: readonly string[]): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = [];
    for (const id of ids) {
      const d = await this.repo.getDevice(id);
      if (d) out.push(d);
    }
    return out;
  }

  async create(input: unknown, actor: string): Promise<RolloutRow> {
    const request = rolloutRequest.parse(rolloutRequest.withDefaults(input), 'the rollout');
    const registry = this.variants();
    if (!registry)
      throw new RolloutRefused(
        'the artifact registry is not available on this control plane',
        503,
        'publish artifacts first (argus artifacts publish)',
      );
    const { artifact, target } = request;
    if (!target.devices && !target.labels && !target.hardwareClass)
      throw new RolloutRefused('give a target: device ids, labels or a hardware class', 400);
    if (request.shadow && artifact.kind !== 'model')
      throw new RolloutRefused('shadow thresholds are for model artifacts only', 400);
    if (request.cameras && artifact.kind !== 'scene')
      throw new RolloutRefused('cameras are for scene artifacts only', 400);
    if (request.error.share === undefined && request.error.count === undefined)
      throw new RolloutRefused('give the error condition a share or a count of devices', 400);
    const devices = await this.targetDevices(request);
    if (devices.length === 0)
      throw new RolloutRefused(
        'no device matches the target',
        400,
        'GET /api/v1/devices lists the devices and their labels',
      );
    const missing = devices.filter((d) => !d.identity).map((d) => d.id);
    if (missing.length > 0)
      throw new RolloutRefused(
        `devices ${short(missing)} sent no identity yet: their hardware class, and so their variant, is unknown`,
        400,
        'start them once, or leave them out of the target',
      );
    const variants = new Map<string, ArtifactRef>();
    const unresolved = new Map<string, string[]>();
    for (const d of devices) {
      const t = traitsOf(d)!;
      const key = `${t.hardwareClass}|${t.executionProviders.join(',')}`;
      if (!variants.has(key)) {
        const v = await registry.variantFor(artifact.kind, artifact.name, artifact.version, t);
        if (v) variants.set(key, v);
      }
      if (!variants.has(key))
        unresolved.set(t.hardwareClass, [...(unresolved.get(t.hardwareClass) ?? []), d.id]);
    }
    if (unresolved.size > 0)
      throw new RolloutRefused(
        `the registry has no variant of ${artifact.kind} ${artifact.name} version ${artifact.version} for ${[
          ...unresolved,
        ]
          .map(([hw, ids]) => `hardware class ${hw} (devices ${short(ids)})`)
          .join('; ')}`,
        400,
        'publish a variant for that hardware class, or leave those devices out of the target',
      );
    const now = this.clock();
    for (const v of variants.values()) {
      const expiresAt = await registry.expiresAt(v.id);
      if (expiresAt !== undefined && expiresAt <= now)
        throw new RolloutRefused(
          `cannot roll out an expired artifact: ${expiredReason(v, expiresAt).slice('expired: '.length)}`,
          400,
          'build and sign a new bundle with a higher version (`argus models build … --version N --key NAME`), publish it (`argus artifacts publish`) and roll that out',
        );
    }
    const ids = devices.map((d) => d.id);
    await this.refuseConflicts(ids, artifact.kind);
    const id = timeOrderedId(now);
    const sizes = planWaves(ids.length, request.waves);
    const rollout: RolloutRow = {
      id,
      name: request.name,
      artifact,
      state: 'running',
      reason: null,
      spec: request,
      currentWave: 0,
      createdBy: actor,
      createdAt: now,
      updatedAt: now,
    };
    const waves: WaveRow[] = sizes.map((size, index) => ({
      rollout: id,
      index,
      state: 'pending',
      size,
      startedAt: null,
      conditionAt: null,
      endedAt: null,
      reason: null,
    }));
    const assignments: AssignmentRow[] = [];
    let wave = 0;
    let left = sizes[0]!;
    for (const d of devices) {
      if (left === 0) left = sizes[++wave]!;
      left--;
      const t = traitsOf(d)!;
      assignments.push({
        id: timeOrderedId(now),
        rollout: id,
        wave,
        purpose: 'install',
        device: d.id,
        artifact: variants.get(`${t.hardwareClass}|${t.executionProviders.join(',')}`)!,
        previousVersion: previousVersion(d, artifact.kind, artifact.name),
        state: 'pending',
        seq: -1,
        reason: null,
        figures: null,
        active: true,
        cancelSentAt: null,
        sentAt: null,
        deadline: null,
        updatedAt: now,
      });
    }
    try {
      await this.store.create({ rollout, waves, assignments });
    } catch (err) {
      // another rollout took one of the devices between the check and the write
      await this.refuseConflicts(ids, artifact.kind);
      throw err;
    }
    this.onChanged();
    return rollout;
  }

  private async refuseConflicts(devices: readonly string[], kind: RolloutRow['artifact']['kind']) {
    const taken = await this.store.activeElsewhere(devices, kind);
    if (taken.size === 0) return;
    const byRollout = new Map<string, string[]>();
    for (const [device, rollout] of taken)
      byRollout.set(rollout, [...(byRollout.get(rollout) ?? []), device]);
    const parts: string[] = [];
    for (const [rid, ids] of byRollout) {
      const other = await this.store.get(rid);
      parts.push(
        `devices ${short(ids)} are in rollout ${rid}${other ? ` "${other.name}" (${other.state})` : ''}`,
      );
    }
    throw new RolloutRefused(
      `one active rollout per device and artifact kind: ${parts.join('; ')} for ${kind} artifacts`,
      409,
      'wait until it ends, cancel it (POST /api/v1/rollouts/<id>/cancel), or leave those devices out of the target',
    );
  }

  /** the devices of the target, by id */
  private async targetDevices(request: RolloutRequest): Promise<DeviceRecord[]> {
    const { target } = request;
    let ids: string[];
    if (target.devices) ids = [...new Set(target.devices)];
    else if (target.labels && Object.keys(target.labels).length > 0)
      ids = await this.store.devicesWithLabels(target.labels, MAX_ROLLOUT_DEVICES + 1);
    else {
      ids = [];
      let after: string | undefined;
      for (;;) {
        const page = await this.repo.listDevices({
          limit: 500,
          maxChars: 10_000_000,
          ...(target.hardwareClass ? { hardwareClass: target.hardwareClass } : {}),
          ...(after ? { after } : {}),
        });
        ids.push(...page.devices.map((d) => d.id));
        if (!page.next || ids.length > MAX_ROLLOUT_DEVICES) break;
        after = page.next;
      }
    }
    if (ids.length > MAX_ROLLOUT_DEVICES)
      throw new RolloutRefused(`the target holds more than ${MAX_ROLLOUT_DEVICES} devices`, 400, 'split it');
    ids.sort();
    const records = await this.devices(ids);
    if (target.devices) {
      const known = new Set(records.map((d) => d.id));
      const unknown = ids.filter((id) => !known.has(id));
      if (unknown.length > 0)
        throw new RolloutRefused(
          `no device ${short(unknown)} has connected`,
          400,
          'GET /api/v1/devices lists them',
        );
    }
    const labels = target.labels && target.devices ? await this.store.labelsOf(ids) : undefined;
    return records.filter(
      (d) =>
        (!target.hardwareClass || d.identity?.hardwareClass === target.hardwareClass) &&
        (!labels ||
          Object.entries(target.labels!).every(([name, value]) => labels.get(d.id)?.[name] === value)),
    );
  }

  async get(id: string): Promise<RolloutRow> {
    const r = await this.store.get(id);
    if (!r) throw new RolloutRefused(`no rollout ${id}`, 404, 'GET /api/v1/rollouts lists them');
    return r;
  }

  async detail(id: string): Promise<RolloutDetail> {
    const rollout = await this.get(id);
    const [waves, counts, failures, history] = await Promise.all([
      this.store.waves(id),
      this.store.counts(id),
      this.store.assignments(id, { states: FAILED_STATES, limit: FAILURES_SHOWN }),
      this.store.history(id, HISTORY_SHOWN),
    ]);
    const rollbacks: Partial<Record<AssignmentState, number>> = {};
    const views: WaveView[] = waves.map((w) => ({ ...w, counts: {} }));
    for (const c of counts) {
      const into = c.purpose === 'rollback' ? rollbacks : views[c.wave]?.counts;
      if (into) into[c.state] = (into[c.state] ?? 0) + c.n;
    }
    return { rollout, waves: views, rollbacks, failures, versions: await this.kpis(rollout), history };
  }

  /**
   * Per version of the rollout's artifact (by its name): the target devices whose latest
   * telemetry has a camera running it, and those cameras' mean detect fps and latency — the
   * before and after of the rollout side by side
   */
  async kpis(r: RolloutRow): Promise<VersionKpi[]> {
    const devices = [
      ...new Set((await this.store.assignments(r.id, { purpose: 'install' })).map((a) => a.device)),
    ];
    const acc = new Map<number, { devices: Set<string>; cameras: number; fps: number; latency: number }>();
    const { p } = this.repo.sql;
    for (let i = 0; i < devices.length; i += IDS_PER_QUERY) {
      const chunk = devices.slice(i, i + IDS_PER_QUERY);
      const rows = await this.repo.sql.read<{ id: string; telemetry: string | null }>(
        `SELECT id, telemetry FROM devices WHERE id IN (${chunk.map((_, n) => p(n + 1)).join(', ')})`,
        chunk,
      );
      for (const row of rows) {
        if (!row.telemetry) continue;
        const t = JSON.parse(row.telemetry) as Telemetry;
        for (const c of t.cameras) {
          const ref = r.artifact.kind === 'model' ? c.model : c.scene;
          if (!ref || ref.name !== r.artifact.name) continue;
          const a = acc.get(ref.version) ?? { devices: new Set(), cameras: 0, fps: 0, latency: 0 };
          a.devices.add(row.id);
          a.cameras++;
          a.fps += c.fpsDetect;
          a.latency += c.detectLatencyMs;
          acc.set(ref.version, a);
        }
      }
    }
    return [...acc]
      .sort(([a], [b]) => a - b)
      .map(([version, a]) => ({
        version,
        devices: a.devices.size,
        cameras: a.cameras,
        meanDetectFps: a.fps / a.cameras,
        meanDetectLatencyMs: a.latency / a.cameras,
      }));
  }

  async list(o: { states?: readonly RolloutState[]; before?: string; limit: number }) {
    const rollouts = await this.store.list(o);
    return Promise.all(
      rollouts.map(async (r) => {
        const counts: Partial<Record<AssignmentState, number>> = {};
        for (const c of await this.store.counts(r.id))
          if (c.purpose === 'install') counts[c.state] = (counts[c.state] ?? 0) + c.n;
        return { rollout: r, counts };
      }),
    );
  }

  async pause(id: string, actor: string): Promise<RolloutRow> {
    const r = await this.get(id);
    if (r.state !== 'running')
      throw new RolloutRefused(`rollout ${id} is ${r.state}: only a running rollout pauses`, 409);
    if (!(await this.store.setRolloutState(id, ['running'], 'paused', `paused by ${actor}`, this.clock())))
      throw new RolloutRefused(`rollout ${id} changed meanwhile; look again`, 409);
    return this.get(id);
  }

  /**
   * Resumes a paused rollout. When its current wave failed (the error action paused it), the
   * operator's resume accepts that and goes on with the next wave (or completes the rollout).
   */
  async resume(id: string, actor: string): Promise<RolloutRow> {
    const r = await this.get(id);
    if (r.state !== 'paused')
      throw new RolloutRefused(`rollout ${id} is ${r.state}: only a paused rollout resumes`, 409);
    const waves = await this.store.waves(id);
    const current = waves[r.currentWave];
    const now = this.clock();
    let ok: boolean;
    if (current?.state === 'failed') {
      const next = r.currentWave + 1;
      ok =
        next >= waves.length
          ? await this.store.setRolloutState(
              id,
              ['paused'],
              'completed',
              `resumed by ${actor} after wave ${r.currentWave} failed; it was the last`,
              now,
            )
          : await this.store.setRolloutState(
              id,
              ['paused'],
              'running',
              `resumed by ${actor}: wave ${r.currentWave} failed, going on with wave ${next}`,
              now,
              { wave: next },
            );
    } else ok = await this.store.setRolloutState(id, ['paused'], 'running', `resumed by ${actor}`, now);
    if (!ok) throw new RolloutRefused(`rollout ${id} changed meanwhile; look again`, 409);
    this.onChanged();
    return this.get(id);
  }

  /**
   * Ends a rollout: assignments not sent yet are canceled at once; the engine sends
   * `update-cancel` to the devices that have one in progress. With `rollback`, it is aborted
   * instead: devices that committed are given their previous version back.
   */
  async cancel(id: string, actor: string, rollback = false): Promise<RolloutRow> {
    const r = await this.get(id);
    if (r.state !== 'running' && r.state !== 'paused')
      throw new RolloutRefused(`rollout ${id} is ${r.state} already`, 409);
    const now = this.clock();
    const reason = rollback ? `aborted by ${actor}, rolling back` : `canceled by ${actor}`;
    const ok = await this.store.setRolloutState(
      id,
      ['running', 'paused'],
      rollback ? 'aborted' : 'canceled',
      reason,
      now,
      {
        statements: this.store.cancelPendingSql(id, now, reason),
      },
    );
    if (!ok) throw new RolloutRefused(`rollout ${id} changed meanwhile; look again`, 409);
    this.onChanged();
    return this.get(id);
  }

  async labels(device: string): Promise<Record<string, string>> {
    return (await this.store.labelsOf([device])).get(device) ?? {};
  }

  async setLabels(device: string, labels: Record<string, string>): Promise<void> {
    if (!(await this.repo.getDevice(device)))
      throw new RolloutRefused(`no device "${device}" has connected`, 404, 'GET /api/v1/devices lists them');
    const zone = labels[TIME_ZONE_LABEL];
    if (zone !== undefined && !validTimeZone(zone))
      throw new RolloutRefused(
        `label ${TIME_ZONE_LABEL} "${zone}" is no time zone`,
        400,
        'give an IANA zone such as Europe/Paris, or an offset such as +05:30',
      );
    await this.store.setLabels(device, labels);
  }

  /** for the registry's download route: whether the device has an assignment of this artifact in progress */
  assignedTo(device: string, artifactId: string): Promise<boolean> {
    return this.store.assignedTo(device, artifactId);
  }

  /** for retention: the artifacts assignments refer to (in progress, or what devices committed) */
  referencedArtifacts(): Promise<string[]> {
    return this.store.referencedArtifacts();
  }

  /** those of `artifactIds` that referencedArtifacts holds (the registry's ArtifactReferences) */
  referenced(artifactIds: readonly string[]): Promise<ReadonlySet<string>> {
    return this.store.referenced(artifactIds);
  }
}

/** the version of the artifact the device runs now, from its identity (models) or telemetry (scenes) */
function previousVersion(d: DeviceRecord, kind: 'model' | 'scene', name: string): number | null {
  if (kind === 'model') {
    const versions = (d.identity as Identity | null)?.models
      .filter((m) => m.name === name)
      .map((m) => m.version);
    return versions?.length ? Math.max(...versions) : null;
  }
  const versions =
    d.telemetry?.cameras.flatMap((c) => (c.scene?.name === name ? [c.scene.version] : [])) ?? [];
  return versions.length ? Math.max(...versions) : null;
}
