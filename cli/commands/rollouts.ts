import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import { type Command, type CommandContext, type CommandOption, parseCommandArgs } from '../command.ts';

/** the options every command that talks to the control plane's API takes */
const API_OPTIONS = {
  'control-plane': {
    type: 'string',
    value: 'URL',
    description: "the control plane's API (default $ARGUS_CONTROL_PLANE, else http://127.0.0.1:8080)",
  },
  token: {
    type: 'string',
    value: 'TOKEN',
    description: 'an API token of an operator (default $ARGUS_TOKEN; a viewer may list and show)',
  },
} satisfies Record<string, CommandOption>;

interface ApiOptions {
  'control-plane'?: string | undefined;
  token?: string | undefined;
}

/** one call to the control plane's API; an error answer becomes an ArgusError with its hint */
export async function callApi<T>(
  o: ApiOptions,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const base = (o['control-plane'] ?? process.env.ARGUS_CONTROL_PLANE ?? 'http://127.0.0.1:8080').replace(
    /\/+$/,
    '',
  );
  const token = o.token ?? process.env.ARGUS_TOKEN;
  if (!token)
    throw new ArgusError(
      'no API token: give --token or set ARGUS_TOKEN',
      'an admin makes one in the console or with POST /api/v1/tokens',
    );
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    throw new ArgusError(
      `cannot reach the control plane at ${base}: ${errorMessage(err)}`,
      'check --control-plane (or ARGUS_CONTROL_PLANE) and that the control plane runs',
    );
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = json as { error?: string; hint?: string } | undefined;
    throw new ArgusError(`${method} ${path}: ${res.status} ${e?.error ?? text.slice(0, 300)}`, e?.hint);
  }
  return json as T;
}

interface Counts {
  [state: string]: number;
}
interface RolloutView {
  id: string;
  name: string;
  artifact: { kind: string; name: string; version: number };
  state: string;
  reason: string | null;
  currentWave: number;
  createdAt: string;
  counts: Counts;
}
interface RolloutDetail extends RolloutView {
  waves: { index: number; state: string; size: number; counts: Counts; reason: string | null }[];
  rollbacks: Counts;
  failures: { device: string; wave: number; state: string; reason: string | null }[];
  versions: {
    version: number;
    devices: number;
    cameras: number;
    meanDetectFps: number;
    meanDetectLatencyMs: number;
  }[];
}

const FINAL = new Set(['completed', 'aborted', 'canceled']);
const ORDER = [
  'committed',
  'health',
  'installing',
  'shadow',
  'verifying',
  'downloading',
  'queued',
  'sent',
  'pending',
  'failed',
  'rolled-back',
  'timed-out',
  'canceled',
];

const countsText = (c: Counts) =>
  ORDER.filter((s) => c[s])
    .map((s) => `${s} ${c[s]}`)
    .join(', ') || 'none';

function bar(c: Counts, size: number, width = 20): string {
  const done = (c.committed ?? 0) / Math.max(1, size);
  const bad = ((c.failed ?? 0) + (c['rolled-back'] ?? 0) + (c['timed-out'] ?? 0)) / Math.max(1, size);
  const g = Math.round(done * width);
  const b = Math.min(width - g, Math.round(bad * width));
  return `[${'#'.repeat(g)}${'x'.repeat(b)}${'.'.repeat(width - g - b)}]`;
}

/** the text `argus rollouts show` prints for a rollout */
export function renderRollout(d: RolloutDetail): string {
  const lines = [
    `rollout ${d.id} "${d.name}": ${d.artifact.kind} ${d.artifact.name} v${d.artifact.version} — ${d.state}`,
  ];
  if (d.reason) lines.push(`  ${d.reason}`);
  for (const w of d.waves)
    lines.push(
      `  wave ${String(w.index).padEnd(2)} ${w.state.padEnd(9)} ${bar(w.counts, w.size)} ${String(w.size).padStart(5)} devices: ${countsText(w.counts)}`,
    );
  if (Object.keys(d.rollbacks).length > 0) lines.push(`  rollbacks: ${countsText(d.rollbacks)}`);
  if (d.versions.length > 0) {
    lines.push('  per version (latest telemetry of the target):');
    for (const v of d.versions)
      lines.push(
        `    v${v.version}: ${v.devices} devices, ${v.cameras} cameras, detect ${v.meanDetectFps.toFixed(1)} fps, ${v.meanDetectLatencyMs.toFixed(1)} ms`,
      );
  }
  if (d.failures.length > 0) {
    lines.push('  failures:');
    for (const f of d.failures.slice(0, 20))
      lines.push(`    ${f.device} (wave ${f.wave}) ${f.state}: ${f.reason ?? 'no reason given'}`);
    if (d.failures.length > 20)
      lines.push(`    … ${d.failures.length - 20} more (GET /api/v1/rollouts/${d.id}/assignments)`);
  }
  return `${lines.join('\n')}\n`;
}

function oneId(command: Command, positionals: string[]): string {
  const id = positionals[0];
  if (positionals.length !== 1 || !id || !/^[A-Za-z0-9_-]{8,64}$/.test(id))
    throw new ArgusError('give one rollout id', `usage: ${command.usage}; argus rollouts list shows them`);
  return id;
}

const percentOrCount = (value: string, flag: string): { share: number } | { count: number } => {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(value);
  if (!m) throw new ArgusError(`${flag} takes a count (3) or a percentage (20%), got "${value}"`);
  const n = Number(m[1]);
  return m[2] ? { share: n / 100 } : { count: n };
};

/** the rollout request from a --spec file (JSON or YAML) and the flags, the flags winning */
export async function rolloutRequestOf(v: Record<string, string | string[] | boolean | undefined>) {
  const spec: Record<string, unknown> = v.spec
    ? ((parseYaml(await readFile(String(v.spec), 'utf8')) as Record<string, unknown>) ?? {})
    : {};
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const artifact = str('artifact');
  if (artifact) {
    const m = /^(model|scene):([a-z0-9][a-z0-9._-]*):(\d+)$/.exec(artifact);
    if (!m) throw new ArgusError(`--artifact takes kind:name:version (model:detector:3), got "${artifact}"`);
    spec.artifact = { kind: m[1], name: m[2], version: Number(m[3]) };
  }
  const target = { ...((spec.target as object | undefined) ?? {}) } as Record<string, unknown>;
  if (str('devices'))
    target.devices = str('devices')!
      .split(',')
      .map((s) => s.trim());
  const labels = (v.label as string[] | undefined) ?? [];
  if (labels.length > 0)
    target.labels = Object.fromEntries(
      labels.map((l) => {
        const i = l.indexOf('=');
        if (i <= 0) throw new ArgusError(`--label takes name=value, got "${l}"`);
        return [l.slice(0, i), l.slice(i + 1)];
      }),
    );
  if (str('hardware-class')) target.hardwareClass = str('hardware-class');
  spec.target = target;
  const waves = { ...((spec.waves as object | undefined) ?? {}) } as Record<string, unknown>;
  if (str('canary')) {
    const c = percentOrCount(str('canary')!, '--canary');
    waves.canary = 'share' in c ? { percent: c.share * 100 } : { devices: c.count };
  }
  if (str('rate')) {
    const r = str('rate')!;
    const constant = /^constant:(\d*\.?\d+)$/.exec(r);
    const exponential = /^exponential:(\d*\.?\d+)x(\d*\.?\d+)$/.exec(r);
    if (constant) waves.rate = { kind: 'constant', share: Number(constant[1]) };
    else if (exponential)
      waves.rate = { kind: 'exponential', first: Number(exponential[1]), factor: Number(exponential[2]) };
    else
      throw new ArgusError(
        `--rate takes constant:SHARE (constant:0.25) or exponential:FIRSTxFACTOR (exponential:0.1x2), got "${r}"`,
      );
  }
  spec.waves = waves;
  const success = { ...((spec.success as object | undefined) ?? {}) } as Record<string, unknown>;
  if (str('success')) success.share = Number(str('success')!.replace('%', '')) / 100;
  if (str('health-window')) success.healthS = Number(str('health-window'));
  spec.success = success;
  if (str('error')) spec.error = percentOrCount(str('error')!, '--error');
  if (str('on-error')) spec.onError = str('on-error');
  if (str('on-success')) spec.onSuccess = str('on-success');
  if (str('timeout')) spec.deviceTimeoutS = Number(str('timeout'));
  if (str('install-at')) spec.installAt = str('install-at');
  if (str('window')) {
    const m = /^(\d\d:\d\d)-(\d\d:\d\d)$/.exec(str('window')!);
    if (!m)
      throw new ArgusError(`--window takes HH:MM-HH:MM in the device's local time, got "${str('window')}"`);
    spec.maintenance = { start: m[1], end: m[2] };
  }
  if (str('name')) spec.name = str('name');
  if (!spec.name && spec.artifact) {
    const a = spec.artifact as { kind: string; name: string; version: number };
    spec.name = `${a.kind} ${a.name} v${a.version}`;
  }
  if (!spec.artifact)
    throw new ArgusError('give the artifact: --artifact kind:name:version, or artifact in --spec');
  return spec;
}

export const rolloutsCreate: Command = {
  path: ['rollouts', 'create'],
  summary: 'start a rollout of an artifact to a target of devices, in waves',
  usage:
    'argus rollouts create --artifact model:detector:3 (--devices a,b | --label site=north | --hardware-class C) [options]',
  async run(args, ctx) {
    const { values } = parseCommandArgs(this, args, {
      ...API_OPTIONS,
      spec: {
        type: 'string',
        value: 'FILE',
        description: 'the rollout as JSON or YAML (the body of POST /api/v1/rollouts); flags override it',
      },
      artifact: {
        type: 'string',
        value: 'KIND:NAME:VERSION',
        description: 'the registry artifact, e.g. model:detector:3',
      },
      name: { type: 'string', value: 'TEXT', description: 'a name for operators (default: the artifact)' },
      devices: { type: 'string', value: 'IDS', description: 'target: these device ids (comma-separated)' },
      label: {
        type: 'string',
        multiple: true,
        value: 'NAME=VALUE',
        description: 'target: devices with this label',
      },
      'hardware-class': {
        type: 'string',
        value: 'CLASS',
        description: 'target: devices of this hardware class',
      },
      canary: {
        type: 'string',
        value: 'N|X%',
        description: 'the first wave: N devices or X % of the target',
      },
      rate: {
        type: 'string',
        value: 'RATE',
        description:
          'waves after the canary: constant:SHARE or exponential:FIRSTxFACTOR (default constant:1)',
      },
      success: {
        type: 'string',
        value: 'X%',
        description: 'a wave succeeds when X % of it committed (default 100%)',
      },
      'health-window': {
        type: 'string',
        value: 'S',
        description: 'then the control plane watches them S seconds',
      },
      error: {
        type: 'string',
        value: 'K|Y%',
        description: 'a wave fails at K devices or Y % failed/rolled back/timed out (default 20%)',
      },
      'on-error': {
        type: 'string',
        value: 'pause|abort',
        description: 'what a failed wave does (default pause)',
      },
      'on-success': {
        type: 'string',
        value: 'next|pause',
        description: 'what a succeeded wave does (default next)',
      },
      timeout: {
        type: 'string',
        value: 'S',
        description: 'a device not final S seconds after its assignment ends timed-out (default 3600)',
      },
      window: {
        type: 'string',
        value: 'HH:MM-HH:MM',
        description: "maintenance window in the device's local time (label tz)",
      },
      'install-at': {
        type: 'string',
        value: 'TIME',
        description: 'download now, install not before this RFC 3339 time',
      },
    });
    const request = await rolloutRequestOf(values);
    const d = await callApi<RolloutDetail>(values, 'POST', '/api/v1/rollouts', request, ctx.signal);
    ctx.stdout.write(renderRollout(d));
    ctx.stdout.write(`watch it: argus rollouts show ${d.id} --watch\n`);
    return 0;
  },
};

export const rolloutsList: Command = {
  path: ['rollouts', 'list'],
  summary: 'the rollouts, newest first, with device counts per state',
  usage: 'argus rollouts list [--state running|paused|completed|aborted|canceled]',
  async run(args, ctx) {
    const { values } = parseCommandArgs(this, args, {
      ...API_OPTIONS,
      state: { type: 'string', value: 'STATE', description: 'only rollouts in this state' },
    });
    const q = values.state ? `?state=${encodeURIComponent(values.state)}` : '';
    const { rollouts } = await callApi<{ rollouts: RolloutView[] }>(
      values,
      'GET',
      `/api/v1/rollouts${q}`,
      undefined,
      ctx.signal,
    );
    if (rollouts.length === 0) ctx.stdout.write('no rollouts\n');
    for (const r of rollouts)
      ctx.stdout.write(
        `${r.id}  ${r.state.padEnd(9)} ${`${r.artifact.kind} ${r.artifact.name} v${r.artifact.version}`.padEnd(28)} wave ${r.currentWave}  ${countsText(r.counts)}  "${r.name}"\n`,
      );
    return 0;
  },
};

async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

export const rolloutsShow: Command = {
  path: ['rollouts', 'show'],
  summary: "a rollout's waves, device counts per state, failures and KPIs per version; --watch follows it",
  usage: 'argus rollouts show <rollout-id> [--watch [--interval S]]',
  async run(args, ctx: CommandContext) {
    const { values, positionals } = parseCommandArgs(this, args, {
      ...API_OPTIONS,
      watch: { type: 'boolean', description: 'redraw as it changes, until it ends (Ctrl-C stops watching)' },
      interval: { type: 'string', value: 'S', description: 'seconds between redraws (default 2)' },
    });
    const id = oneId(this, positionals);
    const intervalMs = Math.max(0.2, Number(values.interval ?? 2)) * 1000;
    const tty = (ctx.stdout as { isTTY?: boolean }).isTTY === true;
    let last = '';
    for (;;) {
      const d = await callApi<RolloutDetail>(values, 'GET', `/api/v1/rollouts/${id}`, undefined, ctx.signal);
      const text = renderRollout(d);
      if (text !== last) ctx.stdout.write(values.watch && tty ? `\x1b[2J\x1b[H${text}` : text);
      last = text;
      if (!values.watch || FINAL.has(d.state) || ctx.signal.aborted) return 0;
      await sleep(intervalMs, ctx.signal);
      if (ctx.signal.aborted) return 0;
    }
  },
};

const action = (verb: 'pause' | 'resume' | 'cancel', summary: string): Command => ({
  path: ['rollouts', verb],
  summary,
  usage: `argus rollouts ${verb} <rollout-id>${verb === 'cancel' ? ' [--rollback]' : ''}`,
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      ...API_OPTIONS,
      ...(verb === 'cancel'
        ? {
            rollback: {
              type: 'boolean',
              description: 'abort instead: devices that committed get their previous version back',
            } satisfies CommandOption,
          }
        : {}),
    });
    const id = oneId(this, positionals);
    const body = verb === 'cancel' ? { rollback: (values as { rollback?: boolean }).rollback === true } : {};
    const d = await callApi<RolloutDetail>(
      values,
      'POST',
      `/api/v1/rollouts/${id}/${verb}`,
      body,
      ctx.signal,
    );
    ctx.stdout.write(renderRollout(d));
    return 0;
  },
});

export const rolloutsPause = action(
  'pause',
  'pause a rollout: nothing more is sent; what is in progress goes on',
);
export const rolloutsResume = action(
  'resume',
  'resume a paused rollout (after a failed wave: the next wave)',
);
export const rolloutsCancel = action(
  'cancel',
  'end a rollout (--rollback: abort and give committed devices their previous version)',
);

export const devicesLabel: Command = {
  path: ['devices', 'label'],
  summary: "set a device's labels (site, district, tz …) that rollout targets select by",
  usage: 'argus devices label <device-id> [NAME=VALUE …]  (no labels: show them)',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, { ...API_OPTIONS });
    const [device, ...pairs] = positionals;
    if (!device) throw new ArgusError('give a device id', `usage: ${this.usage}`);
    const path = `/api/v1/devices/${encodeURIComponent(device)}/labels`;
    const result =
      pairs.length === 0
        ? await callApi<{ labels: Record<string, string> }>(values, 'GET', path, undefined, ctx.signal)
        : await callApi<{ labels: Record<string, string> }>(
            values,
            'PUT',
            path,
            {
              labels: Object.fromEntries(
                pairs.map((p) => {
                  const i = p.indexOf('=');
                  if (i <= 0) throw new ArgusError(`labels are NAME=VALUE, got "${p}"`);
                  return [p.slice(0, i), p.slice(i + 1)];
                }),
              ),
            },
            ctx.signal,
          );
    const entries = Object.entries(result.labels);
    ctx.stdout.write(
      entries.length === 0
        ? `${device}: no labels\n`
        : `${device}: ${entries.map(([k, v]) => `${k}=${v}`).join(' ')}\n`,
    );
    return 0;
  },
};
