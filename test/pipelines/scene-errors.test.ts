/**
 * Scene mistakes are reported before the detector loads, each with its file:line and what the
 * field expects: coordinates are fractions of the frame, and an unknown key is listed with the keys
 * its rule type takes. Checked on the parser for every rule type, and on the real processes that
 * load scenes (`argus replay`, `argus device run`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { RULE_TYPES } from '../../contract/payloads.ts';
import { parseScene } from '../../pipelines/scene/load.ts';
import { RULE_SCHEMAS } from '../../pipelines/scene/schema.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const ARGUS = resolve(import.meta.dirname, '../../bin/argus.mjs');
const run = promisify(execFile);

/** a minimal valid rule of each type */
const RULES: Record<(typeof RULE_TYPES)[number], string> = {
  zone: 'polygon: [[0,0],[1,0],[1,1]]',
  line: 'line: [[0.1,0.1],[0.9,0.9]]',
  loitering: 'polygon: [[0,0],[1,0],[1,1]]\n    seconds: 5',
  crowding: 'polygon: [[0,0],[1,0],[1,1]]\n    count: 3\n    seconds: 5',
  'wrong-way': 'direction: [1, 0]',
  stationary: 'seconds: 30',
};
const scene = (type: string, body: string) => `name: s\nrules:\n  - id: r\n    type: ${type}\n    ${body}\n`;

/** the error `parseScene` throws for `text` */
function problem(text: string): string {
  try {
    parseScene(text, 'bad.yaml');
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('the scene was accepted');
}

describe('scene errors', () => {
  it('lists the keys a rule type takes when an unknown key is given, for every rule type', () => {
    for (const type of RULE_TYPES) {
      parseScene(scene(type, RULES[type]), 'good.yaml');
      const message = problem(scene(type, `${RULES[type]}\n    colour: red`));
      assert.match(message, /bad\.yaml:\d+:\d+: rules\.0\.colour: unknown key "colour"/);
      assert.ok(
        message.includes(`a ${type} rule takes: ${Object.keys(RULE_SCHEMAS[type].properties).join(', ')}`),
        message,
      );
    }
  });

  it('says coordinates are fractions of the frame when a point is given in pixels', () => {
    for (const text of [
      scene('zone', 'polygon: [[0,0],[640,0],[640,480]]'),
      scene('line', 'line: [[0.1,0.1],[320,0.9]]'),
      scene('stationary', 'seconds: 30\n    polygon: [[-0.1,0],[1,0],[1,1]]'),
    ]) {
      assert.match(problem(text), /coordinates are fractions of the frame from 0 to 1 .*not pixels/);
    }
  });

  it('says what a missing field expects, and the keys of a scene section', () => {
    assert.match(
      problem(scene('zone', 'polygn: [[0,0],[1,0],[1,1]]')),
      /missing required field "polygon"; polygon: \[\[x, y\], …\]: at least 3 vertices .* fractions of the frame/,
    );
    assert.match(
      problem(
        `name: s\ntracker:\n  maxAge: 3\nrules:\n  - id: r\n    type: ${'stationary'}\n    seconds: 3\n`,
      ),
      /bad\.yaml:3:3: tracker\.maxAge: unknown key "maxAge" .*tracker takes: highScore, lowScore, matchIou, maxAgeSeconds, minHits/,
    );
  });

  describe('from the processes that load scenes, before the detector loads', () => {
    let dir: string;
    let bad: string;
    before(async () => {
      await ensureCatalogModels();
      dir = await mkdtemp(join(tmpdir(), 'argus-scene-errors-'));
      bad = join(dir, 'bad.yaml');
      await writeFile(bad, scene('zone', 'polygon: [[0,0],[640,0],[640,480]]'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    const env = { ...process.env, ARGUS_LOG_LEVEL: 'info' };
    const fails = async (args: string[]) =>
      run(process.execPath, [ARGUS, ...args], { env, cwd: dir }).then(
        () => assert.fail(`argus ${args.join(' ')} succeeded`),
        (err: { code: number; stderr: string }) => err,
      );

    it('argus replay', async () => {
      const err = await fails(['replay', SAMPLE_VIDEO, '--scene', bad]);
      assert.notEqual(err.code, 0);
      assert.match(
        err.stderr,
        /bad\.yaml:5:\d+: rules\.0\.polygon\.1\.0: must be <= 1; coordinates are fractions/,
      );
      assert.doesNotMatch(err.stderr, /detector sessions ready/);
    });

    it('argus device run', async () => {
      const config = join(dir, 'device.yaml');
      await writeFile(
        config,
        `device:\n  id: box-scene\nmqtt:\n  url: mqtt://127.0.0.1:1\ncontrolPlane:\n  url: http://127.0.0.1:1\n  token: token-of-box-scene-for-tests\nhealth:\n  port: 0\ncameras:\n  - id: cam-1\n    url: rtsp://127.0.0.1:1/cam-1\n    scene: bad.yaml\n`,
      );
      const err = await fails(['device', 'run', '--config', config]);
      assert.notEqual(err.code, 0);
      assert.match(
        err.stderr,
        /bad\.yaml:5:\d+: rules\.0\.polygon\.1\.0: must be <= 1; coordinates are fractions/,
      );
      assert.doesNotMatch(err.stderr, /detector sessions ready/);
    });
  });
});
