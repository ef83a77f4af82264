import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Header } from 'tar';
import { sha256Hex } from '../../common/hash.ts';
import { writeBundle } from '../../models/bundle/build.ts';
import {
  DEFAULT_BUNDLE_LIMITS,
  packEntries,
  readBundleFile,
  unpackStream,
} from '../../models/bundle/container.ts';
import type { SceneManifest } from '../../models/bundle/manifest.ts';
import { BundleRejected, type RejectionReason } from '../../models/bundle/rejection.ts';
import { verifyBundle } from '../../models/bundle/verify.ts';

const MiB = 1 << 20;

/** a tar header block as a hostile packer would write it: any name, type, size */
function header(path: string, size: number, type = 'File', linkpath?: string): Buffer {
  const block = Buffer.alloc(512);
  new Header({
    path,
    mode: 0o644,
    size,
    mtime: new Date(0),
    type: type as 'File',
    ...(linkpath ? { linkpath } : {}),
  }).encode(block, 0);
  return block;
}

async function refused(
  read: Promise<unknown>,
  reason: RejectionReason,
  pattern: RegExp,
): Promise<BundleRejected> {
  let caught: BundleRejected | undefined;
  await assert.rejects(read, (err: unknown) => {
    assert.ok(err instanceof BundleRejected, `not a BundleRejected: ${err}`);
    assert.equal(err.reason, reason, err.message);
    assert.match(err.message, pattern);
    assert.ok(err.hint);
    caught = err;
    return true;
  });
  return caught!;
}

describe('bundle container limits', () => {
  let dir: string;
  const path = (name: string) => join(dir, name);
  const small = [
    { name: 'manifest.json', data: Buffer.from('{"kind":"model"}\n') },
    { name: 'model.onnx', data: Buffer.alloc(3000, 7) },
  ];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-bundle-limits-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('stops a gzip bomb that would expand to a gigabyte at the expanded-size limit', async () => {
    // a tar that starts like a bundle, then a gigabyte of zeros: 1,024 gzip members of 1 MiB each
    const start = gzipSync(Buffer.concat([header('manifest.json', 17), Buffer.alloc(512, 0x20)]));
    const zeros = gzipSync(Buffer.alloc(MiB), { level: 9 });
    const bomb = Buffer.concat([start, ...Array.from({ length: 1024 }, () => zeros)]);
    assert.ok(bomb.length < 2 * MiB, `the bomb is small: ${bomb.length} bytes`);
    await writeFile(path('bomb.argus-model'), bomb);
    const err = await refused(
      verifyBundle(path('bomb.argus-model'), { keyring: path('no-keys'), installedDir: path('none') }),
      'too-large',
      /bomb\.argus-model expands to more than 128 MiB \(the limit\); stopped after 128\.\d MiB/,
    );
    const stoppedAfter = Number(/stopped after ([\d.]+) MiB/.exec(err.message)![1]);
    assert.ok(stoppedAfter < 129, `read no further than the limit and one chunk: ${stoppedAfter} MiB`);
  });

  it('refuses a file larger than the per-file limit at its header, before reading it', async () => {
    const claim = Buffer.concat([header('model.onnx', 1024 * MiB), Buffer.alloc(4096)]);
    await writeFile(path('big-file.argus-model'), gzipSync(claim));
    await refused(
      readBundleFile(path('big-file.argus-model')),
      'too-large',
      /model\.onnx is 1024 MiB, more than the limit of 128 MiB per file/,
    );
  });

  it('refuses more files than the limit', async () => {
    const many = Array.from({ length: DEFAULT_BUNDLE_LIMITS.maxFiles + 1 }, (_, i) => ({
      name: `f${i}`,
      data: Buffer.from('x'),
    }));
    await writeFile(path('many.argus-model'), packEntries(many));
    await refused(readBundleFile(path('many.argus-model')), 'too-large', /holds more than 16 files/);
  });

  it('writes no bundle a box would refuse for its size', async () => {
    const files = Array.from({ length: 15 }, (_, i) => ({ name: `f${i}`, data: Buffer.from(`${i}`) }));
    const manifest: SceneManifest = {
      kind: 'scene',
      schemaVersion: 1,
      name: 'many',
      version: 1,
      created: new Date().toISOString(),
      expires: new Date(Date.now() + 86_400_000).toISOString(),
      files: files.map((f) => ({ path: f.name, sha256: sha256Hex(f.data), bytes: f.data.length })),
      scene: { file: 'f0', classes: [], rules: [{ id: 'r', type: 'zone' }] },
    };
    await assert.rejects(
      writeBundle(path('many-written.argus-scene'), manifest, files),
      /would be \d+ bytes in 17 files .*beyond what a box reads .*16 files/,
    );
    await assert.rejects(stat(path('many-written.argus-scene')), { code: 'ENOENT' });
  });

  it('refuses a bundle file larger than the stored-size limit without reading it', async () => {
    await writeFile(path('huge.argus-model'), '');
    await truncate(path('huge.argus-model'), 200 * MiB);
    await refused(
      readBundleFile(path('huge.argus-model')),
      'too-large',
      /is 200 MiB, more than the limit of 128 MiB/,
    );
  });

  it('holds limits passed by the caller', async () => {
    await writeFile(
      path('two-mib.argus-model'),
      packEntries([{ name: 'model.onnx', data: Buffer.alloc(2 * MiB) }]),
    );
    const limits = { ...DEFAULT_BUNDLE_LIMITS, maxExpandedBytes: MiB };
    await refused(
      readBundleFile(path('two-mib.argus-model'), limits),
      'too-large',
      /expands to more than 1 MiB \(the limit\)/,
    );
    await refused(
      readBundleFile(path('two-mib.argus-model'), { ...DEFAULT_BUNDLE_LIMITS, maxFileBytes: MiB }),
      'too-large',
      /model\.onnx is 2 MiB, more than the limit of 1 MiB per file/,
    );
  });

  it('reads a bundle compressed once, and refuses one compressed twice', async () => {
    const tar = packEntries(small);
    await writeFile(path('once.argus-model'), gzipSync(tar));
    const files = await readBundleFile(path('once.argus-model'));
    assert.deepEqual([...files.keys()], ['manifest.json', 'model.onnx']);
    assert.deepEqual(Buffer.from(files.get('model.onnx')!), small[1]!.data);
    await writeFile(path('twice.argus-model'), gzipSync(gzipSync(tar)));
    await refused(
      readBundleFile(path('twice.argus-model')),
      'malformed',
      /inside its gzip layer there is no tar/,
    );
  });

  it('refuses links, directories, absolute and climbing paths, and a name used twice', async () => {
    const body = Buffer.alloc(512, 0x41);
    const tar = Buffer.concat([
      header('manifest.json', 512),
      body,
      header('../escape', 512),
      body,
      header('/etc/passwd', 512),
      body,
      header('link', 0, 'SymbolicLink', '/etc/shadow'),
      header('dir/', 0, 'Directory'),
      header('manifest.json', 512),
      body,
      Buffer.alloc(1024),
    ]);
    await writeFile(path('hostile.argus-model'), tar);
    const err = await refused(
      readBundleFile(path('hostile.argus-model')),
      'malformed',
      /is not a valid bundle/,
    );
    for (const what of [
      /entry "\.\.\/escape" \(File\)/,
      /entry "\/etc\/passwd" \(File\)|entry "etc\/passwd" \(File\)/,
      /entry "link" \(SymbolicLink\)/,
      /entry "dir\/?" \(Directory\)/,
      /entry "manifest\.json" appears twice/,
    ])
      assert.match(err.message, what);
  });

  it('answers any bytes, and any damage to a good bundle, with files or a BundleRejected (seed 1616)', async () => {
    const good = packEntries(small);
    const goodGz = gzipSync(good);
    const damaged = (base: Buffer) =>
      fc
        .array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        })
        .map((edits) => {
          const copy = Buffer.from(base);
          for (const [at, value] of edits) copy[at] = value;
          return copy;
        });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
          damaged(good),
          damaged(goodGz),
        ),
        async (bytes) => {
          try {
            const files = await unpackStream(Readable.from([bytes]), 'bytes');
            assert.ok(files.size > 0);
          } catch (err) {
            assert.ok(err instanceof BundleRejected, `not a BundleRejected: ${err}`);
          }
        },
      ),
      { seed: 1616, numRuns: 400 },
    );
  });
});
