import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort, isListening } from '../../common/net.ts';

const MOSQUITTO = '/usr/sbin/mosquitto';
const MOSQUITTO_CTRL = '/usr/bin/mosquitto_ctrl';
const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

async function waitForPort(port: number, timeoutMs: number, exited: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = exited();
    if (why) throw new Error(`mosquitto exited before listening on ${port}: ${why}`);
    if (await isListening(port)) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function initDynamicSecurity(
  dir: string,
  admin: { adminUsername: string; adminPassword: string },
): Promise<string[]> {
  const file = join(dir, 'dynamic-security.json');
  await rm(file, { force: true });
  const child = spawn(MOSQUITTO_CTRL, ['dynsec', 'init', file, admin.adminUsername, admin.adminPassword], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`mosquitto_ctrl dynsec init failed (${code}): ${stderr.trim()}`);
  return ['allow_anonymous false', `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${file}`];
}

export interface MosquittoOptions {
  /** working directory: config, log and persistence file */
  dir: string;
  /**
   * keep sessions and queued messages across a stop/start (saved on a clean stop). A broker that
   * forgets what it acknowledged to a device but had not yet delivered to the control plane loses
   * those messages: the device deleted them on PUBACK.
   */
  persistence?: boolean;
  /**
   * load the dynamic security plugin with a fresh config whose only client is this admin (made by
   * `mosquitto_ctrl dynsec init`); anonymous clients are refused
   */
  dynamicSecurity?: { adminUsername: string; adminPassword: string };
  /** MQTTS with this certificate and key (PEM files) instead of plain MQTT */
  tls?: { cert: string; key: string };
}

/** a private Mosquitto on a free 127.0.0.1 port that a test can stop and start again */
export class MosquittoBroker {
  private child: ChildProcess | undefined;
  private stderr = '';

  private constructor(
    readonly port: number,
    private readonly options: MosquittoOptions,
  ) {}

  static async create(options: MosquittoOptions): Promise<MosquittoBroker> {
    const broker = new MosquittoBroker(await freeTcpPort(), options);
    await mkdir(options.dir, { recursive: true });
    const persistence = options.persistence
      ? [`persistence true`, `persistence_location ${options.dir}/`, 'autosave_interval 3600']
      : ['persistence false'];
    const access = options.dynamicSecurity
      ? await initDynamicSecurity(options.dir, options.dynamicSecurity)
      : ['allow_anonymous true'];
    await writeFile(
      broker.configFile,
      [
        `listener ${broker.port} 127.0.0.1`,
        ...(options.tls ? [`certfile ${options.tls.cert}`, `keyfile ${options.tls.key}`] : []),
        ...access,
        `user ${userInfo().username}`,
        // Debian's default (1000) silently drops messages queued for a slow subscriber
        'max_queued_messages 100000',
        'max_inflight_messages 100',
        ...persistence,
        `log_dest file ${join(options.dir, 'mosquitto.log')}`,
        'log_type error',
        'log_type warning',
        'log_type notice',
        '',
      ].join('\n'),
    );
    await broker.start();
    return broker;
  }

  get url(): string {
    return `${this.options.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${this.port}`;
  }

  private get configFile(): string {
    return join(this.options.dir, 'mosquitto.conf');
  }

  /** starts the broker (again, after `stop`) on its port */
  async start(): Promise<void> {
    if (this.child) throw new Error('mosquitto is already running');
    const child = spawn(MOSQUITTO, ['-c', this.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    let exit: string | undefined;
    child.once('exit', (code, signal) => {
      exit = `code ${code} signal ${signal} ${this.stderr.trim()}`;
    });
    await waitForPort(this.port, 5000, () => exit);
  }

  /** stops the broker like a service stop (SIGTERM: it saves its persistence file and exits) */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
}
