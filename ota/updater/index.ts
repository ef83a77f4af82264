/** The device updater (see updater.ts): state machine, downloader, slots, trusted versions, judgements. */
export { DownloadFailed, type DownloadTls, downloadArtifact } from './download.ts';
export { judgeHealth, judgeShadow } from './health.ts';
export { type HealthSample, isUpdateHost, type UpdateHost } from './host.ts';
export { type Committed, type Slot, Slots } from './slots.ts';
export { TokenBucket } from './token-bucket.ts';
export { TrustedVersions } from './trusted.ts';
export {
  type FactoryDefault,
  type OtaSettings,
  type Running,
  type RunningModel,
  type RunningScene,
  Updater,
  type UpdaterOptions,
} from './updater.ts';
