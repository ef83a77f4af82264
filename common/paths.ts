import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Where Argus caches fetched and converted models: `$ARGUS_CACHE_DIR`, else `$XDG_CACHE_HOME/argus`, else `~/.cache/argus`. */
export function cacheDir(): string {
  if (process.env.ARGUS_CACHE_DIR) return resolve(process.env.ARGUS_CACHE_DIR);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'argus');
}

const DEBIAN_SAMPLE_VIDEO = '/usr/share/doc/opencv-doc/examples/data/vtest.avi';

/**
 * The sample street recording (768×576, 10 fps, 795 frames) shipped by Debian's `opencv-doc`
 * package; on images that strip /usr/share/doc the bootstrap extracts it into the cache instead.
 */
export const SAMPLE_VIDEO = existsSync(DEBIAN_SAMPLE_VIDEO)
  ? DEBIAN_SAMPLE_VIDEO
  : join(cacheDir(), 'samples', 'vtest.avi');
