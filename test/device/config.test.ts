import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArgusError } from '../../common/errors.ts';
import { loadDeviceConfig } from '../../device/config.ts';
import { agentConfigYaml } from '../helpers/device-setup.ts';

describe('device config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-device-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const write = async (name: string, text: string) => {
    const file = join(dir, name);
    await writeFile(file, text);
    return file;
  };
  const valid = () =>
    agentConfigYaml({
      device: 'box-1',
      brokerUrl: 'mqtt://127.0.0.1:1884',
      controlPlaneUrl: 'http://127.0.0.1:8080',
    });
  const failure = async (file: string): Promise<string> => {
    const err = await loadDeviceConfig(file).then(
      () => assert.fail('the config was accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ArgusError, String(err));
    return err.describe();
  };

  it('fills defaults and resolves paths against the config file', async () => {
    const config = await loadDeviceConfig(await write('ok.yaml', valid()));
    assert.equal(config.mqtt.clientId, 'argus-box-1');
    assert.equal(config.controlPlane.credentialFile, join(dir, 'box-1.credential'));
    assert.equal(config.mqtt.keepaliveS, 30);
    assert.equal(config.spool.path, join(dir, 'box-1.spool.db'));
    assert.equal(config.spool.sync, 'full');
    assert.equal(config.detector.model, 'nanodet');
    assert.deepEqual(config.detector.executionProviders, ['cpu']);
    assert.equal(config.health.host, '127.0.0.1');
    assert.equal(config.cameras[0]?.detectFps, 5);
    assert.equal(config.dir, dir);
  });

  it('resolves a model directory against the config file and keeps a cache name as it is', async () => {
    const withModel = (model: string) => `${valid()}detector:\n  model: ${model}\n`;
    const byPath = await loadDeviceConfig(await write('model-dir.yaml', withModel('./models/nanodet-int8')));
    assert.equal(byPath.detector.model, join(dir, 'models/nanodet-int8'));
    const byName = await loadDeviceConfig(await write('model-name.yaml', withModel('nanodet-int8')));
    assert.equal(byName.detector.model, 'nanodet-int8');
  });

  it('refuses unknown keys, naming file, line and the key', async () => {
    const text = valid()
      .replace('  heartbeatS: 1', '  heartbeatS: 1\n  hearbeat: 5')
      .replace('    scene: scenes/cam-2.yaml', '    scene: scenes/cam-2.yaml\n    fps: 10');
    const message = await failure(await write('unknown.yaml', text));
    const lines = text.split('\n');
    const typo = lines.findIndex((l) => l.includes('hearbeat:')) + 1;
    const fps = lines.findIndex((l) => l.includes('fps: 10')) + 1;
    assert.match(message, new RegExp(`unknown\\.yaml:${typo}:3: mqtt\\.hearbeat: unknown key "hearbeat"`));
    assert.match(message, new RegExp(`unknown\\.yaml:${fps}:5: cameras\\.1\\.fps: unknown key "fps"`));
  });

  it('reports wrong values and missing sections with their lines', async () => {
    const text = valid()
      .replace('id: box-1', 'id: Box 1')
      .replace(/controlPlane:\n.*\n.*\n/, '');
    const message = await failure(await write('bad.yaml', text));
    assert.match(message, /bad\.yaml:2:7: device\.id: /);
    assert.match(message, /bad\.yaml:1:1: \(top level\): missing required field "controlPlane"/);
  });

  it('refuses duplicate camera ids, pointing at both', async () => {
    const text = valid().replace('id: cam-2', 'id: cam-1');
    const message = await failure(await write('dup.yaml', text));
    assert.match(
      message,
      /dup\.yaml:\d+:9: cameras\.1\.id: "cam-1" is already the id of cameras\.0 \(.*dup\.yaml:\d+:9\)/,
    );
  });

  it('reports YAML syntax errors with their line', async () => {
    const message = await failure(await write('syntax.yaml', `${valid()}  - : [\n`));
    assert.match(message, /syntax\.yaml:\d+:\d+: /);
  });
});
