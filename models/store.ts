import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ArgusError } from '../common/errors.ts';
import { buildDirAtomic, sweepStaging } from '../common/fs-atomic.ts';
import { sha256Hex } from '../common/hash.ts';
import { createLogger } from '../common/logger.ts';
import { cacheDir } from '../common/paths.ts';
import { createProgress } from '../common/progress.ts';
import { type ModelDescriptor, readDescriptor } from '../inference/descriptor.ts';
import { DESCRIPTOR_FILE, modelsDir, resolveModelDir } from '../inference/model-dir.ts';
import { CATALOG, type CatalogEntry, catalogEntry, type SourcePackage } from './catalog.ts';
import { fetchPackageFiles, type WantedFile } from './fetch.ts';
import { declareAnyInputSize } from './onnx/any-size.ts';
import { encodeModel } from './onnx/codec.ts';
import { foldInputPreprocessing } from './onnx/preprocess.ts';
import { convertTfjsGraph } from './tfjs/converter.ts';
import { parseTfjsGraphModel } from './tfjs/graph-model.ts';

const log = createLogger('models');

/** where verified source files of a package are kept, so re-conversion needs no download */
export function sourcesDir(pkg: SourcePackage): string {
  return join(cacheDir(), 'sources', `${pkg.name.replace('/', '+')}@${pkg.version}`);
}

/** path of a verified source file of a catalog model (e.g. the original tfjs model.json) */
export function sourceFilePath(pkg: SourcePackage, file: WantedFile): string {
  return join(sourcesDir(pkg), file.path);
}

async function cachedSources(
  pkg: SourcePackage,
  wanted: readonly WantedFile[],
): Promise<Map<string, Buffer> | undefined> {
  const out = new Map<string, Buffer>();
  for (const w of wanted) {
    const data = await readFile(sourceFilePath(pkg, w)).catch(() => undefined);
    if (!data || sha256Hex(data) !== w.sha256) return undefined;
    out.set(w.path, data);
  }
  return out;
}

/** the package's wanted files: from the source cache when intact, else downloaded, verified and cached */
async function obtainSources(
  pkg: SourcePackage,
  wanted: readonly WantedFile[],
  options: FetchModelsOptions,
): Promise<Map<string, Buffer>> {
  if (!options.from) {
    const cached = await cachedSources(pkg, wanted);
    if (cached) return cached;
  }
  const files = await fetchPackageFiles(pkg, wanted, {
    progress: createProgress(`downloading ${pkg.name}@${pkg.version}`, 'bytes'),
    ...(options.from ? { from: options.from } : {}),
    ...(options.registry ? { registry: options.registry } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  await sweepStaging(dirname(sourcesDir(pkg)));
  await buildDirAtomic(sourcesDir(pkg), async (dir) => {
    for (const [path, data] of files) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), data);
    }
  });
  return files;
}

/**
 * The descriptor of an installed model without its weights: what checks a scene (its labels) before
 * the detector loads.
 */
export async function readModelDescriptor(ref: string): Promise<ModelDescriptor> {
  const descriptorPath = join(resolveModelDir(ref), DESCRIPTOR_FILE);
  const exists = await stat(descriptorPath).then(
    () => true,
    () => false,
  );
  if (!exists) {
    const known = catalogEntry(ref);
    throw new ArgusError(
      `model "${ref}" is not installed (no ${descriptorPath})`,
      known ? 'run `argus models fetch` first' : `known models: ${CATALOG.map((e) => e.name).join(', ')}`,
    );
  }
  return readDescriptor(descriptorPath);
}

async function isInstalled(entry: CatalogEntry): Promise<boolean> {
  try {
    const d = await readDescriptor(join(modelsDir(), entry.name, DESCRIPTOR_FILE));
    return d.version === entry.descriptor.version;
  } catch {
    return false;
  }
}

export interface TfjsImport {
  /** model.json text and a reader for the weight shards it names */
  modelJson: string;
  modelJsonName: string;
  readShard: (path: string) => Promise<Uint8Array>;
  convert: CatalogEntry['convert'];
  descriptor: CatalogEntry['descriptor'];
}

/**
 * Converts a tfjs graph model to ONNX with the input preprocessing folded in, and installs it with
 * its descriptor as `target` — atomically: on any error (unknown op, bad weights, abort) nothing
 * appears at `target` and no staging files remain.
 */
export async function importTfjsModel(
  source: TfjsImport,
  target: string,
  signal?: AbortSignal,
): Promise<ModelDescriptor> {
  let descriptor: ModelDescriptor | undefined;
  await buildDirAtomic(target, async (outDir) => {
    const tf = await parseTfjsGraphModel(source.modelJson, source.modelJsonName, source.readShard);
    const name = source.descriptor.name;
    const progress = createProgress(`converting ${name}`, 'nodes');
    const input = source.descriptor.input;
    const converted = convertTfjsGraph(tf, {
      graphName: name,
      dynamicBatch: source.convert.dynamicBatch,
      ...(input.sizeStep ? { sizeStep: input.sizeStep } : {}),
      onProgress: (done, total) => progress.update(done, total),
      ...(signal ? { signal } : {}),
    });
    const folded = foldInputPreprocessing(converted, {
      input: source.convert.graphInput,
      graphLayout: source.convert.graphLayout,
      mean: input.normalization.mean,
      std: input.normalization.std,
      newInput: input.name,
    });
    const model = input.sizeStep ? await declareAnyInputSize(folded, input.sizeStep) : folded;
    model.metadata = { 'argus.model': name, 'argus.source': source.descriptor.source.origin };
    const bytes = encodeModel(model);
    progress.finish(`${model.graph.nodes.length} ONNX nodes, ${(bytes.length / (1 << 20)).toFixed(1)} MiB`);
    descriptor = { ...source.descriptor, file: 'model.onnx', sha256: sha256Hex(bytes) };
    await writeFile(join(outDir, 'model.onnx'), bytes);
    await writeFile(join(outDir, DESCRIPTOR_FILE), `${JSON.stringify(descriptor, null, 2)}\n`);
  });
  return descriptor!;
}

function catalogImport(entry: CatalogEntry, files: Map<string, Buffer>): TfjsImport {
  const jsonPath = entry.files.modelJson.path;
  return {
    modelJson: files.get(jsonPath)!.toString('utf8'),
    modelJsonName: basename(jsonPath),
    readShard: async (p) => {
      const data = files.get(join(dirname(jsonPath), p));
      if (!data)
        throw new ArgusError(
          `${basename(jsonPath)} names weight file ${p}, which the catalog does not fetch`,
        );
      return data;
    },
    convert: entry.convert,
    descriptor: entry.descriptor,
  };
}

export interface FetchModelsOptions {
  force?: boolean;
  /** local tarball instead of the registry */
  from?: string;
  registry?: string;
  signal?: AbortSignal;
}

/**
 * Makes the named catalog models available in the cache: downloads each source package once,
 * verifies it, converts to ONNX and installs each model directory atomically. Returns the names
 * that were (re)built.
 */
export async function fetchModels(
  names: readonly string[],
  options: FetchModelsOptions = {},
): Promise<string[]> {
  const entries = names.map((n) => {
    const e = catalogEntry(n);
    if (!e)
      throw new ArgusError(`unknown model "${n}"`, `known models: ${CATALOG.map((c) => c.name).join(', ')}`);
    return e;
  });
  await sweepStaging(modelsDir());
  const todo: CatalogEntry[] = [];
  for (const e of entries) {
    if (options.force || !(await isInstalled(e))) todo.push(e);
    else log.info({ model: e.name }, 'model already installed');
  }
  const packages = [...new Set(todo.map((e) => `${e.package.name}@${e.package.version}`))];
  for (const pkgId of packages) {
    const group = todo.filter((e) => `${e.package.name}@${e.package.version}` === pkgId);
    const pkg = group[0]!.package;
    const wanted = group.flatMap((e) => [e.files.modelJson, ...e.files.weights]);
    const files = await obtainSources(pkg, wanted, options);
    for (const e of group) {
      await importTfjsModel(catalogImport(e, files), join(modelsDir(), e.name), options.signal);
      log.info({ model: e.name, dir: join(modelsDir(), e.name) }, 'model installed');
    }
  }
  return todo.map((e) => e.name);
}

export interface ModelListing {
  name: string;
  title: string;
  installed: boolean;
  version: number | undefined;
  dir: string;
  sizeBytes: number | undefined;
}

/** catalog models and any other model directories found in the cache (quantized, pruned, bundled) */
export async function listModels(): Promise<ModelListing[]> {
  const dirs = await readdir(modelsDir()).catch(() => [] as string[]);
  const names = [...new Set([...CATALOG.map((e) => e.name), ...dirs.filter((d) => !d.endsWith('.partial'))])];
  const out: ModelListing[] = [];
  for (const name of names) {
    const dir = join(modelsDir(), name);
    let descriptor: ModelDescriptor | undefined;
    let sizeBytes: number | undefined;
    try {
      descriptor = await readDescriptor(join(dir, DESCRIPTOR_FILE));
      sizeBytes = (await stat(join(dir, descriptor.file))).size;
    } catch {
      descriptor = undefined;
    }
    out.push({
      name,
      title: catalogEntry(name)?.title ?? descriptor?.source.upstream ?? '',
      installed: descriptor !== undefined,
      version: descriptor?.version,
      dir,
      sizeBytes,
    });
  }
  return out;
}

/** installs a catalog model on first use (a directory reference must already exist) */
export async function ensureModelInstalled(ref: string, signal?: AbortSignal): Promise<void> {
  const entry = catalogEntry(ref);
  if (!entry || (await isInstalled(entry))) return;
  log.info({ model: ref }, 'model not installed yet; fetching it');
  await fetchModels([ref], signal ? { signal } : {});
}
