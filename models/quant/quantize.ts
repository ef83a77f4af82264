import { ArgusError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { createProgress } from '../../common/progress.ts';
import type { LoadedModel } from '../../inference/model-dir.ts';
import { type DerivedModel, extendLineage, type QuantizeLineageStep } from '../bundle/lineage.ts';
import { decodeModel, encodeModel } from '../onnx/codec.ts';
import type { Graph, Model } from '../onnx/ir.ts';
import { calibrateRanges } from './calibrate.ts';
import type { QuantizeConfig } from './config.ts';
import { foldInputNormalization } from './fold-input.ts';
import { type FrameSet, parseFrameRange, readModelFrames, type SiteFrames } from './frames.ts';
import { resolveKeepFloat } from './keep-float.ts';
import { activationQuantParams, insertQdq, planQdq, type QdqPlan } from './qdq.ts';
import { simplifyForQuantization } from './simplify.ts';

/**
 * Static int8 quantization of a model: simplify the graph, calibrate activation ranges on frames of
 * a real recording, insert QDQ pairs and int8 weights. The result is a new model (descriptor with
 * its own name and sha256, lineage naming the source and every setting) that ONNX Runtime runs
 * with integer kernels.
 */

export interface QuantizeOptions {
  config: QuantizeConfig;
  /** recording to calibrate on (its frames `config.calibrationFrames`; default: the sample video) */
  video?: string;
  /**
   * calibrate on these frames instead (at the model's input size, its colour order, HWC uint8),
   * e.g. frames of the site the model is for
   */
  siteFrames?: { frames: readonly Uint8Array[]; set: SiteFrames };
  /** name of the quantized model (default: the source's name + "-int8") */
  name?: string;
  signal?: AbortSignal;
}

function uint8Input(source: LoadedModel): { name: string; dims: number[] } {
  const input = source.descriptor.input;
  if (input.dtype !== 'uint8' || input.layout !== 'NHWC') {
    throw new ArgusError(
      `model ${source.descriptor.name} takes ${input.dtype} ${input.layout} input; calibration feeds uint8 NHWC frames`,
      'quantize a model whose descriptor has a uint8 NHWC input (normalisation folded into the graph)',
    );
  }
  return { name: input.name, dims: [1, input.height, input.width, 3] };
}

export interface QuantizableNode {
  name: string;
  opType: string;
  /** a Conv whose weights are computed, not stored: quantization refuses it unless it is kept in float */
  computedWeights: boolean;
}

/**
 * The nodes of the simplified float graph the quantizer would quantize with nothing kept in float,
 * in graph order, with the Convs whose weights are computed (which must be kept in float)
 */
export function quantizableNodes(source: LoadedModel): QuantizableNode[] {
  const graph = simplifyForQuantization(decodeModel(source.bytes)).graph;
  const plan = planQdq(graph, { activationType: 'uint8', perChannelWeights: true, keepFloat: new Set() });
  const computed = new Set(plan.computedWeights);
  return [...plan.nodes, ...plan.computedWeights]
    .sort((a, b) => a - b)
    .map((i) => ({
      name: graph.nodes[i]!.name,
      opType: graph.nodes[i]!.opType,
      computedWeights: computed.has(i),
    }));
}

/** refuses a plan with Convs whose weights are computed: their weights cannot be stored as int8 */
function checkStorableWeights(graph: Graph, plan: QdqPlan): void {
  if (plan.computedWeights.length === 0) return;
  const names = plan.computedWeights.map((i) => `"${graph.nodes[i]!.name}"`).join(', ');
  throw new ArgusError(
    `Conv ${names} ${plan.computedWeights.length === 1 ? 'has' : 'have'} computed weights, which static quantization cannot store as int8`,
    'keep them in float (quantization config keepFloat.nodes); `--list-nodes` marks every such Conv',
  );
}

export async function quantizeModel(source: LoadedModel, options: QuantizeOptions): Promise<DerivedModel> {
  const { config, signal } = options;
  const input = uint8Input(source);
  let model: Model = simplifyForQuantization(decodeModel(source.bytes));
  let inputZeroPoint: number | undefined;
  if (config.foldInputNormalization) {
    const folded = foldInputNormalization(model);
    if (folded) {
      model = folded.model;
      inputZeroPoint = folded.zeroPoint;
    }
  }
  const keepFloat = resolveKeepFloat(model.graph, config.keepFloat);
  const qdqOptions = {
    activationType: config.activations.type,
    perChannelWeights: config.weights.perChannel,
    keepFloat,
  };
  const plan = planQdq(model.graph, qdqOptions);
  checkStorableWeights(model.graph, plan);

  let range: FrameSet;
  let frames: readonly Uint8Array[];
  if (options.siteFrames) {
    range = options.siteFrames.set;
    frames = options.siteFrames.frames;
    if (frames.length !== range.count) {
      throw new ArgusError(
        `calibration on ${range.count} frames of site ${range.site} was given ${frames.length}`,
      );
    }
  } else {
    const recording = parseFrameRange(config.calibrationFrames, options.video);
    const decoding = createProgress('decoding calibration frames', 'frames');
    frames = await readModelFrames(recording, source.descriptor.input, {
      progress: decoding,
      ...(signal ? { signal } : {}),
    });
    decoding.finish(`${frames.length} frames of ${recording.video}`);
    range = recording;
  }

  const calibrating = createProgress(`calibrating ${plan.calibrate.length} activations`, 'frame runs');
  const ranges = await calibrateRanges(model, plan.calibrate, frames, {
    method: config.activations.calibration,
    percentile: config.activations.percentile,
    input,
    onProgress: (done, total) => calibrating.update(done, total),
    ...(signal ? { signal } : {}),
  });
  calibrating.finish();

  const quantizing = createProgress(`quantizing ${plan.nodes.length} nodes`, 'nodes');
  const quantized = insertQdq(
    model,
    plan,
    activationQuantParams(plan, ranges, qdqOptions.activationType),
    qdqOptions,
  );
  const name = options.name ?? `${source.descriptor.name}-int8`;
  quantized.metadata = { ...quantized.metadata, 'argus.model': name, 'argus.quantized': 'qdq-int8' };
  const bytes = encodeModel(quantized);
  quantizing.finish(`${keepFloat.size} kept in float, ${(bytes.length / (1 << 20)).toFixed(1)} MiB`);
  const step: QuantizeLineageStep = {
    kind: 'quantize',
    at: new Date().toISOString(),
    format: 'qdq',
    activations: {
      type: config.activations.type,
      calibration: config.activations.calibration,
      ...(config.activations.calibration === 'percentile'
        ? { percentile: config.activations.percentile }
        : {}),
    },
    weights: { type: 'int8', perChannel: config.weights.perChannel },
    calibrationFrames: range,
    keptFloat: [...keepFloat],
    ...(inputZeroPoint !== undefined ? { inputZeroPoint } : {}),
    quantizedNodes: plan.nodes.length,
  };
  return {
    bytes,
    descriptor: { ...source.descriptor, name, file: 'model.onnx', sha256: sha256Hex(bytes) },
    lineage: await extendLineage(source, step),
  };
}
