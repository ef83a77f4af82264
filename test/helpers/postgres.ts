import { execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freeTcpPort } from '../../common/net.ts';

const run = promisify(execFile);

/** the newest PostgreSQL server binaries installed by Debian's packages */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new Error(`no PostgreSQL server under ${root}: apt-get install postgresql`);
  return join(root, versions[0]!, 'bin');
}

/** runs a PostgreSQL tool of `bin` as `asUser` (runuser -u postgres, as root) */
async function runAs(asUser: string[], bin: string, tool: string, args: string[]): Promise<void> {
  const [cmd, ...rest] = [...asUser, join(bin, tool), ...args];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd!, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${tool} exited with ${code}: ${stderr.trim()}`)),
    );
  });
}

/** a temporary directory the cluster's user owns */
async function clusterDir(prefix: string, asUser: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (asUser.length > 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  return dir;
}

/**
 * An initdb'd cluster, never started, that every server of this machine copies (initdb takes
 * seconds, a copy a fraction of one): made once per PostgreSQL version and user in the temporary
 * directory; test processes making it at once each make their own and the first rename wins.
 */
async function template(bin: string, asUser: string[]): Promise<string> {
  const dir = join(tmpdir(), `argus-pg-template-${bin.split('/').at(-2)}-${userInfo().uid}`);
  if (existsSync(join(dir, 'data', 'PG_VERSION'))) return dir;
  const made = await clusterDir('argus-pg-template-new-', asUser);
  await runAs(asUser, bin, 'initdb', [
    ...['-D', join(made, 'data'), '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'],
  ]);
  await rename(made, dir).catch(async (err) => {
    await rm(made, { recursive: true, force: true });
    if (!existsSync(join(dir, 'data', 'PG_VERSION'))) throw err;
  });
  return dir;
}

export interface PostgresOptions {
  /** `false` trades durability for speed (tests); benchmarks keep the default `true` */
  fsync?: boolean;
}

/**
 * A private PostgreSQL cluster in a temporary directory on a free 127.0.0.1 port (trust auth, user
 * `postgres`), never the machine's own server. As root it runs as the `postgres` system user.
 */
export class PostgresServer {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly asUser: string[],
    private readonly bin: string,
    private readonly settings: string,
  ) {}

  static async start(options: PostgresOptions = {}): Promise<PostgresServer> {
    const bin = binDir();
    const asUser = userInfo().uid === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
    const dir = await clusterDir('argus-pg-', asUser);
    const port = await freeTcpPort();
    const settings = [
      `-p ${port}`,
      `-k ${dir}`,
      '-c listen_addresses=127.0.0.1',
      `-c fsync=${options.fsync === false ? 'off' : 'on'}`,
      '-c max_connections=200',
    ].join(' ');
    const server = new PostgresServer(dir, port, asUser, bin, settings);
    await run('cp', ['-a', join(await template(bin, asUser), 'data'), join(dir, 'data')]);
    await server.resume();
    return server;
  }

  /** stops the server (immediately, like a crash or a lost host), keeping its data for `resume` */
  async halt(): Promise<void> {
    await this.exec('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
  }

  /** starts a halted server again on the same port and data */
  async resume(): Promise<void> {
    await this.exec('pg_ctl', [
      '-D',
      join(this.dir, 'data'),
      '-o',
      this.settings,
      '-l',
      join(this.dir, 'server.log'),
      '-w',
      'start',
    ]);
  }

  private exec(tool: string, args: string[]): Promise<void> {
    return runAs(this.asUser, this.bin, tool, args);
  }

  /** connection URL of database `name` */
  url(name = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${name}`;
  }

  /** creates an empty database and answers its URL */
  async createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name}"`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  /** stops the server (immediately) and removes its directory */
  async stop(): Promise<void> {
    await this.exec('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']).catch(
      () => undefined,
    );
    await rm(this.dir, { recursive: true, force: true });
  }
}
