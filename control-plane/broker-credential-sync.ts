import type { Enrollment } from './enrollment.ts';
import type { BrokerAccessControl } from './mqtt/access-control.ts';
import type { DeviceCredentialStore } from './storage/device-credentials.ts';

/** how far back a sweep applies revocations again: longer than a lease takes to change hands */
const REVOCATION_WINDOW_MS = 10 * 60_000;
/** rotation requests sent by one sweep at most (the rest by the next) */
const ROTATIONS_PER_SWEEP = 1000;

/**
 * One sweep that brings an external broker in line with the credentials in the database, for the
 * changes made where no broker is at hand (the CLI, a replica that lost its broker link): every
 * credential revoked in the last ten minutes is revoked on the broker again (revoking is
 * idempotent, and the device is disconnected), and every pending rotation request is sent, each
 * taken once. The embedded broker needs none of it: it checks its connections itself.
 */
export async function syncBrokerCredentials(
  store: DeviceCredentialStore,
  enrollment: Enrollment,
  broker: BrokerAccessControl,
  sendRotation: (device: string) => Promise<void>,
  now = Date.now(),
): Promise<{ revoked: number; rotations: number }> {
  const revoked = await store.revokedSince(now - REVOCATION_WINDOW_MS);
  for (const device of revoked) await broker.revoke(device);
  const due = await enrollment.takeRotationRequests(await store.rotationsPending(ROTATIONS_PER_SWEEP));
  for (const device of due) await sendRotation(device);
  return { revoked: revoked.length, rotations: due.length };
}
