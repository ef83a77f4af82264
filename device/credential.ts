import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ArgusError, errorMessage } from '../common/errors.ts';
import { writeFileAtomic } from '../common/fs-atomic.ts';
import { sha256Hex } from '../common/hash.ts';
import type { Logger } from '../common/logger.ts';
import { type CredentialAnswer, httpPaths } from '../contract/index.ts';
import type { DeviceConfig } from './config.ts';

const REQUEST_TIMEOUT_MS = 15_000;
const RETRY_START_MS = 1000;
const RETRY_MAX_MS = 30_000;
const CREDENTIAL = /^[A-Za-z0-9._~+/=-]{16,512}$/;

/** where the credential came from, for the log */
export type CredentialSource = 'file' | 'config' | 'claim';

/**
 * The credential file: the credential on its first line and, when it came from a claim token,
 * `claim <sha256 of that token>` on the second, so that a new claim token in the config (the box
 * is enrolled again, e.g. after a revocation) is exchanged instead of the stored credential used.
 */
interface StoredCredential {
  credential: string;
  claimSha256: string | undefined;
}

async function readCredentialFile(file: string): Promise<StoredCredential | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ArgusError(
      `cannot read the device credential ${file}: ${errorMessage(err)}`,
      'check the file and its permissions (controlPlane.credentialFile)',
    );
  }
  const [credential = '', claim] = text.trim().split('\n');
  const claimSha256 = claim === undefined ? undefined : /^claim ([0-9a-f]{64})$/.exec(claim)?.[1];
  if (!CREDENTIAL.test(credential) || (claim !== undefined && !claimSha256))
    throw new ArgusError(
      `the device credential file ${file} does not hold a credential`,
      'remove the file and enroll the box again (controlPlane.claimToken)',
    );
  return { credential, claimSha256 };
}

/** writes the credential so that only the agent's user can read it, replacing the old one at once */
function storeCredential(file: string, stored: StoredCredential): Promise<void> {
  const claim = stored.claimSha256 ? `claim ${stored.claimSha256}\n` : '';
  return writeFileAtomic(file, `${stored.credential}\n${claim}`, 0o600);
}

/**
 * The box's own key for exchanging the claim token (digest `claimSha256`), kept 0600 beside the
 * credential file until the credential is stored: a box that spent the token but never got the
 * answer (a time-out, a kill) asks again with the same key and is given a credential, where anyone
 * else with the spent token is refused.
 */
async function exchangeKey(credentialFile: string, claimSha256: string): Promise<string> {
  const file = `${credentialFile}.exchange`;
  const kept = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw new ArgusError(
      `cannot read the claim exchange key ${file}: ${errorMessage(err)}`,
      'check the file and its permissions, or remove it (the box then needs a new claim token if it spent this one)',
    );
  });
  const match = /^claim ([0-9a-f]{64}) key ([A-Za-z0-9_-]{43})\n?$/.exec(kept);
  if (match?.[1] === claimSha256) return match[2] as string;
  const key = randomBytes(32).toString('base64url');
  await writeFileAtomic(file, `claim ${claimSha256} key ${key}\n`, 0o600);
  return key;
}

/** one POST to the control plane for a credential; `retry` for what may pass (unreachable, 5xx, 429) */
async function requestCredential(
  url: string,
  init: { authorization?: string; body?: unknown },
  signal: AbortSignal,
): Promise<{ credential: string } | { retry: string } | { refused: string; hint?: string; status: number }> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(init.authorization ? { authorization: init.authorization } : {}),
      },
      body: JSON.stringify(init.body ?? {}),
      signal: AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
    });
  } catch (err) {
    return { retry: errorMessage(err) };
  }
  const text = (await res.text().catch(() => '')).slice(0, 2000);
  if (res.status === 429 || res.status >= 500) return { retry: `HTTP ${res.status} ${text.slice(0, 200)}` };
  let body: Partial<CredentialAnswer & { error: string; hint: string }> = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // an answer that is not JSON is reported by its status below
  }
  if (res.ok && typeof body.credential === 'string' && CREDENTIAL.test(body.credential))
    return { credential: body.credential };
  return {
    refused: body.error ?? `HTTP ${res.status}`,
    ...(body.hint ? { hint: body.hint } : {}),
    status: res.status,
  };
}

const endpoint = (config: DeviceConfig, path: string) =>
  `${config.controlPlane.url.replace(/\/+$/, '')}${path}`;

/**
 * The device's credential: the stored one (`controlPlane.credentialFile`) if there is one and no
 * other claim token is configured than the one it came from, else a pre-provisioned
 * `controlPlane.token`, else the one the control plane gives in exchange for the one-time
 * `controlPlane.claimToken` (then stored, mode 0600, before it is used). The exchange is
 * retried, with the same exchange key, while the control plane is unreachable or its answer is
 * lost; a refused claim token is an error saying what to do.
 */
export async function obtainCredential(
  config: DeviceConfig,
  log: Logger,
  signal: AbortSignal,
): Promise<{ credential: string; source: CredentialSource }> {
  const cp = config.controlPlane;
  const stored = await readCredentialFile(cp.credentialFile);
  const claimSha256 = cp.claimToken ? sha256Hex(cp.claimToken) : undefined;
  if (stored && (!claimSha256 || stored.claimSha256 === claimSha256))
    return { credential: stored.credential, source: 'file' };
  if (cp.token && !claimSha256) return { credential: cp.token, source: 'config' };
  if (!cp.claimToken)
    throw new ArgusError(
      `device ${config.device.id} has no credential: no ${cp.credentialFile}, no controlPlane.token and no controlPlane.claimToken in ${config.file}`,
      `make a claim token with \`argus control-plane enroll ${config.device.id} --config control-plane.yaml\` and set controlPlane.claimToken to it`,
    );
  const url = endpoint(config, httpPaths.enroll(config.device.id));
  const body = { claimToken: cp.claimToken, exchangeKey: await exchangeKey(cp.credentialFile, claimSha256!) };
  let wait = RETRY_START_MS;
  for (;;) {
    const answer = await requestCredential(url, { body }, signal);
    if ('credential' in answer) {
      await storeCredential(cp.credentialFile, { credential: answer.credential, claimSha256 });
      await rm(`${cp.credentialFile}.exchange`, { force: true });
      log.info(
        { file: cp.credentialFile },
        'enrolled: the claim token was exchanged for the device credential',
      );
      return { credential: answer.credential, source: 'claim' };
    }
    if ('refused' in answer)
      throw new ArgusError(
        `the control plane refused the claim token of device ${config.device.id} (${answer.status}): ${answer.refused}`,
        answer.hint ?? `make a new claim token with \`argus control-plane enroll ${config.device.id}\``,
      );
    if (signal.aborted) throw new ArgusError('stopped before the device was enrolled');
    log.warn(
      { url, err: answer.retry, retryInS: wait / 1000 },
      'cannot reach the control plane to enroll; retrying',
    );
    await sleep(wait, undefined, { signal }).catch(() => undefined);
    wait = Math.min(RETRY_MAX_MS, wait * 2);
  }
}

/**
 * Fetches a new credential with the current one (a `rotate-credential` command) and stores it
 * before it is returned; the current one stays valid at the control plane until the new one is used.
 */
export async function rotateCredential(config: DeviceConfig, current: string): Promise<string> {
  const file = config.controlPlane.credentialFile;
  const { claimSha256 } = (await readCredentialFile(file)) ?? { claimSha256: undefined };
  const answer = await requestCredential(
    endpoint(config, httpPaths.rotateCredential(config.device.id)),
    { authorization: `Bearer ${current}` },
    AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  );
  if ('credential' in answer) {
    await storeCredential(file, { credential: answer.credential, claimSha256 });
    return answer.credential;
  }
  throw new ArgusError(
    `no new credential: ${'retry' in answer ? answer.retry : answer.refused}`,
    'the current credential stays in use; send rotate-credential again',
  );
}
