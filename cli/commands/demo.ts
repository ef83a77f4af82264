import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { cacheDir, SAMPLE_VIDEO } from '../../common/paths.ts';
import { controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { generatePassword } from '../../control-plane/passwords.ts';
import { Users } from '../../control-plane/storage/users.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { generateSigningKey, keysDir } from '../../models/bundle/keys.ts';
import { ensureModelInstalled } from '../../models/store.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { type Command, integerOption, parseCommandArgs, untilAborted } from '../command.ts';
import { startDemoRollout } from '../demo-rollout.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const DEMO_ADMIN = 'admin';
const DEMO_SCENE_KEY = 'demo-scenes';

/** the demo fleet: two boxes, one camera each, each camera a path of the local RTSP server */
const BOXES = [
  { device: 'box-1', camera: 'cam-1', scene: 'scenes/vtest-campus.yaml' },
  { device: 'box-2', camera: 'cam-2', scene: 'scenes/vtest-one-way.yaml' },
] as const;

function agentYaml(
  box: (typeof BOXES)[number],
  mqttUrl: string,
  httpUrl: string,
  cameraUrl: string,
  claimToken: string,
) {
  return `device:
  id: ${box.device}
mqtt:
  url: ${mqttUrl}
  heartbeatS: 5
controlPlane:
  url: ${httpUrl}
  claimToken: ${claimToken}
spool:
  path: ${box.device}.spool.db
detector:
  sessions: 1
  intraOpThreads: 1
health:
  port: 0
cameras:
  - id: ${box.camera}
    url: ${cameraUrl}
    scene: ${join(ROOT, box.scene)}
    detectFps: 5
`;
}

/** ends a child and waits for it; SIGKILL after `graceMs` */
async function end(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export const demo: Command = {
  path: ['demo'],
  summary:
    'control plane + embedded broker + SQLite, an RTSP server looping vtest.avi, two device agents, and a rollout of the int8 model to them',
  usage: 'argus demo [--port 8080] [--dir DIR]',
  async run(args, ctx) {
    const { values } = parseCommandArgs(this, args, {
      port: { type: 'string', value: 'N', description: "the control plane's HTTP port (default 8080)" },
      dir: {
        type: 'string',
        value: 'DIR',
        description:
          'where the demo keeps its configs, databases and spools (default: a new temporary directory)',
      },
    });
    const port = integerOption(values.port, '--port', 1) ?? 8080;
    const dir = resolve(values.dir ?? join(cacheDir(), 'demo'));
    await mkdir(dir, { recursive: true });
    const log = createLogger('demo');
    await ensureModelInstalled(DEFAULT_DETECTOR_SETTINGS.model, ctx.signal);
    // the model factory's output (the signed int8 bundle) outlives the demo's directory
    const factoryDir = join(cacheDir(), 'demo-factory');

    // the scene editor signs what it publishes with the demo operator's own key, made once in the
    // key directory (whose keyring the control plane and the boxes trust by default)
    const sceneKey = join(keysDir(), 'signing', `${DEMO_SCENE_KEY}.key`);
    if (!existsSync(sceneKey)) await generateSigningKey(DEMO_SCENE_KEY);
    const cp = await startControlPlane(
      controlPlaneConfig(
        {
          http: { host: '127.0.0.1', port },
          mqtt: { embedded: { host: '127.0.0.1', port: 0 } },
          storage: { sqlite: { path: join(dir, 'argus.db') } },
          scenes: { signingKey: sceneKey, recordings: { vtest: SAMPLE_VIDEO } },
        },
        dir,
      ),
      log,
    ).catch((err: NodeJS.ErrnoException) => {
      throw new ArgusError(
        `the control plane did not start: ${err.message}`,
        err.code === 'EADDRINUSE' ? `port ${port} is taken: try --port` : undefined,
      );
    });
    let rtsp: RtspServer | undefined;
    const agents: ChildProcess[] = [];
    const rolloutStop = new AbortController();
    const stopRollout = () => rolloutStop.abort();
    ctx.signal.addEventListener('abort', stopRollout, { once: true });
    let rolling: Promise<void> | undefined;
    try {
      // an admin with a new password at each start (the demo's database outlives it)
      const password = generatePassword();
      const users = new Users(cp.repository.sql);
      if (!(await users.add(DEMO_ADMIN, 'admin', password))) await users.setPassword(DEMO_ADMIN, password);
      rtsp = await RtspServer.create({ paths: BOXES.map((b) => b.camera) });
      if (ctx.signal.aborted) return 0;
      for (const box of BOXES) {
        // each start enrolls the boxes afresh, the way a box is enrolled in the field: a one-time
        // claim token in its config, exchanged at its first start for its own credential
        await rm(join(dir, `${box.device}.credential`), { force: true });
        // and with the config's model: each start rolls the int8 model out again
        await rm(join(dir, `${box.device}.ota`), { recursive: true, force: true });
        const claim = await cp.enrollment.createClaim(box.device, 600, 'demo');
        const config = join(dir, `${box.device}.yaml`);
        await writeFile(config, agentYaml(box, cp.mqttUrl, cp.httpUrl, rtsp.url(box.camera), claim.token));
        agents.push(
          spawn(process.execPath, [join(ROOT, 'bin/argus.mjs'), 'device', 'run', '--config', config], {
            stdio: ['ignore', 'inherit', 'inherit'],
            env: { ...process.env, ARGUS_LOG_LEVEL: process.env.ARGUS_LOG_LEVEL ?? 'warn' },
          }),
        );
      }
      ctx.stdout.write(
        `\nArgus demo running — open ${cp.httpUrl}/ (API docs at ${cp.httpUrl}/docs)\n` +
          `  log in as ${DEMO_ADMIN}, password ${password}\n` +
          `  broker ${cp.mqttUrl}, database ${join(dir, 'argus.db')}\n` +
          `  ${BOXES.map((b) => `${b.device}/${b.camera}: ${rtsp!.url(b.camera)} → ${b.scene}`).join('\n  ')}\n` +
          'Ctrl-C stops everything.\n' +
          `Rolling the int8 model out to ${BOXES.map((b) => b.device).join(' and ')} (its progress follows):\n`,
      );
      rolling = startDemoRollout({
        cp,
        factoryDir,
        devices: BOXES.map((b) => b.device),
        say: (line) => ctx.stdout.write(`${line}\n`),
        log,
        signal: rolloutStop.signal,
      });
      const stopped = Promise.race([
        rtsp.exited.then(() => 'the RTSP server'),
        ...agents.map((c, i) => once(c, 'exit').then(() => `device agent ${BOXES[i]!.device}`)),
      ]);
      const why = await Promise.race([stopped, untilAborted(ctx.signal)]);
      if (typeof why === 'string')
        throw new ArgusError(`${why} stopped; the demo stops with it (its log is above)`);
      return 0;
    } finally {
      ctx.signal.removeEventListener('abort', stopRollout);
      rolloutStop.abort();
      await rolling;
      // agents first (they flush their spools to the broker), then the camera server, then the control plane
      await Promise.all(agents.map((c) => end(c, 10_000)));
      await rtsp?.stop();
      await cp.close();
    }
  },
};
