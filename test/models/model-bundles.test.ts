import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import { buildBundle } from '../../models/bundle/build.ts';
import { packEntries, readBundleFile } from '../../models/bundle/container.ts';
import { installBundle } from '../../models/bundle/install.ts';
import {
  generateSigningKey,
  loadKeyring,
  loadSigningKey,
  type SigningKey,
} from '../../models/bundle/keys.ts';
import { readLineage } from '../../models/bundle/lineage.ts';
import { MANIFEST_FILE, parseManifest, SIGNATURE_FILE } from '../../models/bundle/manifest.ts';
import { BundleRejected, type RejectionReason } from '../../models/bundle/rejection.ts';
import { signBundle } from '../../models/bundle/sign.ts';
import { verifyBundle } from '../../models/bundle/verify.ts';
import { DEFAULT_GATE } from '../../models/evaluate/gate.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const DAY = 86_400_000;

describe('signed model bundles', () => {
  let dir: string;
  let model: LoadedModel;
  let key: SigningKey;
  let stranger: SigningKey;
  let keyring: string;
  let installedDir: string;
  /** every rejection message seen, by reason */
  const messages = new Map<RejectionReason, string>();

  const path = (name: string) => join(dir, name);

  /** a bundle of the fp32 NanoDet-g as model "street" */
  async function build(
    name: string,
    options: { version?: number; sign?: SigningKey | false; now?: Date; expiresInDays?: number } = {},
  ): Promise<string> {
    const out = path(name);
    await buildBundle({
      modelDir: model.dir,
      out,
      name: 'street',
      version: options.version ?? 2,
      evaluations: [],
      gate: DEFAULT_GATE,
      targets: [{ executionProvider: 'cpu', hardwareClass: 'x86_64-avx2' }],
      expiresInDays: options.expiresInDays ?? 30,
      ...(options.sign === false ? {} : { signWith: options.sign ?? key }),
      ...(options.now ? { now: options.now } : {}),
    });
    return out;
  }

  /** rewrites one entry of a bundle, keeping every other byte (and the signature) as it was */
  async function tamper(source: string, name: string, entry: string, change: (data: Buffer) => Buffer) {
    const entries = await readBundleFile(source);
    const out = path(name);
    await writeFile(
      out,
      packEntries(
        [...entries].map(([n, data]) => ({ name: n, data: n === entry ? change(Buffer.from(data)) : data })),
      ),
    );
    return out;
  }

  async function rejection(bundle: string, reason: RejectionReason, pattern: RegExp): Promise<void> {
    await assert.rejects(verifyBundle(bundle, { keyring, installedDir }), (err: unknown) => {
      assert.ok(err instanceof BundleRejected, `not a BundleRejected: ${err}`);
      assert.equal(err.reason, reason, err.message);
      assert.match(err.message, pattern);
      assert.ok(err.hint, 'the rejection says what to do');
      messages.set(reason, err.message.replaceAll(bundle, 'BUNDLE'));
      return true;
    });
  }

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-bundles-'));
    model = await loadModel('nanodet');
    const keys = path('keys');
    await generateSigningKey('factory', keys);
    key = await loadSigningKey('factory', keys);
    await generateSigningKey('stranger', path('other-keys'));
    stranger = await loadSigningKey(path('other-keys/signing/stranger.key'));
    keyring = join(keys, 'trusted');
    installedDir = path('installed');
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds a manifest with lineage, targets, descriptor, labels, file hashes and expiry', async () => {
    const now = new Date('2026-01-01T00:00:00Z');
    const bundle = await build('manifest.argus-model', { now, expiresInDays: 10 });
    const entries = await readBundleFile(bundle);
    const manifest = parseManifest(entries.get(MANIFEST_FILE)!, 'manifest');
    assert.ok(manifest.kind === 'model');
    assert.equal(manifest.name, 'street');
    assert.equal(manifest.version, 2);
    assert.equal(manifest.expires, new Date(now.getTime() + 10 * DAY).toISOString());
    assert.deepEqual(manifest.lineage, await readLineage(model.dir));
    assert.deepEqual(manifest.targets, [{ executionProvider: 'cpu', hardwareClass: 'x86_64-avx2' }]);
    assert.deepEqual(manifest.labels, model.descriptor.labels);
    assert.equal(manifest.descriptor.sha256, model.descriptor.sha256);
    assert.deepEqual(
      manifest.files.map((f) => f.path),
      ['model.onnx', 'descriptor.json'],
    );
    assert.deepEqual(entries.get('model.onnx'), model.bytes);
    assert.ok(entries.has(SIGNATURE_FILE));
  });

  it('verifies and installs a signed bundle; the installed model loads', async () => {
    const bundle = await build('v2.argus-model');
    const verified = await verifyBundle(bundle, { keyring, installedDir });
    assert.equal(verified.signature.keyId, key.keyId);
    assert.equal(verified.installedVersion, undefined);
    const installed = await installBundle(bundle, { keyring, installedDir });
    const loaded = await loadModel(installed.dir);
    assert.equal(loaded.descriptor.name, 'street');
    assert.equal(loaded.descriptor.version, 2);
    assert.deepEqual(loaded.bytes, model.bytes);
    assert.deepEqual(
      JSON.parse(await readFile(join(installed.dir, MANIFEST_FILE), 'utf8')),
      installed.manifest,
    );
  });

  it('refuses an unsigned bundle', async () => {
    await rejection(
      await build('unsigned.argus-model', { version: 3, sign: false }),
      'unsigned',
      /not signed/,
    );
  });

  it('signs an unsigned bundle afterwards, which then verifies', async () => {
    const bundle = await build('later.argus-model', { version: 3, sign: false });
    await signBundle(bundle, key);
    assert.equal((await verifyBundle(bundle, { keyring, installedDir })).manifest.version, 3);
  });

  it('refuses a bundle whose model file was altered', async () => {
    const good = await build('v3.argus-model', { version: 3 });
    const bad = await tamper(good, 'tampered-file.argus-model', 'model.onnx', (data) => {
      data[data.length - 100] = data[data.length - 100]! ^ 0x01;
      return data;
    });
    await rejection(bad, 'tampered-file', /model\.onnx does not match the manifest/);
  });

  it('refuses a bundle whose manifest was altered after signing', async () => {
    const good = await build('v3b.argus-model', { version: 3 });
    const bad = await tamper(good, 'tampered-manifest.argus-model', MANIFEST_FILE, (data) =>
      Buffer.from(data.toString('utf8').replace('"version": 3', '"version": 30')),
    );
    await rejection(bad, 'tampered-manifest', /manifest does not match its signature/);
  });

  it('refuses a bundle signed by a key not in the keyring', async () => {
    const bundle = await build('stranger.argus-model', { version: 3, sign: stranger });
    await rejection(
      bundle,
      'unknown-key',
      new RegExp(`signed by key ${stranger.keyId}, which is not in the keyring`),
    );
  });

  it('refuses an expired bundle', async () => {
    const bundle = await build('expired.argus-model', {
      version: 3,
      now: new Date(Date.now() - 40 * DAY),
      expiresInDays: 30,
    });
    await rejection(bundle, 'expired', /expired on .*, 10 day\(s\) ago/);
  });

  it('refuses a version not newer than the installed one', async () => {
    await rejection(
      path('v2.argus-model'),
      'not-newer',
      /street v2, which is not newer than the installed v2/,
    );
    await rejection(
      await build('v1.argus-model', { version: 1 }),
      'not-newer',
      /street v1, which is not newer than the installed v2/,
    );
  });

  it('refuses a bundle when the installed version cannot be read, and accepts it once nothing is installed', async () => {
    const bundle = await build('v5.argus-model', { version: 5 });
    const broken = path('installed-broken');
    // a descriptor that cannot be read (a directory where the file should be; root reads any mode)
    await mkdir(join(broken, 'street', 'descriptor.json'), { recursive: true });
    await assert.rejects(verifyBundle(bundle, { keyring, installedDir: broken }), (err: unknown) => {
      assert.ok(err instanceof BundleRejected);
      assert.equal(err.reason, 'installed-unreadable');
      assert.match(
        err.message,
        /installed model street in .*installed-broken\/street has no readable version/,
      );
      messages.set(err.reason, err.message);
      return true;
    });
    // a descriptor that is not one
    await rm(join(broken, 'street', 'descriptor.json'), { recursive: true });
    await writeFile(join(broken, 'street', 'descriptor.json'), '{"version": ');
    await assert.rejects(verifyBundle(bundle, { keyring, installedDir: broken }), /has no readable version/);
    // no descriptor in an installed model's directory
    await rm(join(broken, 'street', 'descriptor.json'));
    await assert.rejects(verifyBundle(bundle, { keyring, installedDir: broken }), /has no readable version/);
    // nothing installed under the name: nothing to compare with
    await rm(join(broken, 'street'), { recursive: true });
    assert.equal((await verifyBundle(bundle, { keyring, installedDir: broken })).installedVersion, undefined);
  });

  it('reports an unreadable or malformed key file of the keyring and still trusts the other keys', async () => {
    const ring = path('mixed-keyring');
    await cp(keyring, ring, { recursive: true });
    const corrupt = join(ring, '0000000000000000.pub');
    await writeFile(corrupt, '-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n');
    const notAKey = join(ring, 'directory.pub');
    await mkdir(notAKey);
    const bundle = await build('v6.argus-model', { version: 6 });
    const verified = await verifyBundle(bundle, { keyring: ring, installedDir });
    assert.equal(verified.signature.keyId, key.keyId);
    assert.deepEqual(
      verified.unreadableKeys.map((k) => k.file),
      [corrupt, notAKey],
    );
    assert.match(verified.unreadableKeys[0]!.problem, /is not a public key/);
    assert.match(verified.unreadableKeys[1]!.problem, /not a regular file/);
    const listed = await loadKeyring(ring);
    assert.deepEqual([...listed.keys.keys()], [key.keyId]);
    // a signature by a key the keyring lacks names the files it skipped
    const foreign = await build('foreign.argus-model', { version: 6, sign: stranger });
    await assert.rejects(
      verifyBundle(foreign, { keyring: ring, installedDir }),
      (err: unknown) =>
        err instanceof BundleRejected &&
        err.reason === 'unknown-key' &&
        err.message.includes(`unreadable key files skipped: ${corrupt} (`),
    );
  });

  it('gives every rejection its own message', () => {
    assert.equal(messages.size, 7, [...messages.keys()].join(', '));
    assert.equal(new Set(messages.values()).size, 7);
  });
});
