import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** staging names: `.<pid of the writer>-<random>.partial` */
const STAGING_NAME = /^\.(\d+)-[0-9a-f]{12}\.partial$/;

/**
 * A sibling path for staging a file or directory so that only a finished result is ever renamed
 * in. The name carries the writer's process id, so a sweep removes only what dead processes left.
 */
export function stagingPath(target: string): string {
  return join(dirname(target), `.${process.pid}-${randomBytes(6).toString('hex')}.partial`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Writes `data` to `target` so that readers see either the old file or the whole new one; `mode`
 * (e.g. 0o600 for a secret) is the file's from its creation on, so it is never readable by others.
 */
export async function writeFileAtomic(
  target: string,
  data: string | Uint8Array,
  mode = 0o666,
): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const staged = stagingPath(target);
  try {
    await writeFile(staged, data, { mode, flag: 'wx' });
    await rename(staged, target);
  } catch (err) {
    await rm(staged, { force: true });
    throw err;
  }
}

/**
 * Builds a directory in a staging location and renames it to `target` only when `build` succeeds.
 * On failure or abort (the build throws) the staging directory is removed and `target` is untouched.
 */
export async function buildDirAtomic(target: string, build: (dir: string) => Promise<void>): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const staged = stagingPath(target);
  await mkdir(staged, { recursive: true });
  try {
    await build(staged);
    await rm(target, { recursive: true, force: true });
    await rename(staged, target);
  } catch (err) {
    await rm(staged, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Removes staging leftovers of processes that were killed outright (SIGKILL, power loss); what a
 * running process is staging, and files that merely end in `.partial`, stay.
 */
export async function sweepStaging(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(
    entries
      .filter((e) => {
        const pid = STAGING_NAME.exec(e)?.[1];
        return pid !== undefined && !processAlive(Number(pid));
      })
      .map((e) => rm(join(dir, e), { recursive: true, force: true })),
  );
}
