import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const PRELOAD = './test/helpers/assert-messages.mjs';

/**
 * A TypeScript file of the shape that made node 20 loop for ever on a failing message-less
 * `assert.ok` under tsx (see test/helpers/assert-messages.mjs): the call site's column in tsx's
 * one-line output plus 2,500 bytes lies inside the file, and no expression parses there.
 */
function hangingFile(): string {
  const lines = ["import assert from 'node:assert/strict';"];
  for (let i = 0; i < 60; i++)
    lines.push(`function f${i}(a: string, b: { n: number }): number { return a.length + b.n; }`);
  lines.push(
    `const total: number = ${Array.from({ length: 60 }, (_, i) => `f${i}('x', { n: ${i} })`).join(' + ')};`,
  );
  lines.push('assert.ok(total < 0);');
  lines.push(`// ${'padding past the call site, which node reads 2,500 bytes beyond '.repeat(80)}`);
  return `${lines.join('\n')}\n`;
}

/** runs `file` as the test runner does (tsx, then the preload); killed after `ms` */
function run(file: string, ms: number): Promise<{ code: number | null; stderr: string; killed: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--import', PRELOAD, file], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, ms);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, killed });
    });
  });
}

async function testFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await testFiles(path)));
    else if (entry.name.endsWith('.ts')) files.push(path);
  }
  return files;
}

describe('assert.ok without a message (node 20 under tsx)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-assert-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fails at once with a message in the test runner, instead of blocking the event loop', () => {
    // this file runs under scripts/run-tests.sh, which loads the preload
    assert.throws(() => assert.ok(0), /expected a truthy value, got 0/);
    assert.throws(() => assert.ok(''), /expected a truthy value, got ''/);
    assert.throws(() => assert.ok(false, 'its own message'), /^AssertionError.*its own message/s);
    assert.doesNotThrow(() => assert.ok(1));
  });

  it('reports a failing assert.ok of a file that made node loop for ever, with its source line', async () => {
    const file = join(dir, 'hang.mts');
    await writeFile(file, hangingFile());
    // without the preload this child never ends (node 20.20: it loops in findColumn); a minute is
    // far beyond the ~1 s it takes
    const { code, stderr, killed } = await run(file, 60_000);
    assert.equal(killed, false, 'the child ended');
    assert.equal(code, 1);
    assert.match(stderr, /expected a truthy value, got false/);
    assert.match(stderr, /hang\.mts:\d+:\d+/);
  });

  it('every way tests and fuzzers are run loads the preload, and no test calls the assert function bare', async () => {
    const runner = await readFile(join(root, 'scripts/run-tests.sh'), 'utf8');
    assert.match(runner, /--import tsx --import \.\/test\/helpers\/assert-messages\.mjs/);
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.match(pkg.scripts.fuzz ?? '', /--import \.\/test\/helpers\/assert-messages\.mjs/);
    // the module's own function (assert called bare) cannot be replaced by the preload: use assert.ok
    const bare: string[] = [];
    for (const path of await testFiles(join(root, 'test')))
      for (const [n, line] of (await readFile(path, 'utf8')).split('\n').entries())
        if (/(^|[^.\w])assert\(/.test(line)) bare.push(`${path}:${n + 1}`);
    assert.deepEqual(bare, [], 'calls of the assert function itself');
  });
});
