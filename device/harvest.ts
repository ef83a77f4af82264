import { errorMessage } from '../common/errors.ts';
import { timeOrderedId } from '../common/ids.ts';
import type { Logger } from '../common/logger.ts';
import {
  HARVEST_REASON_NAMES,
  type HarvestUploadQuery,
  MAX_HARVEST_BYTES,
  type Telemetry,
} from '../contract/index.ts';
import type { Detection, FrameDetector } from '../inference/detector.ts';
import type { DetectorSettings } from '../inference/settings.ts';
import { ThreadedDetector } from '../inference/threaded-detector.ts';
import { ensureModelInstalled } from '../models/store.ts';
import type { HarvestConfig } from '../pipelines/harvest/config.ts';
import { frameHash } from '../pipelines/harvest/frame-hash.ts';
import { type HarvestDecision, HarvestSelector } from '../pipelines/harvest/selector.ts';
import type { DetectedFrame } from '../pipelines/runtime/camera.ts';
import { renderAnnotatedJpeg } from '../pipelines/snapshot.ts';
import type { Spool } from './spool.ts';

export type HarvestTelemetry = NonNullable<Telemetry['harvest']>;

/** frames being encoded at once at most; a decision beyond it is let go (nothing is spent) */
const ENCODING_AT_ONCE = 1;

/**
 * The box's side of the data–model loop: every detected frame of every camera goes through the
 * HarvestSelector (pipelines/harvest); a frame it decides on is encoded (the whole frame, nothing
 * drawn on it), committed against the budget with its JPEG's size and, when it fits, written to the
 * spool's harvest queue with its upload's query string and the record of what the budget spent —
 * one transaction, so a restart neither loses the frame nor forgets its cost (the selector starts
 * from the spool's record of the last 24 hours). The harvest uploader (device/snapshots.ts, queue
 * `harvest`) sends it when the control plane can be reached, as it sends snapshots.
 */
export class Harvester {
  private readonly selector: HarvestSelector;
  private encoding = 0;
  private readonly byReason = Object.fromEntries(
    HARVEST_REASON_NAMES.map((r) => [r, 0]),
  ) as HarvestTelemetry['byReason'];
  private spotChecks = 0;
  /** the spot checks' reference model, once loaded (harvest.referenceModel) */
  private reference: FrameDetector | undefined;
  private checking = false;
  private nextSpotCheck = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly config: HarvestConfig,
    private readonly spool: Spool,
    /** the model the cameras run now (its name and version go with each frame) */
    private readonly model: () => { name: string; version: number },
    /** a frame is in the spool's harvest queue */
    private readonly queued: () => void,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    this.selector = new HarvestSelector(config, clock, spool.harvestSpent(clock()));
  }

  /**
   * Loads the spot checks' reference model (harvest.referenceModel) on a detector thread of its own
   * at the lowest priority; without one, or when it cannot be loaded (logged), there are no spot checks
   */
  async start(detector: DetectorSettings): Promise<void> {
    const model = this.config.referenceModel;
    if (!this.config.enabled || !model || this.config.spotCheckEveryS <= 0) return;
    try {
      await ensureModelInstalled(model);
      this.reference = await ThreadedDetector.load(
        { ...detector, model, sessions: 1, intraOpThreads: 1, threadNice: 19, maxBatch: 1 },
        this.log,
      );
    } catch (err) {
      this.log.error(
        { model, err: errorMessage(err) },
        'the spot checks’ reference model cannot be loaded: no spot checks',
      );
    }
  }

  async stop(): Promise<void> {
    await this.reference?.close();
    this.reference = undefined;
  }

  /**
   * A camera's detected frame (CameraRuntime.onDetected). Every `spotCheckEveryS` one frame is
   * first run through the reference model and judged once it answered, with its detections.
   */
  observe(d: DetectedFrame): void {
    if (!this.config.enabled) return;
    const now = this.clock();
    const reference = this.reference;
    if (reference && !this.checking && now >= this.nextSpotCheck) {
      this.nextSpotCheck = now + this.config.spotCheckEveryS * 1000;
      if (reference.inputWidth !== d.modelSize.width || reference.inputHeight !== d.modelSize.height) {
        this.log.error(
          {
            reference: reference.descriptor.name,
            takes: [reference.inputWidth, reference.inputHeight],
            frames: d.modelSize,
          },
          'the spot checks’ reference model takes another input size than the running model: no spot checks',
        );
        this.reference = undefined;
        void reference.close();
      } else {
        this.checking = true;
        const frame = {
          pixels: d.frame.model.slice(),
          sourceWidth: d.frame.full.width,
          sourceHeight: d.frame.full.height,
        };
        void reference
          .detect([frame])
          .then(
            ([found]) => this.judge(d, found ?? []),
            (err: unknown) => {
              this.log.warn({ err: errorMessage(err) }, 'spot check failed');
              this.judge(d);
            },
          )
          .finally(() => {
            this.checking = false;
          });
        return;
      }
    }
    this.judge(d);
  }

  private judge(d: DetectedFrame, spotCheck?: readonly Detection[]): void {
    if (spotCheck) this.spotChecks++;
    const decision = this.selector.consider({
      camera: d.camera,
      t: d.t,
      width: d.frame.full.width,
      height: d.frame.full.height,
      detections: d.detections,
      tracks: d.tracks,
      ...(d.searched ? { motion: d.searched } : {}),
      ...(spotCheck ? { spotCheck } : {}),
      hash: () => frameHash({ pixels: d.frame.model, ...d.modelSize, channels: 3 }),
    });
    if (!decision || this.encoding >= ENCODING_AT_ONCE) return;
    this.encoding++;
    void this.keep(d, decision).finally(() => this.encoding--);
  }

  private async keep(d: DetectedFrame, decision: HarvestDecision): Promise<void> {
    try {
      const jpeg = await renderAnnotatedJpeg(d.frame.full, [], this.config.jpegQuality);
      if (jpeg.length > MAX_HARVEST_BYTES || !this.selector.commit(decision, jpeg.length)) return;
      const model = this.model();
      const query: HarvestUploadQuery = {
        camera: d.camera,
        capturedAt: new Date(d.frame.receivedAt).toISOString(),
        reasons: decision.reasons.join(','),
        model: model.name,
        modelVersion: model.version,
      };
      const upload = new URLSearchParams(
        Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]),
      ).toString();
      this.spool.addHarvested({ id: timeOrderedId(), jpeg, upload }, this.clock());
      for (const r of decision.reasons) this.byReason[r]++;
      this.queued();
    } catch (err) {
      this.log.error({ camera: d.camera, err: errorMessage(err) }, 'harvested frame not kept');
    }
  }

  stats(): HarvestTelemetry {
    const s = this.selector.stats();
    return {
      considered: s.considered,
      candidates: s.candidates,
      duplicates: s.duplicates,
      overBudget: s.overBudget,
      kept: s.kept,
      keptBytes: s.keptBytes,
      spotChecks: this.spotChecks,
      byReason: { ...this.byReason },
      ...this.selector.budgetUse(),
    };
  }
}
