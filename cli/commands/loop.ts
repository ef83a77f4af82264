import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { type ControlPlaneConfig, loadControlPlaneConfig } from '../../control-plane/index.ts';
import { LeasedJob } from '../../control-plane/leased-job.ts';
import { LOOP_LEASE, type LoopJob, openLoopJob, startLoopWorker } from '../../control-plane/loop/job.ts';
import type { LoopRun, LoopRunStore } from '../../control-plane/loop/store.ts';
import type { LoopRunner } from '../../control-plane/loop/worker.ts';
import { LABEL_VALUE_PATTERN } from '../../control-plane/rollouts/spec.ts';
import { runLoop } from '../../models/loop/loop.ts';
import { loopSettings } from '../../models/loop/settings.ts';
import { type Command, parseCommandArgs, untilAborted } from '../command.ts';
import { cliActor } from './devices.ts';

/**
 * the loop as the control plane runs it: models/loop on the run's site, work directory and frames,
 * with the config's `loop.options` (teacher, annotated frames, adaptation …), validated when the
 * job opens so that a worker with a wrong section stops at its start, saying what to fix; the
 * annotated frames' recording is relative to the config file, as its other paths are
 */
function runnerFor(config: ControlPlaneConfig, configFile: string): LoopRunner {
  const settings = loopSettings(config.loop.options, `loop.options of ${configFile}`);
  const annotated = { ...settings.annotated, video: resolve(dirname(configFile), settings.annotated.video) };
  return (o) => runLoop({ ...settings, annotated, ...o });
}

/** how often `loop run` reads a run another worker executes */
const FOLLOW_MS = 1000;

/** prints a run's progress: each new step, then every tenth of it */
function progressPrinter(out: NodeJS.WritableStream) {
  let last = { step: '', tenth: -1 };
  return (step: string | null, fraction: number, message: string | null) => {
    if (!step) return;
    const tenth = Math.floor(fraction * 10);
    if (step === last.step && tenth === last.tenth) return;
    last = { step, tenth };
    out.write(`${step.padEnd(8)} ${String(Math.round(fraction * 100)).padStart(3)} %  ${message ?? ''}\n`);
  };
}

function ending(run: LoopRun): string {
  if (run.state === 'succeeded')
    return `loop run ${run.id} succeeded: candidate ${run.artifact} in the artifact registry; roll it out with\n  argus rollouts create --artifact <kind:name:version of argus artifacts show ${run.artifact}> --label site=${run.site}\n`;
  if (run.state === 'queued')
    return `loop run ${run.id} interrupted at ${run.step ?? 'its start'}: run the same command again to resume it\n`;
  return `loop run ${run.id} ${run.state}${run.reason ? `: ${run.reason}` : ''}\n`;
}

/** follows a run another worker executes until it ends, or until `signal` */
async function follow(
  runs: LoopRunStore,
  id: string,
  signal: AbortSignal,
  print: ReturnType<typeof progressPrinter>,
) {
  for (;;) {
    const run = (await runs.get(id))!;
    print(run.step, run.progress, run.message);
    if (run.state !== 'queued' && run.state !== 'running') return run;
    await sleep(FOLLOW_MS, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return run;
  }
}

async function withLoopJob<T>(
  configFile: string | undefined,
  command: Command,
  onProgress: Parameters<typeof openLoopJob>[3],
  fn: (job: LoopJob, config: ControlPlaneConfig) => Promise<T>,
): Promise<T> {
  if (!configFile) throw new ArgusError('the control-plane config is needed', `usage: ${command.usage}`);
  const config = await loadControlPlaneConfig(configFile);
  const job = await openLoopJob(config, runnerFor(config, configFile), createLogger('loop'), onProgress);
  try {
    return await fn(job, config);
  } finally {
    await job.close();
  }
}

/** the control plane's config: both commands open its database, artifact registry and loop section */
const CONFIG_OPTION = {
  config: {
    type: 'string',
    value: 'FILE',
    description: 'the control plane config (YAML): its database, artifacts and loop sections',
  },
} as const;

export const loopRun: Command = {
  path: ['loop', 'run'],
  summary:
    "run the data–model loop on a site's harvested frames, printing each step; Ctrl-C stops, running again resumes",
  usage: 'argus loop run --site <label> --config <control-plane.yaml>',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      site: {
        type: 'string',
        value: 'LABEL',
        description: "the devices' `site` label whose frames the loop learns from",
      },
      ...CONFIG_OPTION,
    });
    const site = values.site;
    if (!site || !new RegExp(LABEL_VALUE_PATTERN).test(site) || positionals.length > 0)
      throw new ArgusError('loop run needs --site with a site label', `usage: ${this.usage}`);
    const print = progressPrinter(ctx.stdout);
    return withLoopJob(
      values.config,
      this,
      (_run, step, fraction, message) => print(step, fraction, message),
      async (job, config) => {
        const existing = await job.runs.activeFor(site);
        const run = existing ?? (await job.runs.create(site, cliActor()));
        ctx.stdout.write(
          existing
            ? `resuming loop run ${run.id} of site ${site} (${run.state}${run.step ? `, at ${run.step}` : ''})\n`
            : `loop run ${run.id} of site ${site} queued\n`,
        );
        const other = await job.leases.holder(LOOP_LEASE);
        let ended: LoopRun | undefined;
        if (other && other !== job.holder) {
          ctx.stdout.write(
            `a loop worker (${other}) runs the loops: following the run (Ctrl-C stops following, not the run)\n`,
          );
          ended = await follow(job.runs, run.id, ctx.signal, print);
        } else {
          let done!: (run: LoopRun | undefined) => void;
          const finished = new Promise<LoopRun | undefined>((resolve) => {
            done = resolve;
          });
          const leased = new LeasedJob(
            job.leases,
            { name: LOOP_LEASE, holder: job.holder, ttlMs: config.leases.ttlS * 1000, intervalMs: FOLLOW_MS },
            async (stillHeld) => done(await job.worker.runNext(stillHeld, ctx.signal, site)),
            createLogger('loop'),
          );
          leased.start();
          await Promise.race([finished, untilAborted(ctx.signal)]);
          // waits for a run in progress to give itself back (Ctrl-C) or end
          await leased.stop();
        }
        const final = (await job.runs.get(run.id)) ?? ended!;
        ctx.stdout.write(ending(final));
        return final.state === 'succeeded' ? 0 : 1;
      },
    );
  },
};

export const loopWorker: Command = {
  path: ['loop', 'worker'],
  summary:
    'execute queued loop runs (POST /api/v1/loop/runs) in a process of its own, so the loop does not slow ingest',
  usage: 'argus loop worker --config <control-plane.yaml>',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      ...CONFIG_OPTION,
    });
    if (positionals.length > 0)
      throw new ArgusError('loop worker takes no arguments', `usage: ${this.usage}`);
    const log = createLogger('loop');
    return withLoopJob(
      values.config,
      this,
      (run, step, fraction) =>
        log.info(
          { run: run.id, site: run.site, step, progress: Number(fraction.toFixed(2)) },
          'loop progress',
        ),
      async (job, config) => {
        const leased = startLoopWorker(job, config, log);
        log.info({ holder: job.holder, dir: config.loop.dir }, 'loop worker running');
        await untilAborted(ctx.signal);
        await leased.stop();
        return 0;
      },
    );
  },
};
