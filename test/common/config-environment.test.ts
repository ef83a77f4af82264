import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { parseConfigDocument, substituteEnvironment } from '../../common/config-file.ts';
import { loadControlPlaneConfig } from '../../control-plane/config.ts';
import { loadDeviceConfig } from '../../device/config.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const SECRETS = [
  'ARGUS_POSTGRES_PASSWORD',
  'ARGUS_BROKER_ADMIN_PASSWORD',
  'ARGUS_BROKER_PASSWORD',
  'ARGUS_BOX_1_TOKEN',
];

/** runs `fn` with these environment variables set (or removed, for undefined) */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

describe('secrets from the environment in config files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-config-env-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('puts each environment variable referred to in, inside a value too', () => {
    const doc = parseConfigDocument(
      `a: \${X_ONE}\nb: { url: "p://u:\${X_TWO}@h" }\nc: [$x, "\${X_ONE}"]\n`,
      'f.yaml',
      'test',
    );
    const out = substituteEnvironment(doc, { X_ONE: 'one', X_TWO: 's3cret' });
    assert.deepEqual(out.data, { a: 'one', b: { url: 'p://u:s3cret@h' }, c: ['$x', 'one'] });
  });

  it('names the file, line and key of every variable that is not set (or empty)', async () => {
    const file = join(dir, 'cp.yaml');
    await writeFile(
      file,
      `http: { port: 0 }\nmqtt:\n  external:\n    url: mqtt://b:1883\n    password: \${ARGUS_TEST_UNSET}\n`,
    );
    await withEnv({ ARGUS_TEST_UNSET: '' }, async () => {
      await assert.rejects(loadControlPlaneConfig(file), (err: Error) => {
        assert.match(
          err.message,
          /cp\.yaml:5:\d+: mqtt\.external\.password: the environment variable ARGUS_TEST_UNSET is not set/,
        );
        return true;
      });
    });
  });

  it('the deployment configs hold no secret: each comes from the environment', async () => {
    const cpFile = join(ROOT, 'deploy/control-plane.yaml');
    const deviceFile = join(ROOT, 'deploy/device.yaml');
    const unset = Object.fromEntries(SECRETS.map((k) => [k, undefined]));
    await withEnv(unset, async () => {
      await assert.rejects(loadControlPlaneConfig(cpFile), (err: Error) => {
        for (const name of SECRETS) assert.match(err.message, new RegExp(`${name} is not set`));
        return true;
      });
      await assert.rejects(loadDeviceConfig(deviceFile), /ARGUS_BOX_1_TOKEN is not set/);
    });
    const values = Object.fromEntries(SECRETS.map((k) => [k, `value-of-${k.toLowerCase()}`]));
    await withEnv(values, async () => {
      const cp = await loadControlPlaneConfig(cpFile);
      assert.equal(cp.mqtt.kind, 'external');
      if (cp.mqtt.kind !== 'external') return;
      assert.equal(cp.mqtt.external.password, values.ARGUS_BROKER_PASSWORD);
      assert.equal(cp.mqtt.external.dynamicSecurity?.adminPassword, values.ARGUS_BROKER_ADMIN_PASSWORD);
      assert.ok(
        cp.storage.kind === 'postgres' && cp.storage.postgres.url.includes(values.ARGUS_POSTGRES_PASSWORD!),
      );
      const device = await loadDeviceConfig(deviceFile);
      assert.equal(device.controlPlane.token, values.ARGUS_BOX_1_TOKEN);
    });
  });

  it('the compose file publishes only the API, on loopback; Mosquitto takes no anonymous client', async () => {
    const compose = parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { ports?: string[]; environment?: Record<string, string> }>;
    };
    const published = Object.entries(compose.services).flatMap(([name, s]) =>
      (s.ports ?? []).map((p) => `${name} ${p}`),
    );
    assert.deepEqual(published, ['control-plane 127.0.0.1:8080:8080']);
    for (const s of Object.values(compose.services))
      for (const [k, v] of Object.entries(s.environment ?? {}))
        if (/PASSWORD|TOKEN/.test(k))
          assert.match(String(v), /^\$\{ARGUS_[A-Z0-9_]+:\?/, `${k} comes from .env`);
    const mosquitto = await readFile(join(ROOT, 'deploy/mosquitto.conf'), 'utf8');
    assert.match(mosquitto, /^allow_anonymous false$/m);
    assert.match(mosquitto, /^plugin .*mosquitto_dynamic_security\.so$/m);
  });
});
