/**
 * The first hour of a field engineer: `argus <command> --help` describes every option of every
 * command and names the example to start from; the examples load with the real config loaders
 * and fit together (the device's broker, control plane and token are the control plane's).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { COMMANDS, main } from '../../cli/main.ts';
import { sha256Hex } from '../../common/hash.ts';
import { loadControlPlaneConfig } from '../../control-plane/config.ts';
import { loadDeviceConfig } from '../../device/config.ts';
import { loadScene, parseScene } from '../../pipelines/scene/load.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** what `argus …args` writes to stdout, and its exit code, in this process */
async function argus(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await main(args), out };
  } finally {
    process.stdout.write = write;
  }
}

describe('argus --help and the examples', () => {
  it('shows the examples in the README as they are in examples/', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    for (const name of ['control-plane.yaml', 'device.yaml']) {
      const shown = new RegExp(
        `\`examples/${name.replace('.', '\\.')}\`:\\n\\n\`\`\`yaml\\n([\\s\\S]*?)\`\`\`\\n`,
      ).exec(readme);
      assert.ok(shown, `the README shows examples/${name}`);
      assert.equal(
        shown[1],
        await readFile(join(ROOT, 'examples', name), 'utf8'),
        `the README's copy of examples/${name}`,
      );
    }
  });

  it("the README's scene is a valid scene", async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const scene = /```yaml\n(name: [\s\S]*?)```\n/.exec(readme);
    assert.ok(scene, 'the README shows a scene');
    const parsed = parseScene(scene[1]!, 'README.md');
    assert.deepEqual(
      parsed.rules.map((r) => r.type),
      ['wrong-way', 'loitering'],
    );
  });

  it('describes every option of every command', async () => {
    for (const command of COMMANDS) {
      const { code, out } = await argus([...command.path, '--help']);
      const name = `argus ${command.path.join(' ')}`;
      assert.equal(code, 0, name);
      assert.ok(out.startsWith(`${command.summary}\n`), name);
      assert.ok(out.includes(`usage: ${command.usage}`), name);
      const options = out.split('options:\n')[1]?.split('\n\n')[0]?.split('\n').filter(Boolean) ?? [];
      assert.ok(
        options.some((l) => /^ {2}--help {2,}show this help$/.test(l)),
        `${name}: --help listed`,
      );
      for (const flag of new Set(command.usage.match(/--[a-z][a-z-]*/g) ?? [])) {
        const line = options.find((l) => l.trimStart().startsWith(`${flag} `) || l.trim() === flag);
        assert.ok(line, `${name}: ${flag} of its usage is described`);
        assert.match(
          line,
          new RegExp(`^ {2}${flag}( [^ ]+)? {2,}\\S.{8,}`),
          `${name}: ${flag} has a description`,
        );
      }
      if (command.example) {
        assert.ok(out.includes(`example: ${command.example}`), name);
        assert.ok(existsSync(join(ROOT, command.example)), `${name}: ${command.example} exists`);
      }
    }
  });

  it('points the device and control plane commands to their examples', async () => {
    assert.match((await argus(['device', 'run', '--help'])).out, /example: examples\/device\.yaml/);
    assert.match(
      (await argus(['control-plane', 'run', '--help'])).out,
      /example: examples\/control-plane\.yaml/,
    );
  });

  it('loads both examples with the real loaders, and they fit together', async () => {
    const device = await loadDeviceConfig(join(ROOT, 'examples/device.yaml'));
    const cp = await loadControlPlaneConfig(join(ROOT, 'examples/control-plane.yaml'));
    assert.equal(cp.mqtt.kind, 'embedded');
    if (cp.mqtt.kind !== 'embedded') return;
    assert.equal(device.mqtt.url, `mqtt://${cp.mqtt.embedded.host}:${cp.mqtt.embedded.port}`);
    assert.equal(device.controlPlane.url, `http://${cp.http.host}:${cp.http.port}`);
    const listed = cp.devices.find((d) => d.id === device.device.id);
    assert.ok(listed, `the control plane lists ${device.device.id}`);
    assert.ok(device.controlPlane.token, 'the example box has a pre-provisioned credential');
    assert.equal(listed.tokenSha256, sha256Hex(device.controlPlane.token));
    for (const camera of device.cameras) await loadScene(resolve(device.dir, camera.scene));
  });

  it('runs `argus device run --help` as a process', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      join(ROOT, 'bin/argus.mjs'),
      'device',
      'run',
      '--help',
    ]);
    assert.match(stdout, /--config FILE +the device config \(YAML\)/);
  });
});
