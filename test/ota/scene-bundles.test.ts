import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { packEntries, readBundleFile } from '../../models/bundle/container.ts';
import { installBundle } from '../../models/bundle/install.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { MANIFEST_FILE, parseManifest, SIGNATURE_FILE } from '../../models/bundle/manifest.ts';
import { BundleRejected, type RejectionReason } from '../../models/bundle/rejection.ts';
import { signBundle } from '../../models/bundle/sign.ts';
import { verifyBundle } from '../../models/bundle/verify.ts';
import { buildSceneBundle, SCENE_FILE } from '../../ota/scene-bundle.ts';
import { loadScene } from '../../pipelines/scene/load.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const CAMPUS = join(ROOT, 'scenes', 'vtest-campus.yaml');
const ARGUS = join(ROOT, 'bin', 'argus.mjs');

describe('scene bundles', () => {
  let dir: string;
  let key: SigningKey;
  let keyring: string;
  let installedDir: string;
  const path = (name: string) => join(dir, name);

  async function build(name: string, version: number, sign: SigningKey | false = key): Promise<string> {
    const out = path(name);
    await buildSceneBundle({
      sceneFile: CAMPUS,
      out,
      version,
      expiresInDays: 30,
      ...(sign ? { signWith: sign } : {}),
    });
    return out;
  }

  async function rejected(bundle: string, reason: RejectionReason, pattern: RegExp, dirOverride?: string) {
    await assert.rejects(
      verifyBundle(bundle, { keyring, installedDir: dirOverride ?? installedDir }),
      (err: unknown) => {
        assert.ok(err instanceof BundleRejected, `not a BundleRejected: ${err}`);
        assert.equal(err.reason, reason, err.message);
        assert.match(err.message, pattern);
        return true;
      },
    );
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-scene-bundles-'));
    await generateSigningKey('factory', path('keys'));
    key = await loadSigningKey('factory', path('keys'));
    keyring = path('keys/trusted');
    installedDir = path('scenes');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('builds a signed scene bundle whose manifest (kind scene) names the scene file, classes and rules', async () => {
    const bundle = await build('campus-v1.argus-scene', 1);
    const entries = await readBundleFile(bundle);
    assert.deepEqual([...entries.keys()], [MANIFEST_FILE, SIGNATURE_FILE, SCENE_FILE]);
    assert.equal(Buffer.from(entries.get(SCENE_FILE)!).toString('utf8'), await readFile(CAMPUS, 'utf8'));
    const manifest = parseManifest(entries.get(MANIFEST_FILE)!, 'manifest');
    assert.ok(manifest.kind === 'scene');
    assert.equal(manifest.name, 'campus-road');
    assert.equal(manifest.version, 1);
    assert.deepEqual(manifest.scene.classes, ['person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck']);
    const scene = await loadScene(CAMPUS);
    assert.deepEqual(
      manifest.scene.rules,
      scene.rules.map((r) => ({ id: r.id, type: r.type })),
    );
    const verified = await verifyBundle(bundle, { keyring, installedDir });
    assert.equal(verified.signature.keyId, key.keyId);
    assert.equal(verified.installedVersion, undefined);
  });

  it('signs an unsigned scene bundle afterwards with the same signing step as a model', async () => {
    const bundle = await build('unsigned.argus-scene', 1, false);
    await rejected(bundle, 'unsigned', /is not signed/);
    await signBundle(bundle, key);
    assert.equal((await verifyBundle(bundle, { keyring, installedDir })).manifest.kind, 'scene');
  });

  it('refuses a scene changed after signing, and one whose manifest was changed', async () => {
    const good = await readBundleFile(await build('good.argus-scene', 1));
    const repack = async (name: string, entry: string, change: (text: string) => string) => {
      const out = path(name);
      const entries = [...good].map(([n, data]) => ({
        name: n,
        data: n === entry ? Buffer.from(change(Buffer.from(data).toString('utf8'))) : data,
      }));
      await writeFile(out, packEntries(entries));
      return out;
    };
    // the counting line moved by someone without the key
    const moved = await repack('moved-line.argus-scene', SCENE_FILE, (t) =>
      t.replace('line: [[0.25, 0.28], [0.25, 0.50]]', 'line: [[0.35, 0.28], [0.35, 0.50]]'),
    );
    await rejected(moved, 'tampered-file', /scene\.yaml does not match the manifest/);
    const renamed = await repack('renamed.argus-scene', MANIFEST_FILE, (t) =>
      t.replace('"version": 1', '"version": 9'),
    );
    await rejected(renamed, 'tampered-manifest', /manifest does not match its signature/);
  });

  it('installs a verified scene, which loads; the installed version then refuses an equal one', async () => {
    const bundle = await build('campus-v2.argus-scene', 2);
    const installed = await installBundle(bundle, { keyring, installedDir });
    assert.equal(installed.dir, join(installedDir, 'campus-road'));
    const scene = await loadScene(join(installed.dir, SCENE_FILE));
    assert.equal(scene.name, 'campus-road');
    await rejected(bundle, 'not-newer', /campus-road v2, which is not newer than the installed v2/);
    assert.equal(
      (await verifyBundle(await build('campus-v3.argus-scene', 3), { keyring, installedDir }))
        .installedVersion,
      2,
    );
  });

  it('refuses a scene bundle when the installed scene’s version cannot be read', async () => {
    const broken = path('broken-scenes');
    await mkdir(join(broken, 'campus-road'), { recursive: true });
    await writeFile(join(broken, 'campus-road', MANIFEST_FILE), '{"kind": "scene", "version": "two"}');
    await rejected(
      await build('campus-v4.argus-scene', 4),
      'installed-unreadable',
      /installed scene campus-road in .*broken-scenes\/campus-road has no readable version/,
      broken,
    );
  });

  it('builds no bundle of an invalid scene, and says what is wrong in it', async () => {
    const bad = path('crossed.yaml');
    await writeFile(
      bad,
      (await readFile(CAMPUS, 'utf8')).replace(
        'polygon: [[0.0, 0.30], [0.45, 0.30], [0.45, 0.56], [0.0, 0.50]]',
        'polygon: [[0.0, 0.30], [0.45, 0.56], [0.45, 0.30], [0.0, 0.50]]',
      ),
    );
    await assert.rejects(
      buildSceneBundle({ sceneFile: bad, out: path('crossed.argus-scene'), version: 1, expiresInDays: 1 }),
      /scene .*crossed\.yaml is invalid:\n.*the polygon crosses itself/,
    );
    await assert.rejects(readFile(path('crossed.argus-scene')), { code: 'ENOENT' });
  });

  describe('from the command line: argus models build --kind scene, sign, verify, inspect, install', () => {
    let env: NodeJS.ProcessEnv;
    function argus(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
      return new Promise((done) => {
        execFile(process.execPath, [ARGUS, ...args], { env, cwd: dir }, (err, stdout, stderr) => {
          done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
        });
      });
    }
    async function ok(...args: string[]): Promise<string> {
      const r = await argus(...args);
      assert.equal(r.code, 0, `argus ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
      return r.stdout;
    }

    before(() => {
      env = { ...process.env, ARGUS_KEYS_DIR: path('keys'), ARGUS_LOG_LEVEL: 'warn', ARGUS_PROGRESS: 'off' };
    });

    it('builds, signs, verifies, inspects and installs a scene bundle', async () => {
      const built = await ok('models', 'build', CAMPUS, '--kind', 'scene', '--version', '7');
      const bundle = path('vtest-campus-v7.argus-scene');
      assert.match(built, /built .*vtest-campus-v7\.argus-scene: scene campus-road v7, 1 file, .*unsigned/);
      const unsigned = await argus('models', 'verify', bundle, '--installed', path('cli-scenes'));
      assert.notEqual(unsigned.code, 0);
      assert.match(unsigned.stderr, /is not signed/);
      assert.match(await ok('models', 'sign', bundle, '--key', 'factory'), /signed .* with key [0-9a-f]{16}/);
      assert.match(
        await ok('models', 'verify', bundle, '--installed', path('cli-scenes')),
        /^ok: scene campus-road v7 signed by [0-9a-f]{16}, 1 file intact, .*installed none/m,
      );
      const inspected = await ok('models', 'inspect', bundle, '--installed', path('cli-scenes'));
      assert.match(inspected, /^scene campus-road v7 /m);
      assert.match(inspected, /rules \(4\): road-crossing \(line\), left-road \(zone\)/);
      assert.match(inspected, /status: verified/);
      assert.match(
        await ok('models', 'install', bundle, '--installed', path('cli-scenes')),
        /installed scene campus-road v7 in .*cli-scenes\/campus-road/,
      );
      const again = await argus('models', 'verify', bundle, '--installed', path('cli-scenes'));
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /not newer than the installed v7/);
    });

    it('refuses the options of model bundles for a scene, and an unknown kind', async () => {
      const r = await argus(
        'models',
        'build',
        CAMPUS,
        '--kind',
        'scene',
        '--version',
        '1',
        '--target',
        'cpu:x',
      );
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /--target is for model bundles only/);
      const k = await argus('models', 'build', CAMPUS, '--kind', 'firmware', '--version', '1');
      assert.notEqual(k.code, 0);
      assert.match(k.stderr, /--kind "firmware" is not a bundle kind/);
    });
  });
});
