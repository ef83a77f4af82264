import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import { CONTRACT_BOUNDS } from '../../contract/bounds.ts';
import type { ArtifactKind, ArtifactRef } from '../../contract/ota.ts';
import { type BundleLimits, DEFAULT_BUNDLE_LIMITS, digestBundleFile } from '../../models/bundle/container.ts';
import { ANY_HARDWARE_CLASS } from '../../models/bundle/manifest.ts';
import { BundleRejected, type RejectionReason } from '../../models/bundle/rejection.ts';
import { readByVerification, verifyBundleDigests } from '../../models/bundle/verify.ts';
import type { ArtifactSettings, RetentionLimitSettings } from '../config.ts';
import {
  type ArtifactListFilter,
  type ArtifactPage,
  type ArtifactRecord,
  ArtifactStore,
  type ArtifactTarget,
  refOf,
} from '../storage/artifacts.ts';
import type { SqlAccess } from '../storage/sql-access.ts';
import { BlobTooLarge, type ByteRange, FsBlobStore, spoolToFile } from './blob-store.ts';

/**
 * The artifact registry: signed model and scene bundles that rollouts send to devices. A bundle is
 * published by streaming it to a staging file in the blob store's directory (never held whole in
 * memory, cut at the size limit), verified there as a stream like a box verifies it (signature by
 * a key of the control plane's trusted factory keyring, every file's sha256 and size, expiry, the
 * container's absolute limits on size and expansion) holding only the manifest, its signature and
 * the descriptor in memory, then moved into the BlobStore under the sha256 of the file, with its
 * metadata in the database. An upload that is cut, too large or refused leaves nothing behind.
 *
 * Variants: a model may be published in several bundles of the same name and version, each for
 * its own targets (e.g. int8 for `cpu:x86_64-avx512vnni`, fp32 for `cuda:jetson-orin`); no two
 * variants of a version share a target. `variantFor` picks a device's variant from its identity:
 *   1. a target whose hardware class is the device's, with the first of the device's execution
 *      providers (they are listed preferred first) that some variant targets;
 *   2. else a target of hardware class `any` (a bundle built to run on every class, e.g. fp32 on
 *      CPU), again by the device's provider order;
 *   3. else none: the device gets nothing rather than a model built for other hardware.
 * A scene fits every device: it has one variant.
 */

/** the hardware class of a target that fits every device (the fallback of `variantFor`) */
export { ANY_HARDWARE_CLASS };

/** what a device says of itself in its identity message */
export interface DeviceTargets {
  hardwareClass: string;
  /** preferred first */
  executionProviders: readonly string[];
}

/**
 * What the rollouts know of artifacts: which device has an assignment of which artifact (the
 * device download answers 404 otherwise) and which artifacts a rollout references (they are
 * neither deleted nor retained away). The rollouts' store implements it; the server passes it to
 * the registry when it builds both.
 */
export interface ArtifactReferences {
  assignedTo(device: string, artifactId: string): Promise<boolean>;
  /** those of `artifactIds` that some rollout references */
  referenced(artifactIds: readonly string[]): Promise<ReadonlySet<string>>;
}

/** no rollouts: nothing is assigned to any device, and nothing is referenced */
export const NO_REFERENCES: ArtifactReferences = {
  assignedTo: async () => false,
  referenced: async () => new Set(),
};

/** why a publication was refused: the HTTP status, what is wrong and what to do */
export class PublishRefused extends ArgusError {
  constructor(
    readonly status: 400 | 409 | 413 | 422 | 503,
    /** a BundleRejected reason, or what else refused it */
    readonly reason: RejectionReason | 'conflict' | 'overlap' | 'out-of-bounds' | 'busy' | 'incomplete',
    message: string,
    hint: string,
  ) {
    super(message, hint);
    this.name = 'PublishRefused';
  }
}

export interface Published {
  artifact: ArtifactRecord;
  /** false: the same bundle was already published (nothing changed) */
  created: boolean;
}

export type DeleteOutcome = 'deleted' | 'missing' | 'referenced';

/** a download slot, or why there is none */
export type DownloadSlot = { release(): void } | 'device-busy' | 'busy';

export interface ArtifactRetentionReport {
  deletedByAge: number;
  deletedBySize: number;
  bytesDeleted: number;
  storedBytes: number;
}

export interface ArtifactRegistryOptions {
  sql: SqlAccess;
  settings: ArtifactSettings;
  /** default: the filesystem store in `settings.dir` */
  blobs?: FsBlobStore;
  /** default: NO_REFERENCES (until the rollouts' store is passed) */
  references?: ArtifactReferences;
  clock?: () => number;
}

const B = CONTRACT_BOUNDS;
/** a target's provider and class: they are matched against a device's identity and form the variant's text */
const TARGET_PART = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const MAX_TARGETS = B.items;
/** artifacts looked at by one retention read */
const RETENTION_BATCH = 200;
const DAY_MS = 86_400_000;
/** errors of a request body whose client went away */
const CUT_OFF = new Set(['ERR_STREAM_PREMATURE_CLOSE', 'ECONNRESET', 'ECONNABORTED']);
const MiB = 1 << 20;
/** bytes of one file verification reads whole (a manifest is bounded to 1 MiB when parsed) */
const MAX_READ_WHOLE_BYTES = MiB;

/**
 * the container's limits for an upload of at most `maxUploadBytes`: absolute (the config bounds
 * `maxUploadBytes`), a plain tar expands to its own size, a compressed one no further than that
 * or the boxes' default limit, whichever is larger
 */
export function uploadLimits(maxUploadBytes: number): BundleLimits {
  const expanded = Math.max(maxUploadBytes, DEFAULT_BUNDLE_LIMITS.maxExpandedBytes);
  return {
    maxBundleBytes: maxUploadBytes,
    maxExpandedBytes: expanded,
    maxFileBytes: expanded,
    maxFiles: DEFAULT_BUNDLE_LIMITS.maxFiles,
  };
}

function outOfBounds(message: string): PublishRefused {
  return new PublishRefused(
    422,
    'out-of-bounds',
    message,
    'rebuild the bundle within the bounds of the OTA contract (contract/bounds.ts)',
  );
}

/** the bounds a manifest must keep to become an ArtifactRef and select variants */
function checkBounds(record: Omit<ArtifactRecord, 'variant'>): void {
  if (record.name.length > B.name) throw outOfBounds(`the bundle's name is longer than ${B.name} characters`);
  if (record.version > B.int32)
    throw outOfBounds(`the bundle's version ${record.version} exceeds ${B.int32}`);
  if (record.targets.length > MAX_TARGETS)
    throw outOfBounds(`the bundle has ${record.targets.length} targets, more than ${MAX_TARGETS}`);
  for (const t of record.targets)
    for (const part of [t.hardwareClass, t.executionProvider])
      if (part.length > B.name || !TARGET_PART.test(part))
        throw outOfBounds(
          `target "${t.executionProvider}:${t.hardwareClass}": "${part.slice(0, B.name)}" is not a name of letters, digits, ".", "_", "+" and "-" up to ${B.name} characters`,
        );
}

export class ArtifactRegistry {
  readonly store: ArtifactStore;
  readonly blobs: FsBlobStore;
  readonly references: ArtifactReferences;
  private readonly settings: ArtifactSettings;
  private readonly clock: () => number;
  private uploads = 0;
  private downloads = 0;
  private readonly perDevice = new Map<string, number>();

  constructor(options: ArtifactRegistryOptions) {
    this.store = new ArtifactStore(options.sql);
    this.settings = options.settings;
    this.blobs = options.blobs ?? new FsBlobStore(options.settings.dir);
    this.references = options.references ?? NO_REFERENCES;
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Publishes the bundle streamed in `source` (by `publishedBy`), or throws PublishRefused with
   * the reason. The same bundle again answers the stored artifact with `created: false`.
   */
  async publish(source: Readable | AsyncIterable<Uint8Array>, publishedBy: string): Promise<Published> {
    if (this.uploads >= this.settings.uploadsAtOnce)
      throw new PublishRefused(
        503,
        'busy',
        `${this.uploads} bundles are being verified, the limit (artifacts.uploadsAtOnce)`,
        'retry in a few seconds',
      );
    this.uploads++;
    const staged = await this.blobs.stagingFile();
    try {
      const max = this.settings.maxUploadBytes;
      const spooled = await spoolToFile(source, staged, max).catch((err: unknown) => {
        if (err instanceof BlobTooLarge)
          throw new PublishRefused(
            413,
            'too-large',
            `the bundle is larger than ${max} bytes, the control plane's limit (artifacts.maxUploadBytes); it was not stored`,
            'make the bundle smaller (e.g. `argus models quantize`) or raise artifacts.maxUploadBytes',
          );
        const code = (err as NodeJS.ErrnoException).code ?? '';
        const cut = (source as Partial<Readable>).readableAborted === true || CUT_OFF.has(code);
        if (!cut) throw err;
        throw new PublishRefused(
          400,
          'incomplete',
          `the upload ended before the whole bundle arrived (${errorMessage(err)}); nothing was stored`,
          'publish it again',
        );
      });
      const what = `uploaded bundle (sha256 ${spooled.sha256.slice(0, 12)}…)`;
      const limits = uploadLimits(max);
      let verified: Awaited<ReturnType<typeof verifyBundleDigests>>;
      try {
        const digests = await digestBundleFile(
          staged,
          limits,
          { keep: readByVerification, maxKeptBytes: MAX_READ_WHOLE_BYTES },
          what,
        );
        verified = await verifyBundleDigests(what, digests, {
          keyring: this.settings.keyring,
          limits,
          now: new Date(this.clock()),
          // the control plane installs nothing: a directory that never exists, so the version
          // check (a box's) does not apply here
          installedDir: join(this.blobs.stagingDir, 'nothing-installed'),
        });
      } catch (err) {
        if (err instanceof BundleRejected)
          throw new PublishRefused(
            err.reason === 'too-large' ? 413 : 422,
            err.reason,
            err.message,
            err.hint ?? 'rebuild and sign the bundle with `argus models build --key NAME`',
          );
        throw err;
      }
      const { manifest } = verified;
      const record = {
        id: spooled.sha256,
        kind: manifest.kind,
        name: manifest.name,
        version: manifest.version,
        bytes: spooled.bytes,
        keyId: verified.signature.keyId,
        manifest,
        targets:
          manifest.kind === 'model'
            ? manifest.targets.map((t) => ({
                hardwareClass: t.hardwareClass,
                executionProvider: t.executionProvider,
              }))
            : [],
        expiresAt: Date.parse(manifest.expires),
        publishedAt: this.clock(),
        publishedBy,
      };
      checkBounds(record);
      const existing = await this.store.get(record.id);
      if (existing) return { artifact: existing, created: false };
      // the bytes first: a row is only ever visible with its blob
      await this.blobs.adopt(staged, spooled);
      const outcome = await this.store.put(record);
      if (!('existing' in outcome))
        return { artifact: outcome.artifact, created: outcome.outcome === 'created' };
      await this.blobs.delete(record.id);
      const label = `${record.kind} ${record.name} v${record.version}`;
      if (outcome.outcome === 'conflict')
        throw new PublishRefused(
          409,
          'conflict',
          `${label} for ${outcome.existing.variant || 'every device'} is already published with other bytes (artifact ${outcome.existing.id})`,
          'publish it under a new version: a published version never changes',
        );
      throw new PublishRefused(
        409,
        'overlap',
        `${label}: target ${outcome.target.executionProvider}:${outcome.target.hardwareClass} is already served by another variant (artifact ${outcome.existing.id}, ${outcome.existing.variant})`,
        'give each variant of a version its own targets (--target PROVIDER:CLASS when building)',
      );
    } finally {
      this.uploads--;
      await rm(staged, { force: true });
    }
  }

  get(id: string): Promise<ArtifactRecord | undefined> {
    return this.store.get(id);
  }

  list(filter: ArtifactListFilter): Promise<ArtifactPage> {
    return this.store.list(filter);
  }

  /** the variant of (kind, name, version) for a device with this identity (see the module's comment) */
  async variantFor(
    kind: ArtifactKind,
    name: string,
    version: number,
    device: DeviceTargets,
  ): Promise<ArtifactRef | undefined> {
    const variants = await this.store.variants(kind, name, version);
    if (kind === 'scene') return variants[0] && refOf(variants[0]);
    return pickVariant(variants, device);
  }

  /** when the artifact expires (ms since the epoch, from its manifest); undefined when there is none */
  async expiresAt(id: string): Promise<number | undefined> {
    return (await this.store.get(id))?.expiresAt;
  }

  /** removes an artifact, bytes and row, unless a rollout references it */
  async delete(id: string): Promise<DeleteOutcome> {
    if (!(await this.store.get(id))) return 'missing';
    if ((await this.references.referenced([id])).has(id)) return 'referenced';
    await this.remove(id);
    return 'deleted';
  }

  private async remove(id: string): Promise<void> {
    await this.store.delete(id);
    // a publication of the same bytes since then keeps its blob
    if (!(await this.store.get(id))) await this.blobs.delete(id);
  }

  /** the artifact's bytes for `device`, when it is assigned to it: the record, and a stream of `range` */
  async download(
    device: string,
    id: string,
    range?: ByteRange,
  ): Promise<{ artifact: ArtifactRecord; open: (range?: ByteRange) => Promise<Readable> } | undefined> {
    const artifact = await this.store.get(id);
    if (!artifact || !(await this.references.assignedTo(device, id))) return undefined;
    return {
      artifact,
      open: async (r = range) => {
        const stream = await this.blobs.get(id, r);
        if (!stream) throw new Error(`artifact ${id} has a row but no bytes in ${this.settings.dir}`);
        return stream;
      },
    };
  }

  /** a slot for one download by `device`, within artifacts.downloadsPerDevice and artifacts.downloads */
  downloadSlot(device: string): DownloadSlot {
    const mine = this.perDevice.get(device) ?? 0;
    if (mine >= this.settings.downloadsPerDevice) return 'device-busy';
    if (this.downloads >= this.settings.downloads) return 'busy';
    this.downloads++;
    this.perDevice.set(device, mine + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.downloads--;
        const left = (this.perDevice.get(device) ?? 1) - 1;
        if (left === 0) this.perDevice.delete(device);
        else this.perDevice.set(device, left);
      },
    };
  }

  /** downloads open now (for /metrics and tests) */
  get openDownloads(): number {
    return this.downloads;
  }

  /**
   * Retention of artifacts: those no rollout references go, bytes and row, when older than
   * `maxAgeDays`, then the oldest of them until the artifacts' bytes are within `maxMiB`.
   * `check` throws when the caller lost its lease.
   */
  async retain(
    limit: RetentionLimitSettings,
    check: () => void,
    count: (by: 'age' | 'size', rows: number, bytes: number) => void = () => undefined,
  ): Promise<ArtifactRetentionReport> {
    const report: ArtifactRetentionReport = {
      deletedByAge: 0,
      deletedBySize: 0,
      bytesDeleted: 0,
      storedBytes: 0,
    };
    const now = this.clock();
    const sweep = async (before: number | undefined, enough: () => boolean, by: 'age' | 'size') => {
      let after: { publishedAt: number; id: string } | undefined;
      for (;;) {
        check();
        if (enough()) return;
        const batch = await this.store.oldest(RETENTION_BATCH, {
          ...(before !== undefined ? { before } : {}),
          ...(after ? { after } : {}),
        });
        if (batch.length === 0) return;
        const kept = await this.references.referenced(batch.map((a) => a.id));
        for (const a of batch) {
          if (enough()) return;
          if (kept.has(a.id)) continue;
          check();
          await this.remove(a.id);
          count(by, 1, a.bytes);
          report.bytesDeleted += a.bytes;
          stored -= a.bytes;
          if (by === 'age') report.deletedByAge++;
          else report.deletedBySize++;
        }
        const last = batch.at(-1)!;
        after = { publishedAt: last.publishedAt, id: last.id };
      }
    };
    let stored = await this.store.totalBytes();
    await sweep(now - limit.maxAgeDays * DAY_MS, () => false, 'age');
    const maxBytes = limit.maxMiB * MiB;
    await sweep(undefined, () => stored <= maxBytes, 'size');
    report.storedBytes = Math.max(0, stored);
    return report;
  }
}

/** the variant for `device` among the variants of one model version (see the module's comment) */
export function pickVariant(
  variants: readonly ArtifactRecord[],
  device: DeviceTargets,
): ArtifactRef | undefined {
  for (const hardwareClass of [device.hardwareClass, ANY_HARDWARE_CLASS])
    for (const provider of device.executionProviders) {
      const fit = variants.find((v) =>
        v.targets.some(
          (t: ArtifactTarget) => t.hardwareClass === hardwareClass && t.executionProvider === provider,
        ),
      );
      if (fit) return refOf(fit);
    }
  return undefined;
}
