// Bundles the installed typebox into a few ES modules (run by the bootstrap after npm installs).
//
// typebox 1.x ships 683 small ES modules. Every Argus process runs TypeScript through tsx, whose
// loader hooks run on a separate thread in Node 20: each module resolved and loaded costs a round
// trip to it, and typebox alone added 1.5-3.5 s to the start of every process (a CLI command, a
// device agent, each test file). Bundled with esbuild (entry points = the package's exports,
// shared code split into common chunks, so `typebox` and `typebox/compile` still share one
// instance), it loads in a fraction of that. The code is typebox's own, unchanged; its type
// declarations stay where they are. Idempotent: a bundle that matches the installed version is
// left as it is.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'node_modules', 'typebox');
const manifestFile = join(dir, 'package.json');
const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
const BUNDLE_DIR = 'bundle';
const MARK = 'argusBundled';

if (manifest[MARK] === manifest.version) process.exit(0);

/** "." → index, "./compile" → compile; the original file of each export */
const entries = Object.entries(manifest.exports).map(([key, target]) => {
  const file = typeof target === 'string' ? target : (target.import ?? target.default);
  if (typeof file !== 'string' || !file.endsWith('.mjs'))
    throw new Error(
      `typebox ${manifest.version}: export ${key} is not an .mjs file; update scripts/bundle-typebox.mjs`,
    );
  return { key, name: key === '.' ? 'index' : key.slice(2), file };
});

rmSync(join(dir, BUNDLE_DIR), { recursive: true, force: true });
await build({
  entryPoints: Object.fromEntries(entries.map((e) => [e.name, join(dir, e.file)])),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir: join(dir, BUNDLE_DIR),
  outExtension: { '.js': '.mjs' },
  logLevel: 'warning',
});

for (const { key, name, file } of entries) {
  const bundled = `./${BUNDLE_DIR}/${name}.mjs`;
  manifest.exports[key] = { types: file.replace(/\.mjs$/, '.d.mts'), import: bundled, default: bundled };
}
manifest.module = './bundle/index.mjs';
manifest[MARK] = manifest.version;
writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
console.log(`bootstrap: typebox ${manifest.version} bundled into ${entries.length} entry modules`);
