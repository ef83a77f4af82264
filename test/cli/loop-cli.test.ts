import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';

const ROOT = resolve(import.meta.dirname, '../..');

function argus(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [join(ROOT, 'bin/argus.mjs'), ...args], (err, stdout, stderr) =>
      res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * `argus loop run` and `argus loop worker` check the config's `loop.options` (LoopSettingsSchema)
 * when they open the job: a section without the site's annotated frames, or with a value out of
 * its bounds, stops the command at its start, naming the key, and queues no run.
 */
describe('argus loop run | worker with a wrong loop.options', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-loop-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const config = async (name: string, options: string) => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(
      file,
      `storage: { sqlite: { path: ${name}.db, synchronous: normal } }\nloop:\n  options: ${options}\n`,
    );
    return file;
  };

  it('refuses a loop without annotated frames, saying where to give them', async () => {
    const file = await config('none', '{ adapt: { epochs: 2 } }');
    for (const command of [
      ['loop', 'run', '--site', 'north', '--config', file],
      ['loop', 'worker', '--config', file],
    ]) {
      const out = await argus(command);
      assert.equal(out.code, 1, out.stdout);
      assert.match(out.stderr, /loop\.options of .*none\.yaml name no hand-annotated frames/);
      assert.match(out.stderr, /loop\.options\.annotated/);
      assert.doesNotMatch(out.stdout, /queued/);
    }
  });

  it('names each value out of its bounds', async () => {
    const annotated =
      '{ video: vtest.avi, label: person, width: 768, height: 576, frames: [{ index: 0, boxes: [] }] }';
    const file = await config(
      'bounds',
      `{ annotated: ${annotated}, heldOutShare: 2, maxFrames: 1, colour: red }`,
    );
    const out = await argus(['loop', 'run', '--site', 'north', '--config', file]);
    assert.equal(out.code, 1, out.stdout);
    assert.match(out.stderr, /loop\.options of .*bounds\.yaml is invalid/);
    assert.match(out.stderr, /\/heldOutShare/);
    assert.match(out.stderr, /\/maxFrames/);
    assert.match(out.stderr, /unknown key "colour"/);
    assert.ok(!(await readdir(dir)).includes('loop'), 'no work directory was made');
  });
});
