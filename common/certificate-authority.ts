import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { ArgusError } from './errors.ts';

/**
 * A small certificate authority for a fleet, kept in one directory and run with the openssl CLI
 * (`openssl ca`, which records every certificate it issues in `index.txt`):
 *
 *   ca.key (0600)  ca.crt  openssl.cnf  index.txt  serial  issued/  <name>.key (0600)  <name>.crt
 *
 * Keys are EC P-256, written by this process with mode 0600 and never printed.
 */

const OPENSSL = 'openssl';
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HOST = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;

export interface CaFiles {
  cert: string;
  key: string;
}

export interface IssueOptions {
  /** the subject's common name and the files' base name; a device's id for its client certificate */
  name: string;
  /** DNS names the server is reached by (subjectAltName) */
  hosts?: string[];
  /** IP addresses the server is reached by (subjectAltName) */
  ips?: string[];
  /** a client certificate (TLS client authentication), e.g. for a device under mutual TLS */
  client?: boolean;
  /** valid from now for this many days (default 825) */
  days?: number;
  /** or exactly this period (a certificate already expired, for tests of the refusal) */
  period?: { notBefore: Date; notAfter: Date };
}

function run(args: string[], cwd: string, input?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(OPENSSL, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('error', (e) =>
      reject(new ArgusError(`cannot run openssl: ${e.message}`, 'install the openssl command-line tool')),
    );
    child.once('exit', (code) => {
      if (code === 0) resolvePromise(out);
      else
        reject(new ArgusError(`openssl ${args[0]} failed: ${err.trim().split('\n').slice(-3).join('; ')}`));
    });
    child.stdin.end(input ?? '');
  });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** a new EC P-256 private key in `path`, mode 0600 (refuses to overwrite) */
async function newKey(path: string, cwd: string): Promise<void> {
  const pem = await run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'], cwd);
  await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
}

/** openssl's time format for `openssl ca -startdate/-enddate` */
const opensslTime = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

function caConfig(): string {
  return [
    '[ ca ]',
    'default_ca = argus',
    '[ argus ]',
    'dir = .',
    'database = $dir/index.txt',
    'new_certs_dir = $dir/issued',
    'serial = $dir/serial',
    'certificate = $dir/ca.crt',
    'private_key = $dir/ca.key',
    'default_md = sha256',
    'policy = policy_any',
    'unique_subject = no',
    'copy_extensions = none',
    'email_in_dn = no',
    '[ policy_any ]',
    'commonName = supplied',
    '',
  ].join('\n');
}

/** creates the CA in `dir` (which must not hold one yet): its key, its self-signed certificate */
export async function initCa(dir: string, o: { name?: string; days?: number } = {}): Promise<CaFiles> {
  const root = resolve(dir);
  const files = { cert: join(root, 'ca.crt'), key: join(root, 'ca.key') };
  if (await exists(files.key))
    throw new ArgusError(
      `${root} already holds a CA (${files.key})`,
      'use another --dir, or issue from this one',
    );
  const name = o.name ?? 'Argus fleet CA';
  if (!/^[A-Za-z0-9 ._-]{1,64}$/.test(name)) throw new ArgusError(`"${name}" is not a usable CA name`);
  await mkdir(join(root, 'issued'), { recursive: true, mode: 0o700 });
  await newKey(files.key, root);
  await run(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      `/CN=${name}`,
      '-days',
      String(o.days ?? 3650),
      '-addext',
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      'ca.crt',
    ],
    root,
  );
  await writeFile(join(root, 'openssl.cnf'), caConfig());
  await writeFile(join(root, 'index.txt'), '');
  await writeFile(join(root, 'serial'), `${randomBytes(16).toString('hex').toUpperCase()}\n`);
  return files;
}

/** issues a certificate and its key, signed by the CA in `dir`, as `<dir>/<name>.crt|.key` */
export async function issueCertificate(dir: string, o: IssueOptions): Promise<CaFiles> {
  const root = resolve(dir);
  if (!(await exists(join(root, 'openssl.cnf'))))
    throw new ArgusError(`${root} holds no CA`, `create one first: argus ca init --dir ${dir}`);
  if (!NAME.test(o.name))
    throw new ArgusError(`"${o.name}" is not a usable name`, 'letters, digits, ".", "-" and "_", at most 64');
  const hosts = o.hosts ?? [];
  const ips = o.ips ?? [];
  for (const h of hosts) if (!HOST.test(h)) throw new ArgusError(`--host "${h}" is not a DNS name`);
  for (const ip of ips) if (isIP(ip) === 0) throw new ArgusError(`--ip "${ip}" is not an IP address`);
  if (!o.client && hosts.length + ips.length === 0)
    throw new ArgusError(
      `a server certificate needs the names it is reached by`,
      'give --host NAME and/or --ip ADDRESS (or --client for a client certificate)',
    );
  const files = { cert: join(root, `${o.name}.crt`), key: join(root, `${o.name}.key`) };
  if ((await exists(files.key)) || (await exists(files.cert)))
    throw new ArgusError(`${files.cert} or its key already exists`, 'choose another --name, or remove them');
  const usage = [
    ...(hosts.length + ips.length > 0 ? ['serverAuth'] : []),
    ...(o.client ? ['clientAuth'] : []),
  ];
  const san = [...hosts.map((h) => `DNS:${h}`), ...ips.map((ip) => `IP:${ip}`)];
  const extensions = [
    '[ v3 ]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    `extendedKeyUsage = ${usage.join(', ')}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    ...(san.length > 0 ? [`subjectAltName = ${san.join(', ')}`] : []),
    '',
  ].join('\n');
  const tmp = randomBytes(6).toString('hex');
  const csr = join(root, 'issued', `${tmp}.csr`);
  const ext = join(root, 'issued', `${tmp}.ext`);
  await newKey(files.key, root);
  try {
    await writeFile(csr, await run(['req', '-new', '-key', files.key, '-subj', `/CN=${o.name}`], root));
    await writeFile(ext, extensions);
    const validity = o.period
      ? ['-startdate', opensslTime(o.period.notBefore), '-enddate', opensslTime(o.period.notAfter)]
      : ['-days', String(o.days ?? 825)];
    await run(
      [
        'ca',
        '-batch',
        '-notext',
        '-config',
        'openssl.cnf',
        '-in',
        csr,
        '-out',
        files.cert,
        '-extfile',
        ext,
        '-extensions',
        'v3',
        ...validity,
      ],
      root,
    );
  } catch (err) {
    await rm(files.key, { force: true });
    await rm(files.cert, { force: true });
    throw err;
  } finally {
    await rm(csr, { force: true });
    await rm(ext, { force: true });
  }
  return files;
}
