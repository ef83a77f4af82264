/** The control plane: MQTT ingest into SQLite or PostgreSQL, the REST API, live events, metrics. */

export {
  ANY_HARDWARE_CLASS,
  type ArtifactReferences,
  ArtifactRegistry,
  type DeviceTargets,
  NO_REFERENCES,
} from './artifacts/registry.ts';
export {
  type ControlPlaneConfig,
  ControlPlaneConfigSchema,
  controlPlaneConfig,
  loadControlPlaneConfig,
} from './config.ts';
export { claimRefusalMessage, Enrollment, MAX_CLAIM_TTL_S } from './enrollment.ts';
export { Metrics, REJECT_REASONS, type RejectReason } from './metrics.ts';
export { type ControlPlane, type ControlPlaneParts, startControlPlane } from './server.ts';
export { type CredentialRecord, DeviceCredentialStore } from './storage/device-credentials.ts';
export { openRepository } from './storage/open.ts';
export type {
  DeviceRecord,
  EventFilter,
  IngestRecord,
  Repository,
  StoredEvent,
} from './storage/repository.ts';
