/**
 * Over-the-air updates. Today: what a box runs before it accepts a model or a scene — verification
 * of a signed bundle (read within absolute limits; signature by a trusted key, every file's
 * sha256, expiry, a version newer than the installed one, which must be readable) and its atomic
 * installation — and the scene bundles. Model bundles are built and signed by the model factory
 * (`models/bundle`); staged rollouts with thresholds and automatic rollback build on these steps.
 */
export { type BundleLimits, DEFAULT_BUNDLE_LIMITS } from '../models/bundle/container.ts';
export { installBundle } from '../models/bundle/install.ts';
export { BundleRejected, type RejectionReason } from '../models/bundle/rejection.ts';
export {
  installedDirOf,
  type VerifiedBundle,
  type VerifyOptions,
  verifyBundle,
} from '../models/bundle/verify.ts';
export { type BuildSceneBundleOptions, buildSceneBundle, SCENE_FILE } from './scene-bundle.ts';
