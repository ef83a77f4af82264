import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { redactUrl } from '../common/net.ts';
import { readPem } from '../common/pem.ts';
import type { DeviceTlsSettings } from './config.ts';

/** the box's TLS files, read: what `tls.connect` and `https.request` take, and where they came from */
export interface ClientTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  files: DeviceTlsSettings;
}

export async function loadClientTls(files: DeviceTlsSettings): Promise<ClientTls> {
  return {
    ca: await readPem(files.ca, 'tls.ca'),
    ...(files.cert ? { cert: await readPem(files.cert, 'tls.cert') } : {}),
    ...(files.key ? { key: await readPem(files.key, 'tls.key') } : {}),
    files,
  };
}

/** the options of `tls.connect` / `https.request` that verify the server (and show the box's certificate) */
export function tlsConnectOptions(tls: ClientTls | undefined): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  if (!tls) return {};
  return { ca: tls.ca, ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}) };
}

/** who the box was talking to, for the sentence */
export interface TlsPeer {
  /** e.g. "MQTT broker", "control plane" */
  name: string;
  /** the config key holding its URL, e.g. "mqtt.url" */
  urlKey: string;
  url: string;
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return url;
  }
}

/**
 * What a TLS failure means and which file or setting to fix, in one sentence; undefined when `err`
 * is not a TLS failure. Node reports the checks of the server's certificate with OpenSSL's names
 * (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, …) or ERR_TLS_CERT_ALTNAME_INVALID, and the
 * server's refusal of the box's own certificate as an alert (ERR_SSL_…_ALERT_…).
 */
export function explainTlsError(err: unknown, tls: ClientTls | undefined, peer: TlsPeer): string | undefined {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string') return undefined;
  const ca = tls ? `the CA in tls.ca (${tls.files.ca})` : "the system's CAs (no tls.ca is set)";
  const now = new Date().toISOString();
  const own = tls?.files.cert ? `this box's client certificate (tls.cert ${tls.files.cert})` : undefined;
  if (code === 'CERT_HAS_EXPIRED')
    return `the ${peer.name}'s certificate has expired: renew it on the ${peer.name} (argus ca issue), or fix this box's clock if it is wrong (it says ${now})`;
  if (code === 'CERT_NOT_YET_VALID')
    return `the ${peer.name}'s certificate is not valid yet: check this box's clock (it says ${now})`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const host = hostOf(peer.url);
    const reason = (err as { reason?: unknown }).reason;
    return `the ${peer.name}'s certificate is not for host "${host}" (${typeof reason === 'string' ? reason : errorMessage(err)}): set ${peer.urlKey} to a name the certificate holds, or issue it again with --host ${host}`;
  }
  if (UNTRUSTED.has(code))
    return `the ${peer.name}'s certificate is not signed by ${ca} (${code}): put the CA that issued it in tls.ca, or issue the ${peer.name}'s certificate from the fleet CA`;
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED')
    return `the ${peer.name} requires a client certificate: set tls.cert and tls.key (argus ca issue --client --name <device id>)`;
  if (code === 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED')
    return `the ${peer.name} refuses ${own ?? "this box's client certificate"}: it has expired; issue a new one`;
  if (
    code === 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' ||
    code === 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' ||
    code === 'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR'
  )
    return `the ${peer.name} refuses ${own ?? "this box's client certificate"}: it is not signed by the CA the ${peer.name} trusts; issue it from the fleet CA`;
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))
    return `TLS with the ${peer.name} failed (${code}: ${errorMessage(err)}): check tls.* in this config and ${peer.urlKey}`;
  return undefined;
}

/**
 * Logs each distinct TLS failure with a peer once, as an error naming what to fix, until a
 * connection succeeds (`reset`); other errors are left to the caller.
 */
export class TlsErrorLog {
  private last: string | undefined;

  constructor(
    private readonly log: Logger,
    private readonly tls: ClientTls | undefined,
    private readonly peer: TlsPeer,
  ) {}

  /** true when `err` was a TLS failure (logged) */
  report(err: unknown): boolean {
    const sentence = explainTlsError(err, this.tls, this.peer);
    if (!sentence) return false;
    if (sentence !== this.last)
      this.log.error(
        { url: redactUrl(this.peer.url), code: (err as { code?: unknown }).code },
        `TLS refused: ${sentence}`,
      );
    this.last = sentence;
    return true;
  }

  reset(): void {
    this.last = undefined;
  }
}
