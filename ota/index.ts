/**
 * Over-the-air model updates. Today: what a box runs before it accepts a model — verification of a
 * signed bundle (signature by a trusted key, every file's sha256, expiry, a version newer than the
 * installed one) and its atomic installation into the model cache. The bundles are built and
 * signed by the model factory (`models/bundle`); staged rollouts with thresholds and automatic
 * rollback build on these two steps.
 */
export { installBundle } from '../models/bundle/install.ts';
export {
  BundleRejected,
  type RejectionReason,
  type VerifiedBundle,
  type VerifyOptions,
  verifyBundle,
} from '../models/bundle/verify.ts';
