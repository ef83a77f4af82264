import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../../common/logger.ts';
import { ArtifactRegistry } from '../artifacts/registry.ts';
import type { ControlPlaneConfig } from '../config.ts';
import { DeviceHealth } from '../device-health.ts';
import { HarvestedFrames } from '../harvest/frames.ts';
import { LeasedJob } from '../leased-job.ts';
import { Rollouts } from '../rollouts/service.ts';
import { LeaseStore } from '../storage/leases.ts';
import { openRepository } from '../storage/open.ts';
import type { Repository } from '../storage/repository.ts';
import { type LoopRun, LoopRunStore } from './store.ts';
import { type LoopRunner, LoopWorker } from './worker.ts';

/** the lease every loop worker takes: one loop runs at a time across the fleet's control plane */
export const LOOP_LEASE = 'loop';

export interface LoopJob {
  runs: LoopRunStore;
  worker: LoopWorker;
  leases: LeaseStore;
  holder: string;
  repository: Repository;
  close(): Promise<void>;
}

/**
 * The loop's side of the control plane, for a process of its own (`argus loop worker`,
 * `argus loop run`): the database, the artifact registry (where a passing candidate is
 * published), the harvested frames and the loop runs, and a LoopWorker with this process's name.
 */
export async function openLoopJob(
  config: ControlPlaneConfig,
  runner: LoopRunner,
  log: Logger,
  onProgress?: (run: LoopRun, step: string, fraction: number, message: string) => void,
): Promise<LoopJob> {
  const repository = await openRepository(config.storage);
  const holder = `loop-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const rollouts = new Rollouts(repository, () => registry, new DeviceHealth(repository.sql, config.health));
  const registry: ArtifactRegistry = new ArtifactRegistry({
    sql: repository.sql,
    settings: config.artifacts,
    references: rollouts,
  });
  const runs = new LoopRunStore(repository.sql);
  const worker = new LoopWorker({
    runs,
    harvest: new HarvestedFrames(repository.sql, registry.blobs),
    registry,
    runner,
    dir: config.loop.dir,
    holder,
    signingKey: config.loop.signingKey,
    checkMs: config.loop.checkS * 1000,
    log,
    ...(onProgress ? { onProgress } : {}),
  });
  return {
    runs,
    worker,
    leases: new LeaseStore(repository.sql),
    holder,
    repository,
    close: () => repository.close(),
  };
}

/**
 * Runs queued loop runs one after the other for as long as this process holds the `loop` lease
 * (a LeasedJob: another worker takes it on within `leases.ttlS` when this one dies)
 */
export function startLoopWorker(job: LoopJob, config: ControlPlaneConfig, log: Logger): LeasedJob {
  const leased = new LeasedJob(
    job.leases,
    {
      name: LOOP_LEASE,
      holder: job.holder,
      ttlMs: config.leases.ttlS * 1000,
      intervalMs: config.loop.pollS * 1000,
    },
    async (stillHeld) => {
      while (stillHeld() && (await job.worker.runNext(stillHeld))) {
        // the next queued run, at once
      }
    },
    log,
  );
  leased.start();
  return leased;
}
