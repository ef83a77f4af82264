import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { ArgusError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { ControlPlane } from '../control-plane/index.ts';
import { defaultKeyring, generateSigningKey, keysDir } from '../models/bundle/keys.ts';
import { ANY_HARDWARE_CLASS } from '../models/bundle/manifest.ts';
import { verifyBundle } from '../models/bundle/verify.ts';

/**
 * The demo's rollout: the model factory's int8 NanoDet, signed, published to the demo's registry
 * and rolled out to its boxes in two waves (a canary, then the other box), with its progress
 * printed per box until every box ended. The int8 model, its evaluation and the signed bundle are
 * made once, in `factoryDir`, and taken again at the next start; the demo's control plane and
 * boxes trust the factory key by default.
 */

const ARGUS = resolve(import.meta.dirname, '../bin/argus.mjs');
const KEY = 'demo-factory';
/** the catalog's nanodet is version 2: its int8 derivative is the next version of that model line */
const MODEL = { name: 'nanodet', version: 3 } as const;

/** frames of the sample video the int8 model is calibrated on, and the held-out ones it is evaluated on (few: the demo makes it at its first start) */
const CALIBRATION_FRAMES = '10-370/40';
const EVALUATION_FRAMES = '405-765/60';

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** runs `argus ARGS…` as a child process (the model factory's work never blocks the demo's control plane) */
async function argus(args: readonly string[], say: (line: string) => void, signal: AbortSignal) {
  const child = spawn(process.execPath, [ARGUS, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ARGUS_PROGRESS: 'off' },
    signal,
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.trim()) say(`  ${line}`);
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0)
    throw new ArgusError(`argus ${args.slice(0, 2).join(' ')} failed (exit ${code}); its output is above`);
}

/**
 * The signed int8 bundle, made by the model factory's commands when it is missing or no longer
 * verifies: `argus models quantize`, `argus models evaluate`, `argus models build --key`
 */
export async function demoBundle(factoryDir: string, say: (line: string) => void, signal: AbortSignal) {
  // signed with a key of the machine's key directory, whose keyring the demo's control plane and
  // boxes trust by default (as the demo's scene key)
  const keyFile = join(keysDir(), 'signing', `${KEY}.key`);
  if (!(await exists(keyFile))) await generateSigningKey(KEY);
  const out = join(factoryDir, `${MODEL.name}-int8-v${MODEL.version}-any.argus-model`);
  const valid = await verifyBundle(out, {
    keyring: defaultKeyring(),
    installedDir: join(factoryDir, 'nothing-installed'),
  }).then(
    () => true,
    () => false,
  );
  if (valid) return out;
  const int8Dir = join(factoryDir, 'nanodet-int8');
  // an int8 model evaluated before (a bundle that is missing or expired needs only packing again)
  const evaluated = (await readdir(int8Dir).catch(() => [] as string[])).some((f) =>
    f.startsWith('evaluation-'),
  );
  if (!evaluated) {
    await rm(int8Dir, { recursive: true, force: true });
    await mkdir(factoryDir, { recursive: true });
    const config = join(factoryDir, 'quantize.yaml');
    await writeFile(config, `calibrationFrames: ${CALIBRATION_FRAMES}\n`);
    say('the model factory makes the int8 model once (quantize, evaluate against fp32, sign): a few minutes');
    await argus(['models', 'quantize', 'nanodet', '--config', config, '--out', int8Dir], say, signal);
    await argus(['models', 'evaluate', int8Dir, '--frames', EVALUATION_FRAMES, '--runs', '3'], say, signal);
  }
  // every box of the demo runs on this machine's CPU: the bundle fits any hardware class
  await argus(
    [
      'models',
      'build',
      int8Dir,
      '--target',
      `cpu:${ANY_HARDWARE_CLASS}`,
      '--name',
      MODEL.name,
      '--version',
      String(MODEL.version),
      '--out',
      out,
      '--key',
      keyFile,
    ],
    say,
    signal,
  );
  return out;
}

export interface DemoRolloutOptions {
  cp: ControlPlane;
  factoryDir: string;
  devices: readonly string[];
  say: (line: string) => void;
  log: Logger;
  signal: AbortSignal;
}

/** builds (once), publishes and rolls out the int8 bundle, saying each box's progress; resolves when it ended */
export async function demoRollout(o: DemoRolloutOptions): Promise<void> {
  const { cp, say, signal } = o;
  const bundle = await demoBundle(o.factoryDir, say, signal);
  const published = await cp.artifacts.publish(createReadStream(bundle), 'demo');
  say(
    `published ${MODEL.name} v${MODEL.version} (int8, artifact ${published.artifact.id.slice(0, 12)}…) to the registry`,
  );
  // a rollout needs the boxes' identities (their hardware class picks the variant)
  while (!signal.aborted) {
    const known = await Promise.all(o.devices.map((d) => cp.repository.getDevice(d)));
    if (known.every((d) => d?.identity)) break;
    await sleep(500, undefined, { signal }).catch(() => undefined);
  }
  if (signal.aborted) return;
  // a rollout the previous demo left running would hold the boxes (one per device and kind)
  for (const { rollout } of await cp.rollouts.list({ states: ['running', 'paused'], limit: 50 }))
    await cp.rollouts.cancel(rollout.id, 'demo');
  const rollout = await cp.rollouts.create(
    {
      name: `demo: ${MODEL.name} int8 v${MODEL.version}`,
      artifact: { kind: 'model', ...MODEL },
      target: { devices: [...o.devices] },
      waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
      shadow: { frames: 20, minAgreement: 0.7, maxLatencyRatio: 3, timeoutS: 300 },
      health: { windowS: 20, minDetectFpsRatio: 0.5, maxDetectLatencyRatio: 3, maxDetectorRestarts: 0 },
      error: { count: 1 },
      deviceTimeoutS: 900,
    },
    'demo',
  );
  say(
    `rollout ${rollout.id} started: ${rollout.name} to ${o.devices.join(', ')} (canary ${o.devices[0]}, then the rest)`,
  );
  // per assignment: the seq of the last status said (-1: `sent` said, none yet)
  const said = new Map<string, number>();
  for (;;) {
    const assignments = await cp.rollouts.store.assignments(rollout.id, { purpose: 'install' });
    for (const a of assignments) {
      if (a.state === 'pending') continue;
      if (!said.has(a.id)) {
        say(`rollout: ${a.device} sent`);
        said.set(a.id, -1);
      }
      // every status the box reported, in order (a poll alone would miss the quick ones)
      for (const st of await cp.rollouts.store.statuses(a.id)) {
        if (st.seq <= said.get(a.id)!) continue;
        said.set(a.id, st.seq);
        const extra = st.progress ? ` ${st.progress.bytes}/${st.progress.total} bytes` : '';
        say(`rollout: ${a.device} ${st.state}${extra}${st.reason ? ` (${st.reason})` : ''}`);
      }
      if (a.state === 'timed-out' && said.get(a.id) !== Number.MAX_SAFE_INTEGER) {
        say(`rollout: ${a.device} timed-out (${a.reason})`);
        said.set(a.id, Number.MAX_SAFE_INTEGER);
      }
    }
    const r = await cp.rollouts.get(rollout.id);
    if (r.state !== 'running') {
      const ends = assignments.map((a) => `${a.device} ${a.state}`).join(', ');
      say(`rollout ${r.state}: ${ends}${r.reason ? ` — ${r.reason}` : ''}`);
      return;
    }
    await sleep(1000, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return;
  }
}

/** runs the demo's rollout in the background: a failure is said, and never stops the demo */
export function startDemoRollout(o: DemoRolloutOptions): Promise<void> {
  return demoRollout(o).catch((err: unknown) => {
    if (o.signal.aborted) return;
    o.log.error({ err: errorMessage(err) }, 'the demo rollout failed');
    o.say(`the rollout did not run: ${errorMessage(err)}`);
  });
}
