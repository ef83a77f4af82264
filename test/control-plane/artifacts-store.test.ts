import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { sha256Hex } from '../../common/hash.ts';
import { BlobTooLarge, FsBlobStore } from '../../control-plane/artifacts/blob-store.ts';
import {
  ANY_HARDWARE_CLASS,
  type ArtifactReferences,
  ArtifactRegistry,
  type DeviceTargets,
  PublishRefused,
  pickVariant,
} from '../../control-plane/artifacts/registry.ts';
import type { ArtifactSettings } from '../../control-plane/config.ts';
import { openRepository } from '../../control-plane/index.ts';
import type { ArtifactRecord, ArtifactTarget } from '../../control-plane/storage/artifacts.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { modelBundle, sceneBundle } from './artifact-bundles.ts';

const DAY = 86_400_000;

/** which artifacts a test's rollouts reference: the shape the rollouts' store gives the registry */
class ReferenceTable implements ArtifactReferences {
  readonly assigned = new Set<string>();
  readonly kept = new Set<string>();
  async assignedTo(device: string, id: string) {
    return this.assigned.has(`${device}/${id}`);
  }
  async referenced(ids: readonly string[]) {
    return new Set(ids.filter((id) => this.kept.has(id)));
  }
}

let dir: string;
let key: SigningKey;
let keyring: string;

function settingsIn(sub: string, over: Partial<ArtifactSettings> = {}): ArtifactSettings {
  return {
    dir: join(dir, sub),
    keyring,
    maxUploadBytes: 8 << 20,
    uploadsAtOnce: 2,
    downloadsPerDevice: 2,
    downloads: 100,
    ...over,
  };
}

const publishFile = (registry: ArtifactRegistry, file: string, by = 'ann') =>
  registry.publish(createReadStream(file), by);

async function refused(p: Promise<unknown>, status: number, reason: string, pattern: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof PublishRefused, `not a PublishRefused: ${err}`);
    assert.equal(err.status, status, err.message);
    assert.equal(err.reason, reason, err.message);
    assert.match(err.message, pattern);
    assert.ok(err.hint);
    return true;
  });
}

function registrySuite(name: string, open: () => Promise<Repository>): void {
  describe(`artifact registry (${name})`, () => {
    let repo: Repository;
    let registry: ArtifactRegistry;
    let refs: ReferenceTable;
    let now = Date.parse('2026-11-01T00:00:00Z');
    before(async () => {
      repo = await open();
      refs = new ReferenceTable();
      registry = new ArtifactRegistry({
        sql: repo.sql,
        settings: settingsIn(`blobs-${name}`),
        references: refs,
        clock: () => now,
      });
    });
    after(() => repo?.close());

    it('publishes model and scene bundles content-addressed; the same bytes again change nothing; other bytes are a 409', async () => {
      const scene = await sceneBundle(dir, { version: 1, key });
      const published = await publishFile(registry, scene);
      assert.equal(published.created, true);
      const bytes = await readFile(scene);
      assert.equal(published.artifact.id, sha256Hex(bytes));
      assert.equal(published.artifact.bytes, bytes.length);
      assert.equal(published.artifact.kind, 'scene');
      assert.equal(published.artifact.name, 'campus-road');
      assert.equal(published.artifact.variant, '');
      assert.equal(published.artifact.publishedBy, 'ann');
      assert.equal(published.artifact.keyId, key.keyId);
      const stored = await registry.blobs.get(published.artifact.id);
      assert.ok(stored);
      assert.deepEqual(Buffer.concat(await stored.toArray()), bytes);

      const again = await publishFile(registry, scene, 'ben');
      assert.equal(again.created, false);
      assert.equal(again.artifact.publishedBy, 'ann', 'the first publication stands');

      // the same scene version, built again: other bytes (its created time), the same key
      now += 1000;
      const rebuilt = await sceneBundle(dir, { version: 1, key, now: new Date(Date.now() + 5000) });
      await refused(publishFile(registry, rebuilt), 409, 'conflict', /campus-road v1 .* already published/);

      const model = await modelBundle(dir, {
        name: 'det',
        version: 3,
        targets: [{ executionProvider: 'cpu', hardwareClass: 'x86_64-avx2' }],
        key,
      });
      const m = await publishFile(registry, model);
      assert.equal(m.artifact.variant, 'cpu:x86_64-avx2');
      assert.deepEqual(m.artifact.targets, [{ executionProvider: 'cpu', hardwareClass: 'x86_64-avx2' }]);
      assert.equal(m.artifact.manifest.kind, 'model');

      // another variant sharing a target with v3's
      const overlapping = await modelBundle(dir, {
        name: 'det',
        version: 3,
        targets: [
          { executionProvider: 'cuda', hardwareClass: 'jetson-orin' },
          { executionProvider: 'cpu', hardwareClass: 'x86_64-avx2' },
        ],
        key,
      });
      await refused(publishFile(registry, overlapping), 409, 'overlap', /cpu:x86_64-avx2 is already served/);
      const blobs = await readdir(join(registry.blobs.dir, 'sha256'), { recursive: true });
      assert.equal(blobs.filter((b) => /[0-9a-f]{64}$/.test(b)).length, 2, 'a refused bundle leaves no blob');
      const staged = await readdir(registry.blobs.stagingDir);
      assert.deepEqual(staged, [], 'nothing left in staging');
    });

    it('refuses what the box would refuse, with its reason: an unknown key, an expired bundle', async () => {
      await generateSigningKey('stranger', join(dir, `stranger-${name}`));
      const stranger = await loadSigningKey('stranger', join(dir, `stranger-${name}`));
      const foreign = await sceneBundle(dir, { name: 'foreign', version: 1, key: stranger });
      await refused(publishFile(registry, foreign), 422, 'unknown-key', /not in the keyring/);
      const old = await sceneBundle(dir, {
        name: 'old',
        version: 1,
        key,
        expiresInDays: 1,
        now: new Date(now - 10 * DAY),
      });
      await refused(publishFile(registry, old), 422, 'expired', /expired on/);
      const page = await registry.list({ name: 'old', limit: 10 });
      assert.deepEqual(page.artifacts, []);
    });

    it('lists newest first by kind and name, in pages', async () => {
      const ids: string[] = [];
      for (let v = 1; v <= 5; v++) {
        now += 1000;
        const file = await modelBundle(dir, {
          name: 'pager',
          version: v,
          targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
          key,
        });
        ids.push((await publishFile(registry, file)).artifact.id);
      }
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await registry.list({ kind: 'model', name: 'pager', limit: 2, after });
        seen.push(...page.artifacts.map((a) => a.id));
        if (!page.next) break;
        after = page.next;
      }
      assert.deepEqual(seen, [...ids].reverse());
      assert.deepEqual((await registry.list({ kind: 'scene', name: 'pager', limit: 10 })).artifacts, []);
      const all = await registry.list({ limit: 500 });
      assert.ok(all.artifacts.some((a) => a.kind === 'scene'));
    });

    it("gives each device its variant: its own hardware class first, then class 'any', by its provider order", async () => {
      const variants: [string, ArtifactTarget[]][] = [
        ['int8', [{ executionProvider: 'cpu', hardwareClass: 'x86_64-avx512vnni' }]],
        [
          'fp32-gpu',
          [
            { executionProvider: 'cuda', hardwareClass: 'jetson-orin' },
            { executionProvider: 'cuda', hardwareClass: 'x86_64-avx512vnni' },
          ],
        ],
        ['fp32', [{ executionProvider: 'cpu', hardwareClass: ANY_HARDWARE_CLASS }]],
      ];
      const ids = new Map<string, string>();
      for (const [label, targets] of variants) {
        const file = await modelBundle(dir, { name: 'yolo', version: 7, targets, key, seed: label });
        ids.set(label, (await publishFile(registry, file)).artifact.id);
      }
      const pick = async (device: DeviceTargets) =>
        (await registry.variantFor('model', 'yolo', 7, device))?.id;
      assert.equal(
        await pick({ hardwareClass: 'x86_64-avx512vnni', executionProviders: ['cpu'] }),
        ids.get('int8'),
      );
      assert.equal(
        await pick({ hardwareClass: 'x86_64-avx512vnni', executionProviders: ['cuda', 'cpu'] }),
        ids.get('fp32-gpu'),
      );
      assert.equal(
        await pick({ hardwareClass: 'jetson-orin', executionProviders: ['cpu'] }),
        ids.get('fp32'),
      );
      assert.equal(await pick({ hardwareClass: 'rk3588-npu', executionProviders: ['rknpu'] }), undefined);
      assert.equal(
        await registry.variantFor('model', 'yolo', 8, { hardwareClass: 'x', executionProviders: ['cpu'] }),
        undefined,
      );
      const scene = await registry.variantFor('scene', 'campus-road', 1, {
        hardwareClass: 'rk3588-npu',
        executionProviders: [],
      });
      assert.equal(scene?.kind, 'scene', 'a scene fits every device');
      assert.equal(scene?.version, 1);
    });

    it('deletes bytes and row, refused while a rollout references the artifact', async () => {
      const file = await modelBundle(dir, {
        name: 'gone',
        version: 1,
        targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
        key,
      });
      const { artifact } = await publishFile(registry, file);
      refs.kept.add(artifact.id);
      assert.equal(await registry.delete(artifact.id), 'referenced');
      assert.ok(await registry.blobs.stat(artifact.id));
      refs.kept.delete(artifact.id);
      assert.equal(await registry.delete(artifact.id), 'deleted');
      assert.equal(await registry.get(artifact.id), undefined);
      assert.equal(await registry.blobs.stat(artifact.id), undefined);
      assert.equal(await registry.delete(artifact.id), 'missing');
    });

    it('retention deletes unreferenced artifacts past their age, then the oldest past the size limit', async () => {
      const r = new ArtifactRegistry({
        sql: repo.sql,
        settings: settingsIn(`retention-${name}`),
        references: refs,
        clock: () => now,
      });
      // the other tests' artifacts are young; these are published 100, 99 … days ago
      const published: ArtifactRecord[] = [];
      const start = now;
      for (let i = 0; i < 4; i++) {
        now = start - (100 - i) * DAY;
        const file = await modelBundle(dir, {
          name: `aged-${i}`,
          version: 1,
          targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
          key,
          modelBytes: 64 * 1024,
        });
        published.push((await publishFile(r, file)).artifact);
      }
      now = start;
      refs.kept.add(published[1]!.id);
      const counted: string[] = [];
      const report = await r.retain(
        { maxAgeDays: 98.5, maxMiB: 1024 },
        () => undefined,
        (by, rows) => counted.push(`${by}:${rows}`),
      );
      // 0 and 1 are older than 98.5 days; 1 is referenced
      assert.equal(report.deletedByAge, 1);
      assert.equal(await r.get(published[0]!.id), undefined);
      assert.equal(await r.blobs.stat(published[0]!.id), undefined);
      assert.ok(await r.get(published[1]!.id), 'a referenced artifact stays whatever its age');
      assert.deepEqual(counted, ['age:1']);
      // by size: everything within 0 MiB is impossible; only unreferenced ones go, oldest first
      const bySize = await r.retain({ maxAgeDays: 1000, maxMiB: 1e-9 }, () => undefined);
      assert.ok(bySize.deletedBySize >= 2);
      assert.ok(await r.get(published[1]!.id), 'still referenced, still there');
      assert.equal(await r.get(published[2]!.id), undefined);
      assert.equal(await r.get(published[3]!.id), undefined);
      const left = await r.list({ limit: 500 });
      assert.deepEqual(
        left.artifacts.map((a) => a.id),
        [published[1]!.id],
        'only the referenced one is left',
      );
      assert.equal(bySize.storedBytes, published[1]!.bytes);
      // a lost lease stops it before anything more goes
      refs.kept.clear();
      await assert.rejects(
        r.retain({ maxAgeDays: 1, maxMiB: 1024 }, () => {
          throw new Error('lease lost');
        }),
        /lease lost/,
      );
      assert.ok(await r.get(published[1]!.id));
    });
  });
}

describe('blob store (filesystem)', () => {
  it('stores by sha256, atomically, serves ranges, and refuses more than its limit without keeping anything', async () => {
    const blobs = new FsBlobStore(join(dir, 'blob-unit'));
    const data = Buffer.from('0123456789abcdef'.repeat(1000));
    const info = await blobs.put(Readable.from([data.subarray(0, 7000), data.subarray(7000)]), data.length);
    assert.deepEqual(info, { sha256: sha256Hex(data), bytes: data.length });
    assert.deepEqual(await blobs.stat(info.sha256), info);
    assert.equal(
      await text((await blobs.get(info.sha256, { start: 10, end: 25 }))!),
      data.subarray(10, 26).toString(),
    );
    assert.deepEqual(await blobs.put(Readable.from([data]), data.length), info, 'the same bytes again');
    await assert.rejects(blobs.put(Readable.from([data, data]), data.length + 1), BlobTooLarge);
    assert.deepEqual(await readdir(blobs.stagingDir), [], 'a refused put leaves no staging file');
    assert.equal(await blobs.get('0'.repeat(64)), undefined);
    assert.equal(await blobs.delete(info.sha256), true);
    assert.equal(await blobs.stat(info.sha256), undefined);
    assert.equal(await blobs.delete(info.sha256), false);
    await assert.rejects(blobs.get('../../etc/passwd'), /not a sha256/);
  });
});

describe('variant selection (property)', () => {
  const classes = ['x86_64-avx2', 'x86_64-avx512vnni', 'jetson-orin', ANY_HARDWARE_CLASS];
  const providers = ['cpu', 'cuda', 'openvino'];
  const target = fc.record({
    hardwareClass: fc.constantFrom(...classes),
    executionProvider: fc.constantFrom(...providers),
  });
  const record = (i: number, targets: ArtifactTarget[]): ArtifactRecord =>
    ({
      id: String(i).padStart(64, '0'),
      kind: 'model',
      name: 'm',
      version: 1,
      bytes: 1,
      targets,
    }) as ArtifactRecord;
  /** variants of one version as the registry stores them: no target in two variants */
  const variants = fc
    .uniqueArray(target, { selector: (t) => `${t.executionProvider}:${t.hardwareClass}`, maxLength: 12 })
    .chain((ts) =>
      fc.array(fc.nat({ max: 3 }), { minLength: ts.length, maxLength: ts.length }).map((owner) => {
        const groups = new Map<number, ArtifactTarget[]>();
        for (const [i, t] of ts.entries()) groups.set(owner[i]!, [...(groups.get(owner[i]!) ?? []), t]);
        return [...groups.values()].map((g, i) => record(i, g));
      }),
    );
  const device = fc.record({
    hardwareClass: fc.constantFrom(...classes.slice(0, 3), 'rk3588-npu'),
    executionProviders: fc.uniqueArray(fc.constantFrom(...providers), { maxLength: 3 }),
  });

  it('picks the variant with the best-ranked matching target (own class before any, then provider order); none only when nothing fits', () => {
    fc.assert(
      fc.property(variants, device, (vs, d) => {
        const rank = (t: ArtifactTarget): number | undefined => {
          const c = t.hardwareClass === d.hardwareClass ? 0 : t.hardwareClass === ANY_HARDWARE_CLASS ? 1 : -1;
          const p = d.executionProviders.indexOf(t.executionProvider);
          return c < 0 || p < 0 ? undefined : c * 100 + p;
        };
        const ranked = vs.flatMap((v) =>
          v.targets.flatMap((t) => (rank(t) === undefined ? [] : [{ id: v.id, rank: rank(t)! }])),
        );
        const picked = pickVariant(vs, d);
        if (ranked.length === 0) return picked === undefined;
        const best = Math.min(...ranked.map((r) => r.rank));
        const winner = ranked.find((r) => r.rank === best)!;
        assert.equal(picked?.id, winner.id);
        // never a variant built for another hardware class only
        const chosen = vs.find((v) => v.id === picked?.id)!;
        assert.ok(
          chosen.targets.some(
            (t) =>
              (t.hardwareClass === d.hardwareClass || t.hardwareClass === ANY_HARDWARE_CLASS) &&
              d.executionProviders.includes(t.executionProvider),
          ),
        );
        return true;
      }),
      { numRuns: 500 },
    );
  });
});

let pg: PostgresServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-artifacts-store-'));
  await generateSigningKey('factory', join(dir, 'keys'));
  key = await loadSigningKey('factory', join(dir, 'keys'));
  keyring = join(dir, 'keys', 'trusted');
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

registrySuite('sqlite', () =>
  openRepository({ kind: 'sqlite', sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } }),
);
registrySuite('postgres', async () =>
  openRepository({
    kind: 'postgres',
    postgres: { url: await pg.createDatabase('argus_artifacts'), poolSize: 4 },
  }),
);
