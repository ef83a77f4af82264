import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const SILENCE_MS = 9000;

describe('argus replay over a recording that is missing or stops delivering data', () => {
  let dir: string;
  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-stall-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('fails naming the recording and the last frame instead of waiting for ever or passing as complete', async () => {
    // a FIFO that delivers the first part of the video, then nothing for longer than the stall
    // timeout (5 s), then closes: a replay without a watchdog would end "normally" at that point
    const fifo = join(dir, 'stalling.avi');
    await new Promise<void>((res, rej) => execFile('mkfifo', [fifo], (err) => (err ? rej(err) : res())));
    const head = (await readFile(SAMPLE_VIDEO)).subarray(0, 1_500_000);
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin/argus.mjs'),
        'replay',
        fifo,
        '--scene',
        join(ROOT, 'scenes/vtest-campus.yaml'),
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const writer = await open(fifo, 'w');
    try {
      await writer.write(head);
      await new Promise((r) => setTimeout(r, SILENCE_MS));
    } catch (err) {
      child.kill('SIGKILL');
      assert.fail(`replay stopped reading: ${String(err)}\nstderr: ${stderr}`);
    } finally {
      await writer.close();
    }
    // a replay that hangs must fail the test, not the whole suite
    const code = await Promise.race([
      exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`replay did not exit within 60 s of the recording's end; stderr: ${stderr}`));
        }, 60_000).unref(),
      ),
    ]);
    assert.notEqual(code, 0, `replay of a stalled recording exited 0; stderr: ${stderr}`);
    assert.match(stderr, /stalling\.avi: no frame for 5 s after frame \d+; the recording is truncated/);
    const events = stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { phase: string });
    assert.ok(events.length > 0, 'events of the frames before the stall are printed');
    assert.ok(
      events.some((e) => e.phase === 'end'),
      'open events are ended at the last frame',
    );
  });

  it('fails at once, naming the file, when the recording does not exist', async () => {
    const missing = join(dir, 'no-such-recording.avi');
    const result = await new Promise<{ code: number | null; stderr: string }>((res, rej) => {
      const child = execFile(
        process.execPath,
        [join(ROOT, 'bin/argus.mjs'), 'replay', missing, '--scene', join(ROOT, 'scenes/vtest-campus.yaml')],
        // it used to print the error and then hang on the detector's threads
        { timeout: 60_000 },
        (err, _stdout, stderr) =>
          err?.killed
            ? rej(new Error(`replay did not exit; stderr: ${stderr}`))
            : res({ code: child.exitCode, stderr }),
      );
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /argus replay: video file .*no-such-recording\.avi does not exist/);
  });
});
