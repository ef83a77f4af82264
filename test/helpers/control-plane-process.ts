import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { eventually } from './eventually.ts';

const ROOT = resolve(import.meta.dirname, '../..');

export interface ControlPlaneProcess {
  child: ChildProcess;
  /** the API's URL, as the process logged it */
  httpUrl: string;
}

/**
 * A control plane in a process of its own, as a box's operator runs it (`argus control-plane run
 * --config <config>`), or `script` (a TypeScript file run with tsx that takes the config as its
 * argument); resolves once it logged its HTTP URL, throws with its log if it exits before. `onLog`
 * gets its log (stderr) as it comes.
 */
export async function startControlPlaneProcess(
  config: string,
  o: { script?: string; timeoutMs?: number; onLog?: (chunk: string) => void } = {},
): Promise<ControlPlaneProcess> {
  const args = o.script
    ? ['--import', 'tsx', o.script, config]
    : [join(ROOT, 'bin/argus.mjs'), 'control-plane', 'run', '--config', config];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ARGUS_LOG_LEVEL: 'info' },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    o.onLog?.(d.toString());
  });
  // an exit ends the wait at once: a port taken or a bad config is not waited out
  const started = await eventually(
    async () => {
      if (child.exitCode !== null || child.signalCode !== null) return { exited: true as const };
      const url = /"http":"(http:[^"]+)"/.exec(stderr)?.[1];
      return url ? { exited: false as const, url } : undefined;
    },
    o.timeoutMs ?? 60_000,
    'the control plane to start',
  ).catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
  if (started.exited) throw new Error(`control plane exited: ${stderr}`);
  const httpUrl = started.url;
  return { child, httpUrl };
}
