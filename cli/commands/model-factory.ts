import { join, resolve } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { hardwareClass } from '../../inference/hardware-class.ts';
import { type LoadedModel, loadModel, modelsDir } from '../../inference/model-dir.ts';
import { readLineage, writeDerivedModel } from '../../models/bundle/lineage.ts';
import { DEFAULT_EVALUATE_OPTIONS, evaluateCandidate } from '../../models/evaluate/evaluate.ts';
import { checkGate, DEFAULT_GATE, loadGateConfig } from '../../models/evaluate/gate.ts';
import {
  evaluationReportPath,
  formatEvaluation,
  writeEvaluationReport,
} from '../../models/evaluate/report.ts';
import { pruneClasses, TRAFFIC_LABELS } from '../../models/prune/prune.ts';
import { loadQuantizeConfig, quantizeConfig } from '../../models/quant/config.ts';
import { DEFAULT_EVALUATION_FRAMES, parseFrameRange } from '../../models/quant/frames.ts';
import { quantizableNodes, quantizeModel } from '../../models/quant/quantize.ts';
import { type Command, integerOption, onePositional, parseCommandArgs } from '../command.ts';

/** where a derived model goes: the directory --out (a path, never a cache name), else the model cache under its name */
function outputDir(out: string | undefined, name: string): string {
  return out ? resolve(out) : join(modelsDir(), name);
}

export const modelsQuantize: Command = {
  path: ['models', 'quantize'],
  summary: 'static int8 quantization (QDQ) of a model, calibrated on frames of a recording',
  usage:
    'argus models quantize MODEL [--config FILE] [--video FILE] [--name NAME] [--out DIR] [--list-nodes]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      config: {
        type: 'string',
        value: 'FILE',
        description: 'quantization settings (YAML): nodes to keep in float, calibration frames',
      },
      video: {
        type: 'string',
        value: 'FILE',
        description: 'the recording to calibrate on (default: the sample video)',
      },
      name: { type: 'string', value: 'NAME', description: 'the name of the quantized model' },
      out: { type: 'string', value: 'DIR', description: 'where to write it (default: the model cache)' },
      'list-nodes': { type: 'boolean', description: "list the model's nodes (for the config) and exit" },
    });
    const source = await loadModel(onePositional(this, positionals, 'MODEL'));
    if (values['list-nodes']) {
      for (const n of quantizableNodes(source)) {
        const note = n.computedWeights ? '  (computed weights: cannot be int8; keep it in float)' : '';
        ctx.stdout.write(`${n.opType.padEnd(18)} ${n.name}${note}\n`);
      }
      return 0;
    }
    const config = values.config ? await loadQuantizeConfig(values.config) : quantizeConfig();
    const derived = await quantizeModel(source, {
      config,
      video: values.video ?? config.calibrationVideo ?? SAMPLE_VIDEO,
      signal: ctx.signal,
      ...(values.name ? { name: values.name } : {}),
    });
    const dir = outputDir(values.out, derived.descriptor.name);
    await writeDerivedModel(dir, derived);
    const mb = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
    ctx.stdout.write(
      `quantized ${source.descriptor.name} → ${derived.descriptor.name} (${mb(source.bytes.length)} → ${mb(derived.bytes.length)}) in ${dir}\n` +
        `next: argus models evaluate ${dir}\n`,
    );
    return 0;
  },
};

export const modelsPrune: Command = {
  path: ['models', 'prune'],
  summary: 'a detector variant whose head keeps only the given classes',
  usage: `argus models prune MODEL --keep LABEL,LABEL,... [--name NAME] [--out DIR]   (e.g. --keep ${TRAFFIC_LABELS.join(',')})`,
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      keep: { type: 'string', value: 'LABEL,…', description: 'the classes to keep (required)' },
      name: { type: 'string', value: 'NAME', description: 'the name of the pruned model' },
      out: { type: 'string', value: 'DIR', description: 'where to write it (default: the model cache)' },
    });
    if (!values.keep) throw new ArgusError('--keep is required', `usage: ${this.usage}`);
    const source = await loadModel(onePositional(this, positionals, 'MODEL'));
    const keep = values.keep
      .split(',')
      .map((l) => l.trim())
      .filter(Boolean);
    const derived = await pruneClasses(source, { keep, ...(values.name ? { name: values.name } : {}) });
    const dir = outputDir(values.out, derived.descriptor.name);
    await writeDerivedModel(dir, derived);
    ctx.stdout.write(
      `pruned ${source.descriptor.name} to ${derived.descriptor.labels.length} classes (${derived.descriptor.labels.join(', ')}) → ${dir}\n`,
    );
    return 0;
  },
};

/** the model a candidate was derived from, as installed, when --reference is not given */
async function defaultReference(candidate: LoadedModel): Promise<LoadedModel> {
  const origin = (await readLineage(candidate.dir)).derivedFrom;
  if (!origin) {
    throw new ArgusError(
      `${candidate.descriptor.name} has no lineage naming what it was derived from`,
      'pass --reference MODEL',
    );
  }
  const reference = await loadModel(origin.name);
  if (reference.descriptor.sha256 !== origin.sha256) {
    throw new ArgusError(
      `${candidate.descriptor.name} was derived from another file of ${origin.name} v${origin.version} than the one installed`,
      'pass --reference with the model directory it was derived from',
    );
  }
  return reference;
}

export const modelsEvaluate: Command = {
  path: ['models', 'evaluate'],
  summary: 'agreement (mAP@0.5) and latency of a derived model against its reference, checked by the gate',
  usage: `argus models evaluate CANDIDATE [--reference MODEL] [--frames FIRST-LAST/STEP (${DEFAULT_EVALUATION_FRAMES})] [--video FILE] [--threads N] [--runs N] [--gate FILE] [--out FILE] [--json]`,
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      reference: {
        type: 'string',
        value: 'MODEL',
        description: 'the model to compare with (default: the one the candidate was derived from)',
      },
      frames: {
        type: 'string',
        value: 'FIRST-LAST/STEP',
        description: `the frames to compare on (default ${DEFAULT_EVALUATION_FRAMES})`,
      },
      video: {
        type: 'string',
        value: 'FILE',
        description: 'the recording to compare on (default: the sample video)',
      },
      threads: { type: 'string', value: 'N', description: 'inference threads (0: as many as cores)' },
      runs: { type: 'string', value: 'N', description: 'latency measurement runs' },
      gate: {
        type: 'string',
        value: 'FILE',
        description: 'the gate (YAML) to check the result against (default: the built-in gate)',
      },
      out: {
        type: 'string',
        value: 'FILE',
        description: 'where to write the report (default: beside the candidate)',
      },
      json: { type: 'boolean', description: 'print the report as JSON' },
    });
    const candidate = await loadModel(onePositional(this, positionals, 'CANDIDATE'));
    const reference = values.reference
      ? await loadModel(values.reference)
      : await defaultReference(candidate);
    const gate = values.gate ? await loadGateConfig(values.gate) : DEFAULT_GATE;
    const report = await evaluateCandidate(reference, candidate, {
      ...DEFAULT_EVALUATE_OPTIONS,
      frames: parseFrameRange(values.frames ?? DEFAULT_EVALUATION_FRAMES, values.video ?? SAMPLE_VIDEO),
      threads: integerOption(values.threads, '--threads', 0) ?? DEFAULT_EVALUATE_OPTIONS.threads,
      latencyRuns: integerOption(values.runs, '--runs', 1) ?? DEFAULT_EVALUATE_OPTIONS.latencyRuns,
      signal: ctx.signal,
    });
    const out = values.out ?? evaluationReportPath(candidate.dir, hardwareClass());
    await writeEvaluationReport(out, report);
    const verdict = checkGate(report, gate);
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify({ ...report, gate: { ...gate, ...verdict }, reportFile: out })}\n`);
    } else {
      ctx.stdout.write(formatEvaluation(report));
      ctx.stdout.write(
        verdict.passed
          ? `  gate passed (mAP@0.5 ≥ ${gate.minMap50}, latency ratio ≤ ${gate.maxLatencyRatio})\n  report: ${out}\n`
          : `  gate FAILED:\n    ${verdict.failures.join('\n    ')}\n  report: ${out}\n`,
      );
    }
    return verdict.passed ? 0 : 1;
  },
};
