import { resolve } from 'node:path';
import { build } from 'esbuild';
import { ArgusError, errorMessage } from '../../common/errors.ts';

/** the player's page script (console/src/live/page.ts), bundled with its npm packages */
const PAGE_ENTRY = resolve(import.meta.dirname, '../../console/src/live/page.ts');

let bundle: Promise<string> | undefined;

/**
 * The live player as one browser script, built from its TypeScript source and npm packages
 * (JSMpeg) once per process when first asked for, kept in memory: nothing is loaded from
 * elsewhere at run time.
 */
export function playerBundle(): Promise<string> {
  bundle ??= build({
    entryPoints: [PAGE_ENTRY],
    bundle: true,
    format: 'esm',
    target: 'es2020',
    minify: true,
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
  }).then(
    (out) => out.outputFiles[0]!.text,
    (err) => {
      bundle = undefined;
      throw new ArgusError(`the live player cannot be built: ${errorMessage(err)}`, 'run npm install');
    },
  );
  return bundle;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** the page of one camera's live view; the ids are already checked against their patterns */
export function livePageHtml(device: string, camera: string, format: string): string {
  const d = escapeHtml(device);
  const c = escapeHtml(camera);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>Live: ${d} / ${c} — Argus</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 0; padding: 1rem; background: Canvas; color: CanvasText; }
  h1 { font-size: 1.2rem; margin: 0 0 .5rem; }
  main { max-width: 60rem; margin: auto; }
</style>
</head>
<body>
<main>
<h1>Live view: ${d} / ${c}</h1>
<div id="live" data-device="${d}" data-camera="${c}" data-format="${escapeHtml(format)}"></div>
<p><a href="?format=auto">automatic</a> · <a href="?format=fmp4">H.264 (MSE)</a> · <a href="?format=mpeg1">MPEG-1 (JSMpeg)</a></p>
</main>
<script type="module" src="/live/player.js"></script>
</body>
</html>
`;
}
