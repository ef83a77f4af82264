import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { resolve } from 'node:path';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import { type Command, integerOption, onePositional, parseCommandArgs } from '../command.ts';

/**
 * `argus artifacts publish | list | show`: the control plane's artifact registry over its API, with
 * an operator's API token. The URL and token come from --control-plane / --token or the
 * environment (ARGUS_CONTROL_PLANE, ARGUS_TOKEN); for HTTPS with the fleet's own CA, point
 * NODE_EXTRA_CA_CERTS at its certificate.
 */

const DEFAULT_URL = 'http://127.0.0.1:8080';
/** an answer of the API is a page of metadata; a larger one is not the API's */
const MAX_ANSWER_BYTES = 16 << 20;

const connection = {
  'control-plane': {
    type: 'string',
    value: 'URL',
    description: `the control plane's API (default $ARGUS_CONTROL_PLANE, else ${DEFAULT_URL})`,
  },
  token: {
    type: 'string',
    value: 'TOKEN',
    description: 'an API token of an operator (default $ARGUS_TOKEN); `POST /api/v1/tokens` makes one',
  },
  json: { type: 'boolean', description: 'print the answer as JSON' },
} as const;

interface Connection {
  base: URL;
  token: string;
}

function connectionOf(values: {
  'control-plane'?: string | undefined;
  token?: string | undefined;
}): Connection {
  const url = values['control-plane'] ?? process.env.ARGUS_CONTROL_PLANE ?? DEFAULT_URL;
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new ArgusError(
      `--control-plane "${url}" is not a URL`,
      'e.g. --control-plane https://cp.example:8080',
    );
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new ArgusError(`--control-plane "${url}" is not an http(s) URL`);
  const token = values.token ?? process.env.ARGUS_TOKEN;
  if (!token)
    throw new ArgusError(
      'an API token is needed',
      'pass --token TOKEN or set ARGUS_TOKEN (an operator token, from POST /api/v1/tokens)',
    );
  return { base, token };
}

interface Answer {
  status: number;
  body: unknown;
}

/** one request to the API; `file` streams a file as the body (with its length, so an oversized one is refused at once) */
async function call(
  c: Connection,
  method: string,
  path: string,
  file?: { path: string; bytes: number },
): Promise<Answer> {
  const url = new URL(path, c.base);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<Answer>((resolvePromise, reject) => {
    let answered = false;
    const req = send(
      url,
      {
        method,
        headers: {
          authorization: `Bearer ${c.token}`,
          accept: 'application/json',
          ...(file
            ? { 'content-type': 'application/octet-stream', 'content-length': String(file.bytes) }
            : {}),
        },
      },
      (res: IncomingMessage) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) {
            res.destroy(new Error(`the answer of ${url.origin} is larger than ${MAX_ANSWER_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.once('error', reject);
        res.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            // not JSON: kept as text for the error message
          }
          resolvePromise({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.once('error', (err) => {
      // the server may answer (e.g. 413) and close before the whole file went out
      if (!answered)
        reject(
          new ArgusError(
            `cannot reach the control plane at ${c.base.origin}: ${errorMessage(err)}`,
            'check --control-plane (or ARGUS_CONTROL_PLANE) and that the control plane runs',
          ),
        );
    });
    if (file) {
      const source = createReadStream(file.path);
      source.once('error', (err) => req.destroy(err));
      source.pipe(req);
    } else req.end();
  });
}

function failure(answer: Answer, what: string): ArgusError {
  const body = answer.body as { error?: string; hint?: string; reason?: string } | null;
  if (answer.status === 401)
    return new ArgusError(`${what}: the token was refused (401)`, 'pass a valid API token with --token');
  const message = typeof body === 'object' && body?.error ? body.error : String(answer.body);
  return new ArgusError(
    `${what}: ${answer.status}${body?.reason ? ` ${body.reason}` : ''}: ${message}`,
    body?.hint,
  );
}

interface Summary {
  id: string;
  kind: string;
  name: string;
  version: number;
  bytes: number;
  variant: string;
  keyId: string;
  expires: string;
  publishedAt: string;
  publishedBy: string;
}

function describe(a: Summary): string {
  return [
    `${a.kind} ${a.name} v${a.version} (${a.variant || 'every device'})`,
    `  id: ${a.id}`,
    `  bytes: ${a.bytes}`,
    `  signed by: ${a.keyId}`,
    `  expires: ${a.expires}`,
    `  published: ${a.publishedAt} by ${a.publishedBy}`,
  ].join('\n');
}

export const artifactsPublish: Command = {
  path: ['artifacts', 'publish'],
  summary: "publish a signed model or scene bundle to the control plane's registry",
  usage: 'argus artifacts publish BUNDLE [--control-plane URL] [--token TOKEN] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, connection);
    const file = resolve(onePositional(this, positionals, 'BUNDLE'));
    const c = connectionOf(values);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) throw new ArgusError(`${file} is not a bundle file`, 'give the path of a bundle');
    const answer = await call(c, 'POST', '/api/v1/artifacts', { path: file, bytes: info.size });
    if (answer.status !== 200 && answer.status !== 201) throw failure(answer, `publishing ${file}`);
    const { artifact, created } = answer.body as { artifact: Summary; created: boolean };
    ctx.stdout.write(
      values.json
        ? `${JSON.stringify(answer.body)}\n`
        : `${created ? 'published' : 'already published (unchanged)'}: ${describe(artifact)}\n`,
    );
    return 0;
  },
};

export const artifactsList: Command = {
  path: ['artifacts', 'list'],
  summary: "the control plane's published artifacts, newest first",
  usage:
    'argus artifacts list [--kind model|scene] [--name NAME] [--limit N] [--control-plane URL] [--token TOKEN] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      ...connection,
      kind: { type: 'string', value: 'model|scene', description: 'only artifacts of this kind' },
      name: { type: 'string', value: 'NAME', description: 'only artifacts of this name' },
      limit: { type: 'string', value: 'N', description: 'at most this many (default 100, at most 500)' },
    });
    if (positionals.length > 0) throw new ArgusError('unexpected arguments', `usage: ${this.usage}`);
    const c = connectionOf(values);
    const query = new URLSearchParams();
    if (values.kind) query.set('kind', values.kind);
    if (values.name) query.set('name', values.name);
    query.set('limit', String(integerOption(values.limit, '--limit', 1) ?? 100));
    const answer = await call(c, 'GET', `/api/v1/artifacts?${query}`);
    if (answer.status !== 200) throw failure(answer, 'listing the artifacts');
    const { artifacts } = answer.body as { artifacts: Summary[] };
    if (values.json) ctx.stdout.write(`${JSON.stringify(answer.body)}\n`);
    else if (artifacts.length === 0) ctx.stdout.write('no artifacts\n');
    else
      for (const a of artifacts)
        ctx.stdout.write(
          `${a.id.slice(0, 12)}  ${a.kind.padEnd(5)}  ${`${a.name} v${a.version}`.padEnd(28)}  ${(a.variant || 'every device').padEnd(24)}  ${String(a.bytes).padStart(10)}  ${a.publishedAt}\n`,
        );
    return 0;
  },
};

export const artifactsShow: Command = {
  path: ['artifacts', 'show'],
  summary: "one artifact: its manifest, and a model's targets, lineage and metrics",
  usage: 'argus artifacts show ID [--control-plane URL] [--token TOKEN] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, connection);
    const id = onePositional(this, positionals, 'artifact ID');
    if (!/^[0-9a-f]{64}$/.test(id))
      throw new ArgusError(
        `"${id}" is not an artifact id`,
        'give the full sha256 that `argus artifacts list --json` shows',
      );
    const c = connectionOf(values);
    const answer = await call(c, 'GET', `/api/v1/artifacts/${id}`);
    if (answer.status !== 200) throw failure(answer, `artifact ${id}`);
    const a = answer.body as Summary & {
      targets: { hardwareClass: string; executionProvider: string }[];
      lineage: { steps: { kind: string }[] } | null;
      metrics: Record<string, { map50: number; latencyRatio: number }> | null;
    };
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify(a)}\n`);
      return 0;
    }
    const lines = [describe(a)];
    if (a.targets.length > 0)
      lines.push(
        `  targets: ${a.targets.map((t) => `${t.executionProvider}:${t.hardwareClass}`).join(', ')}`,
      );
    if (a.lineage)
      lines.push(`  lineage: ${a.lineage.steps.map((s) => s.kind).join(' → ') || 'original model'}`);
    for (const [hardwareClass, m] of Object.entries(a.metrics ?? {}))
      lines.push(
        `  metrics ${hardwareClass}: mAP@0.5 ${m.map50.toFixed(3)}, latency ×${m.latencyRatio.toFixed(2)}`,
      );
    ctx.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  },
};
