// Builds the console into dist/: index.html (served no-cache) and assets/ with content-hashed names
// (served immutable). One esbuild run bundles the TypeScript (Preact JSX) and the CSS it imports;
// everything comes from npm packages in node_modules, nothing is loaded from elsewhere at run time.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const started = performance.now();

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, 'assets'), { recursive: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: { app: 'src/main.tsx' },
  bundle: true,
  format: 'esm',
  // light-dark() colours (styles.css) need Chrome 123, Firefox 120, Safari 17.5
  target: ['chrome123', 'firefox120', 'safari17.5'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  minify: true,
  sourcemap: 'linked',
  outdir: dist,
  entryNames: 'assets/[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  metafile: true,
  legalComments: 'eof',
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((f) => basename(f));
const script = outputs.find((f) => f.endsWith('.js'));
const style = outputs.find((f) => f.endsWith('.css'));
if (!script || !style) throw new Error(`the build made no script or no stylesheet: ${outputs.join(', ')}`);
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Argus console</title>
<link rel="stylesheet" href="/assets/${style}">
<script type="module" src="/assets/${script}"></script>
</head>
<body>
<noscript>The Argus console needs JavaScript. The REST API is documented at <a href="/docs">/docs</a>.</noscript>
<div id="app"></div>
</body>
</html>
`;
await writeFile(join(dist, 'index.html'), html);
console.log(
  `console built into ${dist} in ${Math.round(performance.now() - started)} ms: ${outputs.join(', ')}`,
);
