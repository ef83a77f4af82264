import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Where Argus caches fetched and converted models: `$ARGUS_CACHE_DIR`, else `$XDG_CACHE_HOME/argus`, else `~/.cache/argus`. */
export function cacheDir(): string {
  if (process.env.ARGUS_CACHE_DIR) return resolve(process.env.ARGUS_CACHE_DIR);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'argus');
}

/** The sample street recording shipped by Debian's `opencv-doc` package. */
export const SAMPLE_VIDEO = '/usr/share/doc/opencv-doc/examples/data/vtest.avi';
