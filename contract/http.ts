/** the body of the enrollment and rotation answers */
export interface CredentialAnswer {
  device: string;
  credential: string;
}

/**
 * HTTP paths devices use besides MQTT. Snapshots are JPEGs uploaded by the device with its
 * credential (`Authorization: Bearer <device token>`); events reference them by id, which is the
 * device's own (another device may use the same id for its own snapshot).
 */
export const SNAPSHOT_CONTENT_TYPE = 'image/jpeg';
export const MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024;

export const httpPaths = {
  /** PUT by the device; idempotent (same id, same bytes) */
  uploadSnapshot: (device: string, snapshotId: string) => `/api/v1/devices/${device}/snapshots/${snapshotId}`,
  /**
   * POST by a box without a credential yet, body `{"claimToken": …, "exchangeKey": …}` (the
   * token one-time, from `argus control-plane enroll`; the key the box's own random secret, kept
   * until it has its credential): answers `{"device", "credential"}`; 401 for a token not issued
   * for the device, 410 for an expired one or one used by another key or too long ago. The same
   * token and key again shortly after (the box never got the answer) replace the credential.
   */
  enroll: (device: string) => `/api/v1/devices/${device}/enroll`,
  /** POST by the device with its current credential: answers `{"device", "credential"}`, its new one */
  rotateCredential: (device: string) => `/api/v1/devices/${device}/credential`,
  /**
   * PUT by the device: a harvested frame (contract/harvest.ts), its metadata in the query string
   * (HarvestUploadQuerySchema); idempotent (same id, same bytes)
   */
  uploadHarvest: (device: string, frameId: string) => `/api/v1/devices/${device}/harvest/${frameId}`,
  /** GET by operators and the console */
  snapshot: (device: string, snapshotId: string) => `/api/v1/devices/${device}/snapshots/${snapshotId}`,
  /** POST by operators: publishes a command to the device and answers its id */
  command: (device: string, name: string) => `/api/v1/devices/${device}/commands/${name}`,
  /**
   * GET by the device with its credential: the bytes of an artifact assigned to it (contract/ota.ts),
   * with `Range` for a download resumed after a cut; 404 for an artifact not assigned to it
   */
  artifact: (device: string, artifactId: string) => `/api/v1/devices/${device}/artifacts/${artifactId}`,
  /**
   * WebSocket opened by the device with its credential after a `live-start` command: it streams
   * the camera of that command over it (contract/live.ts)
   */
  liveUpload: (device: string, stream: string) => `/api/v1/devices/${device}/live/${stream}`,
  /**
   * WebSocket for logged-in viewers (viewer role or above): the camera's live picture, `?format=`
   * `fmp4` (Media Source Extensions) or `mpeg1` (JSMpeg); many viewers share one stream from the box
   */
  liveView: (device: string, camera: string) => `/api/v1/devices/${device}/cameras/${camera}/live`,
  /** GET: a page playing the camera's live view (the console embeds the same player) */
  livePage: (device: string, camera: string) => `/live/${device}/${camera}`,
  /** GET by operators: the command and, once the device answered, its result */
  commandResult: (commandId: string) => `/api/v1/commands/${commandId}`,
};
