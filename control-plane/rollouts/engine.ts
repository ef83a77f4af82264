import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { ArtifactKind, ArtifactRef, UpdateAssignment } from '../../contract/index.ts';
import type { StillHeld } from '../leased-job.ts';
import {
  type AssignmentRow,
  type AssignmentState,
  FAILED_STATES,
  isFinal,
  type RolloutRow,
  type RolloutStore,
  type WaveRow,
} from '../storage/rollouts.ts';
import { DEFAULT_SHADOW, inMaintenanceWindow, TIME_ZONE_LABEL } from './spec.ts';

/** what a device is, for choosing its variant of an artifact (from its identity) */
export interface DeviceTraits {
  hardwareClass: string;
  executionProviders: readonly string[];
}

/**
 * The artifact registry as rollouts use it (control-plane/artifacts/registry.ts implements it):
 * the variant of an artifact for a device's hardware class and execution providers, and when an
 * artifact expires (its signed manifest's `expires`)
 */
export interface ArtifactVariants {
  variantFor(
    kind: ArtifactKind,
    name: string,
    version: number,
    device: DeviceTraits,
  ): Promise<ArtifactRef | undefined>;
  /** ms since the epoch; undefined when the registry holds no such artifact */
  expiresAt(artifactId: string): Promise<number | undefined>;
}

/** why an artifact that expired at `expiresAt` is not assigned, in words an operator can act on */
export function expiredReason(a: ArtifactRef, expiresAt: number): string {
  return `expired: ${a.kind} ${a.name} v${a.version} (artifact ${a.id.slice(0, 12)}…) expired on ${new Date(expiresAt).toISOString()}; publish a newly signed version and roll that out`;
}

/** publishes a command to a device (CommandSender.send in the control plane) */
export type PublishCommand = (
  device: string,
  name: 'update' | 'update-cancel',
  args: Record<string, unknown>,
) => Promise<void>;

/** the devices, of those given, that the control plane sees healthy now */
export type HealthyDevices = (devices: readonly string[]) => Promise<Set<string>>;

/** the traits of each device that has sent its identity */
export type TraitsOf = (devices: readonly string[]) => Promise<Map<string, DeviceTraits>>;

export interface EngineSettings {
  /** an assignment sent and not answered is published again this often (the device dedupes by its id) */
  resendS: number;
  /** assignments published (sent, resent, canceled) per tick at most */
  maxSendsPerTick: number;
}

/** assignment states of devices that did not end yet */
const OPEN_STATES: readonly AssignmentState[] = [
  'pending',
  'sent',
  'queued',
  'downloading',
  'verifying',
  'shadow',
  'installing',
  'health',
];

/** the counts of one wave's install assignments that its conditions look at */
export interface WaveTally {
  size: number;
  committed: number;
  failed: number;
  /** assignments in a final state */
  final: number;
}

export function tally(size: number, states: readonly AssignmentState[]): WaveTally {
  let committed = 0;
  let failed = 0;
  let final = 0;
  for (const s of states) {
    if (s === 'committed') committed++;
    if (FAILED_STATES.includes(s)) failed++;
    if (isFinal(s)) final++;
  }
  return { size, committed, failed, final };
}

/** the error condition of the rollout's spec, with the figures that met it (undefined: not met) */
export function errorMet(spec: RolloutRow['spec'], t: WaveTally): string | undefined {
  if (t.failed === 0) return undefined;
  const { share, count } = spec.error;
  if (count !== undefined && t.failed >= count)
    return `${t.failed} of ${t.size} devices failed, rolled back or timed out (error condition: ${count} devices)`;
  if (share !== undefined && t.failed >= share * t.size)
    return `${t.failed} of ${t.size} devices failed, rolled back or timed out (error condition: ${Math.round(share * 100)} %)`;
  return undefined;
}

/** devices of a wave that must commit for its success condition */
export const successNeeds = (spec: RolloutRow['spec'], size: number): number =>
  Math.ceil(spec.success.share * size - 1e-9);

/**
 * The rollout engine: one tick at a time, on the replica that holds the `rollouts` lease, it
 * ends assignments past their deadline as `timed-out`, tells devices of ended rollouts to cancel,
 * publishes again what was never answered, and drives each running rollout's current wave:
 * starts it, sends its assignments (in each device's maintenance window), judges its error and
 * success conditions (with the control plane's health window) and takes the spec's action (next
 * wave, pause, abort). Every decision is a guarded write in the repository, so a tick cut by a
 * kill is taken up by the next one, here or on another replica, from the same state.
 */
export class RolloutEngine {
  constructor(
    private readonly store: RolloutStore,
    private readonly variants: () => ArtifactVariants | undefined,
    private readonly publish: PublishCommand,
    private readonly healthy: HealthyDevices,
    private readonly traits: TraitsOf,
    private readonly settings: EngineSettings,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  async tick(stillHeld: StillHeld = () => true): Promise<void> {
    let budget = this.settings.maxSendsPerTick;
    const now = this.clock();
    const timedOut = await this.store.timeOut(now, 10_000);
    if (timedOut.length > 0)
      this.log.info(
        { assignments: timedOut.length },
        'assignments timed out: their devices did not end in time',
      );
    if (!stillHeld()) return;
    const cancels = await this.store.cancelsDue(budget);
    const canceled: string[] = [];
    for (const a of cancels) {
      if (await this.send(a.device, 'update-cancel', { assignment: a.id })) canceled.push(a.id);
    }
    budget -= cancels.length;
    if (canceled.length > 0) await this.store.markCancelSent(canceled, now);
    if (!stillHeld()) return;
    const resend = await this.store.unanswered(now - this.settings.resendS * 1000, Math.max(0, budget));
    if (resend.length > 0) {
      const rollouts = new Map<string, RolloutRow | undefined>();
      const again: string[] = [];
      for (const a of resend) {
        if (!rollouts.has(a.rollout)) rollouts.set(a.rollout, await this.store.get(a.rollout));
        const r = rollouts.get(a.rollout);
        if (r && (await this.send(a.device, 'update', this.assignmentArgs(r, a)))) again.push(a.id);
      }
      budget -= resend.length;
      await this.store.touchSent(again, now);
    }
    for (const r of await this.store.driven()) {
      if (!stillHeld()) return;
      try {
        if (r.state === 'running') budget -= await this.drive(r, now, Math.max(0, budget));
        else budget -= await this.rollBack(r, now, Math.max(0, budget));
      } catch (err) {
        this.log.error(
          { err: errorMessage(err), rollout: r.id },
          'a rollout step failed; it is taken up again',
        );
      }
    }
  }

  /** the `update` command's args for an assignment */
  assignmentArgs(r: RolloutRow, a: AssignmentRow): UpdateAssignment {
    const spec = r.spec;
    const args: UpdateAssignment = {
      assignment: a.id,
      rollout: r.id,
      artifact: a.artifact,
      health: spec.health,
      deadline: new Date(a.deadline ?? this.clock()).toISOString(),
    };
    if (a.artifact.kind === 'model' && spec.shadow !== false) args.shadow = spec.shadow ?? DEFAULT_SHADOW;
    if (a.artifact.kind === 'scene' && spec.cameras) args.cameras = spec.cameras;
    if (spec.installAt && a.purpose === 'install') args.installAt = spec.installAt;
    return args;
  }

  private async send(device: string, name: 'update' | 'update-cancel', args: object): Promise<boolean> {
    try {
      await this.publish(device, name, args as Record<string, unknown>);
      return true;
    } catch (err) {
      this.log.warn(
        { err: errorMessage(err), device, command: name },
        'cannot publish to a device; retried later',
      );
      return false;
    }
  }

  private deadline(r: RolloutRow, now: number): number {
    const installAt = r.spec.installAt ? Date.parse(r.spec.installAt) : now;
    return Math.max(now, installAt) + r.spec.deviceTimeoutS * 1000;
  }

  /** one step of a running rollout; answers the assignments it published */
  private async drive(r: RolloutRow, now: number, budget: number): Promise<number> {
    const waves = await this.store.waves(r.id);
    // a wave that succeeded before all its devices were sent (a success share below 1) still
    // sends the rest; the rollout completes when the last wave succeeded and every device ended
    const done = new Set(
      waves.filter((x) => x.index < r.currentWave && x.state === 'succeeded').map((x) => x.index),
    );
    let sent = 0;
    if (done.size > 0) {
      const left = (await this.store.assignments(r.id, { purpose: 'install', states: ['pending'] })).filter(
        (a) => done.has(a.wave),
      );
      sent = await this.sendPending(r, left, now, budget);
      budget -= sent;
    }
    const w = waves[r.currentWave];
    if (!w) {
      const open = await this.store.assignments(r.id, { purpose: 'install', limit: 1, states: OPEN_STATES });
      if (open.length === 0)
        await this.store.setRolloutState(
          r.id,
          ['running'],
          'completed',
          'every wave succeeded and every device ended',
          now,
        );
      return sent;
    }
    if (w.state === 'pending') {
      if (!(await this.store.setWave(r.id, w.index, ['pending'], 'running', now, null))) return 0;
      w.state = 'running';
      w.startedAt = now;
    }
    if (w.state !== 'running' && w.state !== 'health') return sent;
    sent += await this.judge(r, waves, w, now, budget);
    // a wave that succeeded into the next one: that one starts in this tick, not a tick later
    const next = await this.store.get(r.id);
    if (next?.state === 'running' && next.currentWave > r.currentWave)
      return sent + (await this.drive(next, now, Math.max(0, budget - sent)));
    return sent;
  }

  /** the current wave's conditions and the action they call for, or its sends */
  private async judge(
    r: RolloutRow,
    waves: WaveRow[],
    w: WaveRow,
    now: number,
    budget: number,
  ): Promise<number> {
    const assignments = await this.store.assignments(r.id, { wave: w.index, purpose: 'install' });
    const t = tally(
      w.size,
      assignments.map((a) => a.state),
    );
    const error = errorMet(r.spec, t);
    if (error) return this.waveFailed(r, w, error, now);
    const needs = successNeeds(r.spec, w.size);
    if (t.committed >= needs) {
      if (r.spec.success.healthS > 0) {
        if (w.state === 'running') {
          await this.store.setWave(
            r.id,
            w.index,
            ['running'],
            'health',
            now,
            `${t.committed} of ${w.size} committed; watching them for ${r.spec.success.healthS} s`,
          );
          return this.sendPending(r, assignments, now, budget);
        }
        if (now < (w.conditionAt ?? now) + r.spec.success.healthS * 1000)
          return this.sendPending(r, assignments, now, budget);
        const committed = assignments.filter((a) => a.state === 'committed').map((a) => a.device);
        const healthy = await this.healthy(committed);
        const ok = committed.filter((d) => healthy.has(d)).length;
        if (ok < needs)
          return this.waveFailed(
            r,
            w,
            `only ${ok} of ${w.size} devices committed and healthy after the health window of ${r.spec.success.healthS} s (success needs ${needs})`,
            now,
          );
      }
      await this.waveSucceeded(r, w, waves.length, `${t.committed} of ${w.size} devices committed`, now);
      return 0;
    }
    if (t.final === w.size)
      return this.waveFailed(
        r,
        w,
        `every device of the wave ended and only ${t.committed} of ${w.size} committed (success needs ${needs})`,
        now,
      );
    return this.sendPending(r, assignments, now, budget);
  }

  private async waveSucceeded(r: RolloutRow, w: WaveRow, waves: number, why: string, now: number) {
    const last = w.index === waves - 1;
    const statements = this.store.setWaveSql(r.id, w.index, ['running', 'health'], 'succeeded', now, why);
    if (last) {
      await this.store.setRolloutState(
        r.id,
        ['running'],
        'running',
        `every wave succeeded (${why} in the last); the rollout completes when every device ended`,
        now,
        { wave: w.index + 1, statements },
      );
    } else if (r.spec.onSuccess === 'pause') {
      await this.store.setRolloutState(
        r.id,
        ['running'],
        'paused',
        `wave ${w.index} succeeded (${why}); resume starts wave ${w.index + 1}`,
        now,
        { wave: w.index + 1, statements },
      );
    } else {
      await this.store.setRolloutState(
        r.id,
        ['running'],
        'running',
        `wave ${w.index} succeeded (${why})`,
        now,
        {
          wave: w.index + 1,
          statements,
        },
      );
    }
  }

  private async waveFailed(r: RolloutRow, w: WaveRow, why: string, now: number): Promise<number> {
    const statements = this.store.setWaveSql(r.id, w.index, ['running', 'health'], 'failed', now, why);
    if (r.spec.onError === 'abort') {
      const reason = `aborted at wave ${w.index}: ${why}`;
      statements.push(...this.store.cancelPendingSql(r.id, now, reason));
      await this.store.setRolloutState(r.id, ['running'], 'aborted', reason, now, { statements });
    } else {
      await this.store.setRolloutState(
        r.id,
        ['running'],
        'paused',
        `paused at wave ${w.index}: ${why}; resume goes on with the next wave, cancel ends the rollout`,
        now,
        { statements },
      );
    }
    this.log.warn(
      { rollout: r.id, wave: w.index, why },
      `rollout ${r.spec.onError === 'abort' ? 'aborted' : 'paused'}`,
    );
    return 0;
  }

  /** sends the wave's pending assignments whose devices are in their maintenance window */
  private async sendPending(r: RolloutRow, assignments: AssignmentRow[], now: number, budget: number) {
    let pending = assignments.filter((a) => a.state === 'pending');
    if (pending.length === 0 || budget === 0) return 0;
    if (r.spec.maintenance) {
      const labels = await this.store.labelsOf(pending.map((a) => a.device));
      pending = pending.filter((a) =>
        inMaintenanceWindow(now, r.spec.maintenance, labels.get(a.device)?.[TIME_ZONE_LABEL]),
      );
    }
    return this.publishAssignments(r, pending.slice(0, budget), ['running'], now);
  }

  /**
   * Marks the assignments sent and publishes them, except those whose artifact expired: a box
   * would refuse it at verification, so it is not assigned at all; it ends `failed` with the
   * reason `expired: …`, and the wave's error condition acts on it like on any failure
   */
  private async publishAssignments(
    r: RolloutRow,
    all: AssignmentRow[],
    rolloutStates: RolloutRow['state'][],
    now: number,
  ): Promise<number> {
    if (all.length === 0) return 0;
    const expiry = new Map<string, number | undefined>();
    const registry = this.variants();
    for (const a of all)
      if (registry && !expiry.has(a.artifact.id))
        expiry.set(a.artifact.id, await registry.expiresAt(a.artifact.id));
    const expired = all.filter((a) => (expiry.get(a.artifact.id) ?? Number.POSITIVE_INFINITY) <= now);
    if (expired.length > 0) {
      await this.store.failPending(
        expired.map((a) => ({
          assignment: a,
          reason: expiredReason(a.artifact, expiry.get(a.artifact.id)!),
        })),
        now,
      );
      this.log.warn(
        { rollout: r.id, assignments: expired.length, artifact: expired[0]!.artifact.id },
        'assignments of an expired artifact failed without being sent',
      );
    }
    const assignments = all.filter((a) => !expired.includes(a));
    if (assignments.length === 0) return 0;
    const deadline = this.deadline(r, now);
    const marked = new Set(
      await this.store.markSent(
        assignments.map((a) => a.id),
        rolloutStates,
        now,
        () => deadline,
      ),
    );
    for (const a of assignments) {
      if (!marked.has(a.id)) continue;
      const sent = { ...a, state: 'sent' as const, sentAt: now, deadline };
      if (!(await this.send(a.device, 'update', this.assignmentArgs(r, sent))))
        await this.store.unsend(a.id, now);
    }
    return marked.size;
  }

  /**
   * An aborted rollout gives each device that committed its previous version back: a `rollback`
   * assignment of the registry's variant of that version (failed, with the reason, when the
   * version or its variant is not known), sent at once, maintenance window or not
   */
  private async rollBack(r: RolloutRow, now: number, budget: number): Promise<number> {
    const all = await this.store.assignments(r.id);
    const rolledBack = new Set(all.filter((a) => a.purpose === 'rollback').map((a) => a.device));
    const todo = all.filter(
      (a) => a.purpose === 'install' && a.state === 'committed' && !rolledBack.has(a.device),
    );
    if (todo.length > 0) {
      const traits = await this.traits(todo.map((a) => a.device));
      const registry = this.variants();
      const statements = [];
      for (const a of todo) {
        let artifact: ArtifactRef | undefined;
        let reason: string | null = null;
        const t = traits.get(a.device);
        if (a.previousVersion === null || a.previousVersion < 1)
          reason = `no earlier version of ${a.artifact.kind} ${a.artifact.name} was recorded for the device`;
        else if (!t) reason = 'the device sent no identity: its variant is unknown';
        else if (!registry) reason = 'the artifact registry is not available';
        else {
          artifact = await registry.variantFor(a.artifact.kind, a.artifact.name, a.previousVersion, t);
          if (!artifact)
            reason = `the registry has no variant of ${a.artifact.kind} ${a.artifact.name} version ${a.previousVersion} for hardware class ${t.hardwareClass}`;
        }
        const row: AssignmentRow = {
          ...a,
          id: `${a.id.slice(0, 55)}-rb`,
          purpose: 'rollback',
          artifact: artifact ?? a.artifact,
          previousVersion: a.artifact.version,
          state: artifact ? 'pending' : 'failed',
          seq: -1,
          reason: reason ?? `rollback to version ${a.previousVersion}: ${r.reason ?? 'rollout aborted'}`,
          figures: null,
          active: artifact !== undefined,
          cancelSentAt: null,
          sentAt: null,
          deadline: null,
          updatedAt: now,
        };
        statements.push(
          this.store.insertAssignmentSql(row, true),
          this.store.historySql({
            rollout: r.id,
            wave: a.wave,
            assignment: row.id,
            device: a.device,
            state: artifact ? 'rollback-assigned' : 'rollback-impossible',
            reason: row.reason,
            at: now,
          }),
        );
      }
      await this.store.sql.write(statements);
    }
    const pending = await this.store.assignments(r.id, {
      purpose: 'rollback',
      states: ['pending'],
      limit: budget,
    });
    return this.publishAssignments(r, pending, ['aborted'], now);
  }
}
