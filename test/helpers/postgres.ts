import { execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
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
    const dir = await mkdtemp(join(tmpdir(), 'argus-pg-'));
    const root = userInfo().uid === 0;
    const asUser = root ? ['runuser', '-u', 'postgres', '--'] : [];
    if (root) {
      const { stdout } = await run('id', ['-u', 'postgres']);
      const { stdout: gid } = await run('id', ['-g', 'postgres']);
      chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
    }
    const port = await freeTcpPort();
    const settings = [
      `-p ${port}`,
      `-k ${dir}`,
      '-c listen_addresses=127.0.0.1',
      `-c fsync=${options.fsync === false ? 'off' : 'on'}`,
      '-c max_connections=200',
    ].join(' ');
    const server = new PostgresServer(dir, port, asUser, bin, settings);
    const data = join(dir, 'data');
    await server.exec('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
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

  private async exec(tool: string, args: string[]): Promise<void> {
    const [cmd, ...rest] = [...this.asUser, join(this.bin, tool), ...args];
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
