import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ts from 'typescript';

/**
 * Imports point down the layers. Each top-level folder has a layer; a module may import modules of
 * its own folder and of folders on a LOWER layer, never of a higher one and never of another folder
 * on the same layer (a sideways import ties two parts together that the layering keeps apart).
 * Worker threads started from a module file (`new URL('./x.ts', import.meta.url)`) count as imports;
 * other files found by URL (package.json, a script to run) are data, not modules.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['common'],
  ['contract'],
  /** the detector runtime: model directories and descriptors, sessions, detectors, NMS, rectangles */
  ['inference'],
  /** video frame sources (they decode into the frames a model takes) */
  ['video'],
  /** the model factory; the edge pipeline */
  ['models', 'pipelines'],
  /** the box's acceptance of signed model and scene bundles; the control plane */
  ['ota', 'control-plane'],
  ['device'],
  ['cli'],
];

/**
 * entry points and harnesses: they may import any layer, and no layer may import them (console/
 * is the browser's code, built and served by the control plane, never imported by it)
 */
const OUTSIDE = ['bin', 'bench', 'test', 'scripts', 'console'];

/** folders with no modules of the product (configs, data, docs) */
const SKIPPED_DIRS = new Set(['node_modules', 'scratch', 'out', 'deploy', 'scenes']);
const SOURCE_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs']);
const MODULE_URL = /new\s+URL\(\s*(['"])(\.{1,2}\/[^'"]+\.[cm]?[jt]s)\1\s*,\s*import\.meta\.url\s*\)/g;

function layerOf(folder: string): number | 'outside' | undefined {
  if (OUTSIDE.includes(folder)) return 'outside';
  const i = LAYERS.findIndex((layer) => layer.includes(folder));
  return i < 0 ? undefined : i;
}

async function sourceFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || SKIPPED_DIRS.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sourceFiles(root, path)));
    else if (entry.isFile() && SOURCE_EXTENSIONS.has(extname(entry.name)) && !entry.name.endsWith('.d.ts'))
      out.push(path);
  }
  return out;
}

/** the relative specifiers a module loads: static and dynamic imports, re-exports, worker URLs */
function relativeImports(text: string): string[] {
  const found = ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
  for (const m of text.matchAll(MODULE_URL)) found.push(m[2]!);
  return found.filter((s) => s.startsWith('./') || s.startsWith('../'));
}

function topFolder(root: string, path: string): string | undefined {
  const rel = relative(root, path);
  if (rel.startsWith('..')) return undefined;
  const parts = rel.split(sep);
  return parts.length > 1 ? parts[0] : undefined;
}

/** every import in the tree at `root` that breaks the layering, as "file: problem" lines */
async function layerViolations(root: string): Promise<string[]> {
  const problems: string[] = [];
  for (const file of await sourceFiles(root)) {
    const from = topFolder(root, file);
    const name = relative(root, file);
    if (from === undefined) {
      problems.push(`${name}: a module at the top of the repository has no layer; put it in a folder`);
      continue;
    }
    const fromLayer = layerOf(from);
    if (fromLayer === undefined) {
      problems.push(`${name}: folder ${from}/ has no layer; add it to LAYERS (or OUTSIDE) in this test`);
      continue;
    }
    for (const spec of relativeImports(await readFile(file, 'utf8'))) {
      const target = resolve(dirname(file), spec);
      const to = topFolder(root, target);
      if (to === from) continue;
      const where = `${name} imports ${spec}`;
      if (to === undefined) {
        problems.push(`${where}, outside every layer`);
        continue;
      }
      const toLayer = layerOf(to);
      if (toLayer === undefined) problems.push(`${where}: folder ${to}/ has no layer`);
      else if (fromLayer === 'outside') continue;
      else if (toLayer === 'outside') problems.push(`${where}: ${to}/ is an entry point, not a layer`);
      else if (toLayer > fromLayer) problems.push(`${where}: up the layers (${from} → ${to})`);
      else if (toLayer === fromLayer) problems.push(`${where}: sideways (${from} and ${to} share a layer)`);
    }
  }
  return problems;
}

describe('layers', () => {
  it('no module of the repository imports up or sideways', async () => {
    const root = resolve(import.meta.dirname, '..');
    const problems = await layerViolations(root);
    assert.deepEqual(problems, [], `imports that break the layers:\n  ${problems.join('\n  ')}`);
  });

  describe('the check itself', () => {
    let root: string;
    const files: Record<string, string> = {
      'common/errors.ts': 'export class E extends Error {}\n',
      'inference/detector.ts':
        "import { E } from '../common/errors.ts';\nnew URL('./thread.ts', import.meta.url);\nnew URL('../package.json', import.meta.url);\nnew URL('../device/worker.ts', import.meta.url);\nexport const d = E;\n",
      'device/worker.ts': '',
      'inference/thread.ts': "import type { X } from '../models/store.ts';\n",
      'models/store.ts':
        "import { d } from '../inference/detector.ts';\nexport { s } from '../pipelines/scene.ts';\nexport type X = typeof d;\n",
      'models/evaluate.ts': "const v = await import('../video/source.ts');\n// import '../cli/x.ts'\n",
      'pipelines/scene.ts': "import '../test/helper.ts';\nexport const s = 1;\n",
      'video/source.ts': "import { URL as U } from 'node:url';\nimport { x } from '../nowhere/x.ts';\n",
      'test/helper.ts': "import { s } from '../cli/main.ts';\nimport { E } from '../common/errors.ts';\n",
      'cli/main.ts': "import { d } from '../inference/detector.ts';\nexport const s = 'ok';\n",
      'loose.ts': '',
    };

    before(async () => {
      root = await mkdtemp(join(tmpdir(), 'argus-layers-'));
      for (const [path, text] of Object.entries(files)) {
        await mkdir(dirname(join(root, path)), { recursive: true });
        await writeFile(join(root, path), text);
      }
      await mkdir(join(root, 'node_modules', 'pkg'), { recursive: true });
      await writeFile(join(root, 'node_modules', 'pkg', 'index.js'), "import '../../cli/main.ts';\n");
    });
    after(() => rm(root, { recursive: true, force: true }));

    it('names every import up, sideways, into an entry point or an unknown folder, and nothing else', async () => {
      const problems = await layerViolations(root);
      assert.deepEqual(problems.sort(), [
        'inference/detector.ts imports ../device/worker.ts: up the layers (inference → device)',
        'inference/thread.ts imports ../models/store.ts: up the layers (inference → models)',
        'loose.ts: a module at the top of the repository has no layer; put it in a folder',
        'models/store.ts imports ../pipelines/scene.ts: sideways (models and pipelines share a layer)',
        'pipelines/scene.ts imports ../test/helper.ts: test/ is an entry point, not a layer',
        'video/source.ts imports ../nowhere/x.ts: folder nowhere/ has no layer',
      ]);
    });
  });
});
