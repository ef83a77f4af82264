import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArgusError } from '../common/errors.ts';
import { freeTcpPort, isListening } from '../common/net.ts';
import { SAMPLE_VIDEO } from '../common/paths.ts';

const SCRIPT = join(fileURLToPath(new URL('../scripts', import.meta.url)), 'rtsp-server.py');
/** Debian's python: a pyenv `python3` on PATH may lack `gi` */
const PYTHON = '/usr/bin/python3';

export interface RtspServerOptions {
  file?: string;
  paths?: string[];
  /** a fixed port (default: a free one) */
  port?: number;
  /** what the streams are encoded as (default H.264) */
  codec?: 'h264' | 'h265';
}

/**
 * A local RTSP server for the demo, tests and benchmarks:
 * scripts/rtsp-server.py on 127.0.0.1 as a child in its own process group, serving a looping file
 * as H.264 or H.265 on one or more paths. A test can kill it (any signal), pause it and start it again on
 * the same port.
 */
export class RtspServer {
  private child: ChildProcess | undefined;
  private output = '';
  /** performance.now() when the server last began listening */
  listeningAt = 0;
  /** settles when the server started last exits, with how */
  exited: Promise<string> = Promise.resolve('not started');

  private constructor(
    readonly port: number,
    readonly file: string,
    readonly paths: string[],
    readonly codec: 'h264' | 'h265',
  ) {}

  static async create(options: RtspServerOptions = {}): Promise<RtspServer> {
    const server = new RtspServer(
      options.port ?? (await freeTcpPort()),
      options.file ?? SAMPLE_VIDEO,
      options.paths ?? ['cam-1'],
      options.codec ?? 'h264',
    );
    await server.start();
    return server;
  }

  url(path = this.paths[0]!): string {
    return `rtsp://127.0.0.1:${this.port}/${path}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(timeoutMs = 10_000): Promise<void> {
    if (this.child) throw new ArgusError('the RTSP server is already running');
    const child = spawn(
      PYTHON,
      [
        SCRIPT,
        ...['--port', String(this.port), '--file', this.file, '--paths', this.paths.join(',')],
        ...['--codec', this.codec],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    this.child = child;
    this.output = '';
    const collect = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-4000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let exited: string | undefined;
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, sig) => {
        exited = `code ${code} signal ${sig}: ${this.output.trim()}`;
        resolve(exited);
      }),
    );
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (exited) {
        this.child = undefined;
        throw new ArgusError(`the RTSP server exited before listening on ${this.port}: ${exited}`);
      }
      if (this.output.includes('READY') && (await isListening(this.port))) break;
      if (performance.now() > deadline) {
        await this.kill();
        throw new ArgusError(
          `the RTSP server did not listen on ${this.port} within ${timeoutMs} ms: ${this.output}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    this.listeningAt = performance.now();
  }

  /** sends a signal to the server's whole process group */
  signal(sig: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  }

  /** kills the server's process group (default SIGKILL: a crash) and waits for it to exit */
  async kill(sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exit = once(child, 'exit');
    try {
      // a stopped (SIGSTOP) server would not act on SIGTERM until continued
      if (sig !== 'SIGKILL') process.kill(-child.pid!, 'SIGCONT');
      process.kill(-child.pid!, sig);
    } catch {
      return;
    }
    await exit;
  }

  async stop(): Promise<void> {
    await this.kill('SIGKILL');
  }
}
