import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Type from 'typebox';
import { errorMessage } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { compileSchema } from '../../common/schema.ts';
import { MANIFEST_FILE, parseManifest } from '../../models/bundle/manifest.ts';
import { fsyncDir, readJsonFile, writeJsonDurable } from './durable.ts';

/**
 * Two slots per kind on the box: `<ota dir>/model/{a,b}` for the detector's model and
 * `<ota dir>/scene/<camera>/{a,b}` for each camera's scene. An update is unpacked into the slot that is not
 * committed (staged beside it as it downloads, every file fsynced, then renamed in once verified,
 * so a slot that exists is complete and verified); the committed pointer `<ota dir>/committed.json` names the slot each kind runs from
 * and is rewritten (durably) only when an update commits. The committed slot is never written to,
 * so rolling back is switching back to it. Without an entry the box runs its config's model and
 * scenes (the factory default).
 */

export type Slot = 'a' | 'b';

const SlotSchema = Type.Union([Type.Literal('a'), Type.Literal('b')]);
const Name = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: 200 });
const Assignment = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$' });

const CommittedSchema = Type.Object(
  {
    v: Type.Literal(1),
    model: Type.Optional(
      Type.Object(
        { slot: SlotSchema, name: Name, version: Type.Integer({ minimum: 1 }), assignment: Assignment },
        { additionalProperties: false },
      ),
    ),
    /** by camera: the slot of its scene, the scene's name and version, the scene file in the slot */
    scenes: Type.Record(
      Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }),
      Type.Object(
        {
          slot: SlotSchema,
          name: Name,
          version: Type.Integer({ minimum: 1 }),
          file: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' }),
          assignment: Assignment,
        },
        { additionalProperties: false },
      ),
      { maxProperties: 1000 },
    ),
  },
  { additionalProperties: false },
);
export type Committed = Type.Static<typeof CommittedSchema>;
const committedValidator = compileSchema<Committed>(CommittedSchema);

export function otherSlot(slot: Slot | undefined): Slot {
  return slot === 'a' ? 'b' : 'a';
}

export class Slots {
  readonly pointerFile: string;

  constructor(readonly otaDir: string) {
    this.pointerFile = join(otaDir, 'committed.json');
  }

  modelSlotDir(slot: Slot): string {
    return join(this.otaDir, 'model', slot);
  }

  sceneSlotDir(camera: string, slot: Slot): string {
    return join(this.otaDir, 'scene', camera, slot);
  }

  /** the committed pointer; throws when it exists but cannot be read (the caller decides) */
  async committed(): Promise<Committed> {
    const raw = await readJsonFile(this.pointerFile);
    if (raw === undefined) return { v: 1, scenes: {} };
    if (!committedValidator.check(raw))
      throw new Error(
        `${this.pointerFile} is not a committed pointer: ${committedValidator.issues(raw)[0]?.message}`,
      );
    return raw;
  }

  async commit(next: Committed): Promise<void> {
    await writeJsonDurable(this.pointerFile, committedValidator.parse(next, 'the committed pointer'));
  }

  /**
   * A new, empty staging directory beside the slot `dir`, for the files of an update as they are
   * unpacked; `install` moves it over the slot once it is verified, `sweep` removes it if the
   * process ends before.
   */
  async staging(dir: string): Promise<string> {
    const parent = join(dir, '..');
    await mkdir(parent, { recursive: true });
    const staging = join(parent, `.${process.pid}-${randomBytes(6).toString('hex')}.staging`);
    await mkdir(staging);
    return staging;
  }

  /**
   * Moves the staging directory `staging` (its files written and fsynced) over the slot `dir`: the
   * directory is fsynced, renamed over the slot, then the parent is fsynced, so a slot that exists
   * is complete.
   */
  async install(staging: string, dir: string): Promise<void> {
    await fsyncDir(staging);
    await rm(dir, { recursive: true, force: true });
    await rename(staging, dir);
    await fsyncDir(join(dir, '..'));
  }

  /** a copy of the files `names` of the slot or staging directory `from` into the slot `dir` (through its own staging) */
  async copy(from: string, names: readonly string[], dir: string): Promise<void> {
    const staging = await this.staging(dir);
    try {
      for (const name of names) {
        await copyFile(join(from, name), join(staging, name), constants.COPYFILE_EXCL);
        const fd = await open(join(staging, name), 'r+');
        try {
          await fd.sync();
        } finally {
          await fd.close();
        }
      }
      await this.install(staging, dir);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
  }

  /** removes staging directories a killed process left beside the slots */
  async sweep(): Promise<void> {
    const parents = [join(this.otaDir, 'model')];
    const scenes = join(this.otaDir, 'scene');
    for (const name of await readdir(scenes).catch(() => [] as string[])) parents.push(join(scenes, name));
    for (const parent of parents) {
      for (const entry of await readdir(parent).catch(() => [] as string[])) {
        if (entry.endsWith('.staging')) await rm(join(parent, entry), { recursive: true, force: true });
      }
    }
  }

  /**
   * Checks that a slot holds what its manifest lists, byte for byte (the manifest was verified
   * against its signature before the slot was written). Returns the problem, or undefined.
   */
  async check(dir: string): Promise<string | undefined> {
    try {
      await stat(dir);
      const manifest = parseManifest(await readFile(join(dir, MANIFEST_FILE)), join(dir, MANIFEST_FILE));
      for (const f of manifest.files) {
        const data = await readFile(join(dir, f.path));
        if (data.length !== f.bytes || sha256Hex(data) !== f.sha256)
          return `${f.path} does not match its manifest`;
      }
      return undefined;
    } catch (err) {
      return errorMessage(err).split('\n')[0];
    }
  }
}
