import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArgusError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { loadControlPlaneConfig } from '../../control-plane/index.ts';

describe('control-plane config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-cp-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const load = async (yaml: string) => {
    const file = join(dir, 'cp.yaml');
    await writeFile(file, yaml);
    return loadControlPlaneConfig(file);
  };
  const rejects = async (yaml: string, ...patterns: RegExp[]) => {
    await assert.rejects(load(yaml), (err: unknown) => {
      assert.ok(err instanceof ArgusError);
      for (const p of patterns) assert.match(err.message, p);
      return true;
    });
  };

  it('defaults to the embedded broker and SQLite next to the file', async () => {
    const config = await load('devices:\n  - id: box-1\n    token: a-long-enough-token\n');
    assert.deepEqual(config.http, { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(config.mqtt, {
      kind: 'embedded',
      embedded: {
        host: '127.0.0.1',
        port: 1883,
        deviceCredentials: true,
        maxPacketBytes: 256 * 1024,
        connectTimeoutS: 10,
        maxConnectionsPerAddress: 100,
        credentialCheckS: 5,
      },
    });
    assert.deepEqual(config.storage, {
      kind: 'sqlite',
      sqlite: { path: join(dir, 'argus.db'), synchronous: 'full' },
    });
    // the token is kept beside its digest: a broker that checks passwords itself is given it
    assert.deepEqual(config.devices, [
      { id: 'box-1', tokenSha256: sha256Hex('a-long-enough-token'), token: 'a-long-enough-token' },
    ]);
    assert.deepEqual(config.enrollment, { claimTtlS: 86_400, exchangesPerMinute: 20, brokerSyncS: 5 });
  });

  it('takes an external broker and PostgreSQL', async () => {
    const config = await load(
      'mqtt:\n  external:\n    url: mqtt://broker:1883\n    sharedGroup: ingest\nstorage:\n  postgres:\n    url: postgres://argus@db/argus\n',
    );
    assert.equal(config.mqtt.kind, 'external');
    assert.equal(config.mqtt.kind === 'external' && config.mqtt.external.clientId, 'argus-control-plane');
    assert.equal(
      config.storage.kind === 'postgres' && config.storage.postgres.url,
      'postgres://argus@db/argus',
    );
  });

  it('bounds the HTTP API by default, each bound settable and checked', async () => {
    const config = await load('limits:\n  http:\n    liveStreams: 10\n');
    assert.deepEqual(config.limits.http, {
      bodyBytes: 64 * 1024,
      jsonDepth: 32,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 60_000,
      keepAliveTimeoutMs: 5000,
      connectionsPerAddress: 64,
      connections: 4096,
      deviceUploadsPerMinute: 600,
      liveStreams: 10,
      streamBacklogBytes: 8 * 1024 * 1024,
      pageBytes: 4 * 1024 * 1024,
    });
    await rejects('limits:\n  http:\n    jsonDepth: 100000\n', /cp\.yaml:3:16: limits\.http\.jsonDepth/);
    await rejects('limits:\n  http:\n    bodyLimit: 1\n', /limits\.http\.bodyLimit: unknown key/);
    await rejects(
      'limits:\n  http:\n    deviceUploadsPerMinute: 0\n',
      /limits\.http\.deviceUploadsPerMinute/,
    );
  });

  it('reports unknown keys and bad values with file:line:col', async () => {
    await rejects('http:\n  prot: 80\n', /cp\.yaml:2:3: http\.prot: unknown key "prot"/);
    await rejects('storage:\n  postgres:\n    url: mysql://x\n', /cp\.yaml:3:10: storage\.postgres\.url/);
  });

  it('refuses two brokers, two backends, repeated devices and ambiguous credentials', async () => {
    await rejects(
      'mqtt:\n  embedded: {}\n  external: { url: "mqtt://x" }\n',
      /cp\.yaml:2:3: mqtt: set either "embedded" or "external", not both/,
    );
    await rejects(
      'storage:\n  sqlite: {}\n  postgres: { url: "postgres://x" }\n',
      /either "sqlite" or "postgres"/,
    );
    await rejects(
      `devices:\n  - { id: box-1, token: a-long-enough-token }\n  - { id: box-1, tokenSha256: ${'a'.repeat(64)} }\n`,
      /cp\.yaml:3:5: devices\.1: device "box-1" is listed twice/,
    );
    await rejects('devices:\n  - { id: box-1 }\n', /give exactly one of "token" or "tokenSha256"/);
  });

  it('bounds ingest by default: JSON depth and a rate per device', async () => {
    const config = await load('{}\n');
    assert.deepEqual(config.ingest, {
      maxBatch: 2500,
      maxDelayMs: 0,
      maxJsonDepth: 32,
      deviceRate: { messagesPerSecond: 1000, burst: 60_000 },
    });
    await rejects('ingest: { maxJsonDepth: 1000 }\n', /ingest\/maxJsonDepth|maxJsonDepth/);
    await rejects('ingest: { deviceRate: { messagesPerSecond: 0 } }\n', /messagesPerSecond/);
  });
});
