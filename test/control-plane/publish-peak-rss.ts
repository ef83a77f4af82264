import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { ArtifactRegistry } from '../../control-plane/artifacts/registry.ts';
import { openRepository } from '../../control-plane/index.ts';

/**
 * A child process of artifacts-upload.test.ts: publishes the bundle file argv[2] to a real registry
 * (SQLite, blob store) in argv[3], trusting the keyring argv[4], and prints how much its peak RSS
 * grew while it did (KiB, from the kernel's high-water mark): what the upload cost in memory, with
 * nothing else in the process.
 */
const [file, dir, keyring] = process.argv.slice(2) as [string, string, string];
const repo = await openRepository({
  kind: 'sqlite',
  sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' },
});
const registry = new ArtifactRegistry({
  sql: repo.sql,
  settings: {
    dir: join(dir, 'artifacts'),
    keyring,
    maxUploadBytes: 128 << 20,
    uploadsAtOnce: 1,
    downloadsPerDevice: 1,
    downloads: 1,
  },
});
// warm up what a publication loads (keyring, schema, crypto) on a stream that is not a bundle
await registry.publish(createReadStream(import.meta.filename), 'warm-up').catch(() => undefined);
const before = process.resourceUsage().maxRSS;
const published = await registry.publish(createReadStream(file), 'peak-rss');
const after = process.resourceUsage().maxRSS;
await repo.close();
process.stdout.write(`${JSON.stringify({ grewKiB: after - before, id: published.artifact.id })}\n`);
