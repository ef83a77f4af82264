/** The model factory: import, convert, describe and store the small models the boxes run. */
export { CATALOG, type CatalogEntry, catalogEntry, DEFAULT_MODEL } from './catalog.ts';
export { type ModelDescriptor, ModelDescriptorSchema, readDescriptor } from './descriptor.ts';
export { COCO80_LABELS } from './labels.ts';
export { decodeModel, encodeModel } from './onnx/codec.ts';
export type { Graph, Model, Node, Tensor } from './onnx/ir.ts';
export {
  ensureModelInstalled,
  fetchModels,
  importTfjsModel,
  type LoadedModel,
  listModels,
  loadModel,
  modelsDir,
  sha256Hex,
} from './store.ts';
export { convertTfjsGraph } from './tfjs/converter.ts';
