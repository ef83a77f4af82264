import { fetchModels } from '../../models/store.ts';

let installed: Promise<string[]> | undefined;

/** the catalog models, fetched and converted once per test process (the cache persists across runs) */
export function ensureCatalogModels(): Promise<string[]> {
  installed ??= fetchModels(['nanodet', 'centernet']);
  return installed;
}
