import { join } from 'node:path';
import Type from 'typebox';
import { errorMessage } from '../../common/errors.ts';
import { compileSchema } from '../../common/schema.ts';
import type { ArtifactKind } from '../../contract/ota.ts';
import { BundleRejected } from '../../models/bundle/rejection.ts';
import { readJsonFile, writeJsonDurable } from './durable.ts';

/**
 * The last trusted version of every model and scene name this box ever committed, kept in
 * `<ota dir>/trusted.json` across restarts, so that a bundle older than (or as old as) what the box
 * once trusted is refused even after it was rolled back or its slot was overwritten: an old bundle
 * can never be replayed. The store only grows. When it cannot be read, every check fails closed
 * (the bundle is refused with the reason), it is never taken as empty.
 */

const TrustedSchema = Type.Object(
  {
    v: Type.Literal(1),
    /** `<kind>/<name>` → version */
    versions: Type.Record(Type.String({ maxLength: 200 }), Type.Integer({ minimum: 1 }), {
      maxProperties: 10_000,
    }),
  },
  { additionalProperties: false },
);
type Trusted = Type.Static<typeof TrustedSchema>;
const validator = compileSchema<Trusted>(TrustedSchema);

export class TrustedVersions {
  readonly file: string;

  constructor(otaDir: string) {
    this.file = join(otaDir, 'trusted.json');
  }

  private async read(): Promise<Trusted> {
    let raw: unknown;
    try {
      raw = await readJsonFile(this.file);
    } catch (err) {
      throw this.unreadable(errorMessage(err));
    }
    if (raw === undefined) return { v: 1, versions: {} };
    if (!validator.check(raw)) throw this.unreadable('it is not a store of trusted versions');
    return raw;
  }

  private unreadable(problem: string): BundleRejected {
    return new BundleRejected(
      'installed-unreadable',
      `the box's store of trusted versions ${this.file} cannot be read (${problem}); no bundle is accepted without it`,
      `repair ${this.file}, or remove it to trust again from the versions the box runs`,
    );
  }

  /** the last trusted version of `kind`/`name`; throws a BundleRejected when the store cannot be read */
  async get(kind: ArtifactKind, name: string): Promise<number | undefined> {
    return (await this.read()).versions[`${kind}/${name}`];
  }

  /** records `version` as trusted (never lowers a version) */
  async trust(kind: ArtifactKind, name: string, version: number): Promise<void> {
    const store = await this.read();
    const key = `${kind}/${name}`;
    if ((store.versions[key] ?? 0) >= version) return;
    store.versions[key] = version;
    await writeJsonDurable(this.file, store);
  }
}
