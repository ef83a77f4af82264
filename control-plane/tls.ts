import { createSecureContext, type TLSSocket } from 'node:tls';
import { ArgusError, errorMessage } from '../common/errors.ts';
import { readPem } from '../common/pem.ts';

/** what `tls.createServer` and fastify's `https` take */
export interface ServerTlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

/**
 * Reads a server's certificate, key and (for mutual TLS) client CA, and checks that they make a
 * TLS context: a key that is not the certificate's, or a file that is not PEM, is reported with
 * the config keys to fix.
 */
export async function loadServerTls(
  files: { cert: string; key: string; clientCa?: string },
  section: string,
): Promise<ServerTlsMaterial> {
  const material: ServerTlsMaterial = {
    cert: await readPem(files.cert, `${section}.cert`),
    key: await readPem(files.key, `${section}.key`),
    ...(files.clientCa ? { ca: await readPem(files.clientCa, `${section}.clientCa`) } : {}),
  };
  try {
    createSecureContext(material);
  } catch (err) {
    throw new ArgusError(
      `${section}: the certificate ${files.cert} and key ${files.key}${files.clientCa ? ` (client CA ${files.clientCa})` : ''} do not make a TLS server: ${errorMessage(err)}`,
      `give ${section}.cert and ${section}.key in PEM, the key being the certificate's (argus ca issue writes both)`,
    );
  }
  return material;
}

/** the common name of the certificate a TLS client showed (verified against the client CA), if any */
export function peerCommonName(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cn = socket.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}

/** what `tls.connect` takes to verify a broker against `ca` (and show a client certificate) */
export interface ClientTlsMaterial {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export async function loadClientTls(
  files: { ca: string; cert?: string; key?: string },
  section: string,
): Promise<ClientTlsMaterial> {
  return {
    ca: await readPem(files.ca, `${section}.ca`),
    ...(files.cert ? { cert: await readPem(files.cert, `${section}.cert`) } : {}),
    ...(files.key ? { key: await readPem(files.key, `${section}.key`) } : {}),
  };
}
