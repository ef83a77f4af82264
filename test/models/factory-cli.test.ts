import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureCatalogModels } from '../helpers/models.ts';

const ARGUS = join(import.meta.dirname, '..', '..', 'bin', 'argus.mjs');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('argus models / argus keys: the factory from the command line', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;

  /** runs `argus ARGS`, resolving with its exit code and output (a non-zero exit is not an error here) */
  function argus(...args: string[]): Promise<Result> {
    return new Promise((resolve) => {
      execFile(process.execPath, [ARGUS, ...args], { env }, (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? null) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  async function ok(...args: string[]): Promise<string> {
    const r = await argus(...args);
    assert.equal(r.code, 0, `argus ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
    return r.stdout;
  }

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-factory-cli-'));
    env = {
      ...process.env,
      ARGUS_KEYS_DIR: join(dir, 'keys'),
      ARGUS_LOG_LEVEL: 'warn',
      ARGUS_PROGRESS: 'off',
    };
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('generates a key, lists the keyring and trusts a public key into another', async () => {
    const generated = await ok('keys', 'generate', 'factory');
    const id = /^key ([0-9a-f]{16})$/m.exec(generated)?.[1];
    assert.ok(id, generated);
    assert.match(await ok('keys', 'list'), new RegExp(`^${id}  `, 'm'));
    const device = join(dir, 'device-keyring');
    assert.match(await ok('keys', 'list', '--keyring', device), /no trusted keys/);
    await ok('keys', 'trust', join(dir, 'keys', 'signing', 'factory.pub'), '--keyring', device);
    assert.match(await ok('keys', 'list', '--keyring', device), new RegExp(`^${id}  `, 'm'));
    const again = await argus('keys', 'generate', 'factory');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
  });

  it('quantizes, evaluates, builds, signs, verifies, inspects and installs', async () => {
    const config = join(dir, 'quantize.yaml');
    await writeFile(config, 'calibrationFrames: 10-370/60\nactivations:\n  calibration: minmax\n');
    const gate = join(dir, 'gate.yaml');
    // the machine is shared while tests run: latency is measured and reported, agreement is gated
    await writeFile(gate, 'minMap50: 0.97\nmaxLatencyRatio: 10\n');
    const model = join(dir, 'nanodet-int8');
    assert.match(
      await ok('models', 'quantize', 'nanodet', '--config', config, '--out', model),
      /→ nanodet-int8/,
    );

    const evaluated = JSON.parse(
      await ok(
        'models',
        'evaluate',
        model,
        '--frames',
        '405-765/60',
        '--runs',
        '2',
        '--gate',
        gate,
        '--json',
      ),
    );
    assert.equal(evaluated.gate.passed, true, evaluated.gate.failures.join('; '));
    assert.ok(evaluated.map50 >= 0.97);

    const bundle = join(dir, 'street.argus-model');
    const built = await ok(
      'models',
      'build',
      model,
      '--version',
      '4',
      '--name',
      'street',
      '--gate',
      gate,
      '--out',
      bundle,
    );
    assert.match(built, /street v4, 2 files, .*unsigned/);
    const installed = join(dir, 'installed');
    const unsigned = await argus('models', 'verify', bundle, '--installed', installed);
    assert.equal(unsigned.code, 1);
    assert.match(unsigned.stderr, /is not signed/);

    assert.match(await ok('models', 'sign', bundle, '--key', 'factory'), /signed .* with key [0-9a-f]{16}/);
    assert.match(
      await ok('models', 'verify', bundle, '--installed', installed),
      /^ok: model street v4 signed by [0-9a-f]{16}, 2 files intact, .*installed none$/m,
    );
    const inspected = JSON.parse(await ok('models', 'inspect', bundle, '--installed', installed, '--json'));
    assert.match(inspected.status, /^verified/);
    assert.deepEqual(
      inspected.manifest.lineage.steps.map((s: { kind: string }) => s.kind),
      ['quantize'],
    );
    assert.equal(Object.values(inspected.manifest.metrics).length, 1);

    assert.match(
      await ok('models', 'install', bundle, '--installed', installed),
      /installed model street v4/,
    );
    const again = await argus('models', 'verify', bundle, '--installed', installed);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not newer than the installed v4/);
  });

  it('leaves no partial files when quantization is interrupted (Ctrl-C)', async () => {
    const out = join(dir, 'interrupted', 'nanodet-int8');
    const child: ChildProcess = spawn(
      process.execPath,
      [ARGUS, 'models', 'quantize', 'nanodet', '--out', out],
      {
        env: { ...env, ARGUS_PROGRESS: 'plain' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    const calibrating = new Promise<void>((resolve) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('calibrating')) resolve();
      });
    });
    const exited = once(child, 'exit');
    await Promise.race([calibrating, exited]);
    child.kill('SIGINT');
    const [code] = await exited;
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted/);
    const left = await readdir(join(dir, 'interrupted')).catch(() => [] as string[]);
    assert.deepEqual(left, []);
  });
});
