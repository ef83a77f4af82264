import type { ArtifactKind, ArtifactRef } from '../../contract/ota.ts';
import type { Manifest } from '../../models/bundle/manifest.ts';
import type { SqlAccess } from './sql-access.ts';

/**
 * The artifact registry's metadata (tables `artifacts` and `artifact_targets`, migration 7); the
 * bytes live in a BlobStore under the same id, the sha256 of the bundle file.
 *
 * An artifact is one bundle: kind, name, version and its *variant*, the set of targets (execution
 * provider and hardware class) it was built for — `variant` is that set, sorted, as text, empty
 * for a scene, which fits every device. (kind, name, version, variant) is unique, and so is each
 * target within (kind, name, version), so that a device's identity selects at most one variant.
 */

export interface ArtifactTarget {
  hardwareClass: string;
  executionProvider: string;
}

export interface ArtifactRecord {
  /** sha256 of the bundle file */
  id: string;
  kind: ArtifactKind;
  name: string;
  version: number;
  variant: string;
  bytes: number;
  /** the key that signed it */
  keyId: string;
  manifest: Manifest;
  /** of a model; none for a scene */
  targets: ArtifactTarget[];
  /** ms since the epoch */
  expiresAt: number;
  publishedAt: number;
  publishedBy: string;
}

export type NewArtifact = Omit<ArtifactRecord, 'variant'>;

export type PutArtifactOutcome =
  | { outcome: 'created' | 'unchanged'; artifact: ArtifactRecord }
  /** another bundle holds the same (kind, name, version, variant) */
  | { outcome: 'conflict'; existing: ArtifactRecord }
  /** another variant of the same (kind, name, version) already serves one of these targets */
  | { outcome: 'overlap'; existing: ArtifactRecord; target: ArtifactTarget };

export interface ArtifactListFilter {
  kind?: ArtifactKind | undefined;
  name?: string | undefined;
  /** the `next` of the previous page */
  after?: string | undefined;
  limit: number;
}

export interface ArtifactPage {
  /** newest published first */
  artifacts: ArtifactRecord[];
  /** pass as `after` for the next page; null on the last */
  next: string | null;
}

/** the variant of a bundle with these targets: its targets sorted, `provider:class`, comma-separated */
export function variantOf(targets: readonly ArtifactTarget[]): string {
  return [...new Set(targets.map((t) => `${t.executionProvider}:${t.hardwareClass}`))].sort().join(',');
}

export function refOf(a: ArtifactRecord): ArtifactRef {
  return { id: a.id, kind: a.kind, name: a.name, version: a.version, bytes: a.bytes };
}

interface ArtifactRow {
  id: string;
  kind: ArtifactKind;
  name: string;
  version: number | string;
  variant: string;
  bytes: number | string;
  key_id: string;
  manifest: string;
  expires_at: number | string;
  published_at: number | string;
  published_by: string;
}

const COLUMNS =
  'id, kind, name, version, variant, bytes, key_id, manifest, expires_at, published_at, published_by';

function recordOf(r: ArtifactRow): ArtifactRecord {
  const manifest = JSON.parse(r.manifest) as Manifest;
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    version: Number(r.version),
    variant: r.variant,
    bytes: Number(r.bytes),
    keyId: r.key_id,
    manifest,
    targets:
      manifest.kind === 'model'
        ? manifest.targets.map((t) => ({
            hardwareClass: t.hardwareClass,
            executionProvider: t.executionProvider,
          }))
        : [],
    expiresAt: Number(r.expires_at),
    publishedAt: Number(r.published_at),
    publishedBy: r.published_by,
  };
}

/** a page cursor: the position of the page's last artifact in the listing's order */
const cursorOf = (a: ArtifactRecord): string => `${a.publishedAt}.${a.id}`;
const CURSOR = /^(\d{1,16})\.([0-9a-f]{64})$/;

export class ArtifactStore {
  constructor(private readonly sql: SqlAccess) {}

  async get(id: string): Promise<ArtifactRecord | undefined> {
    const { p } = this.sql;
    const [row] = await this.sql.read<ArtifactRow>(`SELECT ${COLUMNS} FROM artifacts WHERE id = ${p(1)}`, [
      id,
    ]);
    return row ? recordOf(row) : undefined;
  }

  /** every variant of (kind, name, version) */
  async variants(kind: ArtifactKind, name: string, version: number): Promise<ArtifactRecord[]> {
    const { p } = this.sql;
    const rows = await this.sql.read<ArtifactRow>(
      `SELECT ${COLUMNS} FROM artifacts WHERE kind = ${p(1)} AND name = ${p(2)} AND version = ${p(3)}
        ORDER BY variant`,
      [kind, name, version],
    );
    return rows.map(recordOf);
  }

  /** why `artifact` cannot be stored beside what is stored, if it cannot */
  private async clash(artifact: NewArtifact, variant: string): Promise<PutArtifactOutcome | undefined> {
    const existing = await this.get(artifact.id);
    if (existing) return { outcome: 'unchanged', artifact: existing };
    const siblings = await this.variants(artifact.kind, artifact.name, artifact.version);
    const same = siblings.find((s) => s.variant === variant);
    if (same) return { outcome: 'conflict', existing: same };
    for (const sibling of siblings)
      for (const target of artifact.targets)
        if (
          sibling.targets.some(
            (t) =>
              t.hardwareClass === target.hardwareClass && t.executionProvider === target.executionProvider,
          )
        )
          return { outcome: 'overlap', existing: sibling, target };
    return undefined;
  }

  /**
   * Stores the metadata of a published artifact with its targets, in one transaction. The same
   * artifact again (same id) is `unchanged`; another with the same (kind, name, version, variant)
   * is a `conflict`, one sharing a target with another variant of its version an `overlap`.
   */
  async put(artifact: NewArtifact): Promise<PutArtifactOutcome> {
    const variant = variantOf(artifact.targets);
    const before = await this.clash(artifact, variant);
    if (before) return before;
    const { p } = this.sql;
    const targets = [
      ...new Map(artifact.targets.map((t) => [`${t.executionProvider}:${t.hardwareClass}`, t])).values(),
    ];
    try {
      await this.sql.write([
        {
          sql: `INSERT INTO artifacts (${COLUMNS})
            VALUES (${[...Array(11).keys()].map((i) => p(i + 1)).join(', ')})`,
          params: [
            artifact.id,
            artifact.kind,
            artifact.name,
            artifact.version,
            variant,
            artifact.bytes,
            artifact.keyId,
            JSON.stringify(artifact.manifest),
            artifact.expiresAt,
            artifact.publishedAt,
            artifact.publishedBy,
          ],
        },
        ...targets.map((t) => ({
          sql: `INSERT INTO artifact_targets (artifact, kind, name, version, hardware_class, execution_provider)
            VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)})`,
          params: [
            artifact.id,
            artifact.kind,
            artifact.name,
            artifact.version,
            t.hardwareClass,
            t.executionProvider,
          ],
        })),
      ]);
    } catch (err) {
      // a publication of the same key that committed between the check and this write
      const raced = await this.clash(artifact, variant);
      if (raced) return raced;
      throw err;
    }
    const stored = await this.get(artifact.id);
    if (!stored) throw new Error(`artifact ${artifact.id} was stored but cannot be read back`);
    return { outcome: 'created', artifact: stored };
  }

  async list(filter: ArtifactListFilter): Promise<ArtifactPage> {
    const { p } = this.sql;
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (filter.kind !== undefined) {
      params.push(filter.kind);
      where.push(`kind = ${p(params.length)}`);
    }
    if (filter.name !== undefined) {
      params.push(filter.name);
      where.push(`name = ${p(params.length)}`);
    }
    if (filter.after !== undefined) {
      const m = CURSOR.exec(filter.after);
      if (!m) throw new Error(`"${filter.after}" is not a cursor of this listing`);
      params.push(Number(m[1]), m[2]!);
      where.push(`(published_at, id) < (${p(params.length - 1)}, ${p(params.length)})`);
    }
    params.push(filter.limit + 1);
    const rows = await this.sql.read<ArtifactRow>(
      `SELECT ${COLUMNS} FROM artifacts ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY published_at DESC, id DESC LIMIT ${p(params.length)}`,
      params,
    );
    const artifacts = rows.slice(0, filter.limit).map(recordOf);
    return {
      artifacts,
      next: rows.length > filter.limit && artifacts.length > 0 ? cursorOf(artifacts.at(-1)!) : null,
    };
  }

  /**
   * The oldest artifacts first (published before `before`, when given), `limit` at most, after the
   * position `after` (publishedAt, id) of the previous call's last
   */
  async oldest(
    limit: number,
    options: { before?: number; after?: { publishedAt: number; id: string } } = {},
  ): Promise<ArtifactRecord[]> {
    const { p } = this.sql;
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (options.before !== undefined) {
      params.push(options.before);
      where.push(`published_at < ${p(params.length)}`);
    }
    if (options.after !== undefined) {
      params.push(options.after.publishedAt, options.after.id);
      where.push(`(published_at, id) > (${p(params.length - 1)}, ${p(params.length)})`);
    }
    params.push(limit);
    const rows = await this.sql.read<ArtifactRow>(
      `SELECT ${COLUMNS} FROM artifacts ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY published_at, id LIMIT ${p(params.length)}`,
      params,
    );
    return rows.map(recordOf);
  }

  /** bytes of every artifact */
  async totalBytes(): Promise<number> {
    const [row] = await this.sql.read<{ total: number | string | null }>(
      'SELECT sum(bytes) AS total FROM artifacts',
    );
    return Number(row?.total ?? 0);
  }

  /** removes the artifact's row and its targets; true when there was one */
  async delete(id: string): Promise<boolean> {
    const { p } = this.sql;
    const [, outcome] = await this.sql.write([
      { sql: `DELETE FROM artifact_targets WHERE artifact = ${p(1)}`, params: [id] },
      { sql: `DELETE FROM artifacts WHERE id = ${p(1)}`, params: [id] },
    ]);
    return (outcome?.changes ?? 0) > 0;
  }
}
