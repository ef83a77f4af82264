import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/fs-atomic.ts';
import { compileSchema } from '../../common/schema.ts';
import { ModelRefSchema } from '../bundle/lineage.ts';
import { FrameSetSchema } from '../quant/frames.ts';

/**
 * What `argus models evaluate` measured: agreement of a candidate with its reference (mAP@0.5 with
 * the reference's detections as ground truth, per class and overall) and their latencies measured
 * in the same run on the same hardware. The gate and the bundle builder read it.
 */

const ClassResult = Type.Object(
  {
    label: Type.String(),
    /** null when the reference found no object of this class */
    ap50: Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()]),
    /** reference detections (the ground truth) */
    truths: Type.Integer({ minimum: 0 }),
    /** candidate detections above the evaluation's candidate score threshold */
    detections: Type.Integer({ minimum: 0 }),
    truePositives: Type.Integer({ minimum: 0 }),
    /** whether the class enters the mean (enough ground truth) */
    counted: Type.Boolean(),
  },
  { additionalProperties: false },
);

const Latency = Type.Object(
  {
    /** per frame, detect() end to end (inference, decoding, NMS), median of the timed runs */
    referenceP50Ms: Type.Number({ minimum: 0 }),
    candidateP50Ms: Type.Number({ minimum: 0 }),
    referenceP95Ms: Type.Number({ minimum: 0 }),
    candidateP95Ms: Type.Number({ minimum: 0 }),
    /** candidate p50 / reference p50 */
    ratio: Type.Number({ minimum: 0 }),
    runs: Type.Integer({ minimum: 1 }),
    threads: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

export const EvaluationReportSchema = Type.Object(
  {
    schemaVersion: Type.Literal(1),
    createdAt: Type.String({ format: 'date-time' }),
    candidate: ModelRefSchema,
    reference: ModelRefSchema,
    hardwareClass: Type.String({ minLength: 1 }),
    cpu: Type.String(),
    frames: FrameSetSchema,
    frameCount: Type.Integer({ minimum: 1 }),
    iouThreshold: Type.Number({ minimum: 0, maximum: 1 }),
    referenceScoreThreshold: Type.Number({ minimum: 0, maximum: 1 }),
    candidateScoreThreshold: Type.Number({ minimum: 0, maximum: 1 }),
    /** classes with fewer reference detections are reported but not averaged */
    minTruths: Type.Integer({ minimum: 1 }),
    map50: Type.Number({ minimum: 0, maximum: 1 }),
    perClass: Type.Array(ClassResult),
    latency: Latency,
    sizes: Type.Object(
      { referenceBytes: Type.Integer({ minimum: 0 }), candidateBytes: Type.Integer({ minimum: 0 }) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type EvaluationReport = Type.Static<typeof EvaluationReportSchema>;

export const evaluationReportValidator = compileSchema<EvaluationReport>(EvaluationReportSchema);

const REPORT_FILE = /^evaluation-.+\.json$/;

/** where `argus models evaluate` keeps a model's report for one hardware class */
export function evaluationReportPath(modelDir: string, hardwareClass: string): string {
  return join(modelDir, `evaluation-${hardwareClass}.json`);
}

/** the evaluation reports in a model directory, one per hardware class measured */
export async function evaluationReportsIn(modelDir: string): Promise<string[]> {
  const names = await readdir(modelDir).catch(() => [] as string[]);
  return names.filter((n) => REPORT_FILE.test(n)).map((n) => join(modelDir, n));
}

export async function readEvaluationReport(path: string): Promise<EvaluationReport> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ArgusError(`cannot read evaluation report ${path}: ${(err as Error).message}`);
  }
  return evaluationReportValidator.parse(raw, `evaluation report ${path}`);
}

export async function writeEvaluationReport(path: string, report: EvaluationReport): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(report, null, 2)}\n`);
}

/** a few lines for people: overall and per-class agreement, latency, sizes */
export function formatEvaluation(report: EvaluationReport): string {
  const l = report.latency;
  const mb = (b: number) => `${(b / (1 << 20)).toFixed(1)} MiB`;
  const lines = [
    `${report.candidate.name} v${report.candidate.version} against ${report.reference.name} v${report.reference.version} on ${report.frameCount} frames (${report.hardwareClass}, ${l.threads} thread${l.threads === 1 ? '' : 's'})`,
    `  mAP@0.5 ${report.map50.toFixed(3)} over ${report.perClass.filter((c) => c.counted).length} classes with ≥ ${report.minTruths} reference detections`,
    ...report.perClass
      .filter((c) => c.truths > 0)
      .map(
        (c) =>
          `    ${c.label.padEnd(16)} AP ${c.ap50 === null ? '  -  ' : c.ap50.toFixed(3)}  ${c.truePositives}/${c.truths} found${c.counted ? '' : '  (too few to count)'}`,
      ),
    `  latency p50 ${l.candidateP50Ms.toFixed(1)} ms vs ${l.referenceP50Ms.toFixed(1)} ms: ratio ${l.ratio.toFixed(2)}`,
    `  size ${mb(report.sizes.candidateBytes)} vs ${mb(report.sizes.referenceBytes)}`,
  ];
  return `${lines.join('\n')}\n`;
}
