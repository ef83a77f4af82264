import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { iou } from '../../inference/nms.ts';
import { groundTruthPersons } from '../helpers/ground-truth.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const run = promisify(execFile);
const ARGUS = join(import.meta.dirname, '..', '..', 'bin', 'argus.mjs');

interface FrameLine {
  frame: number;
  detections: { label: string; score: number; box: number[] }[];
}

describe('argus detect', () => {
  before(ensureCatalogModels);

  it('prints the six pedestrians of frame 300 as JSON lines, then a summary with fps', async () => {
    const { stdout } = await run('node', [ARGUS, 'detect', SAMPLE_VIDEO, '--frames', '300', '--json']);
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    const frame = lines[0] as FrameLine;
    assert.equal(frame.frame, 300);
    const persons = frame.detections.filter((d) => d.label === 'person');
    assert.equal(persons.length, 6);
    for (const truth of groundTruthPersons(300)) {
      assert.ok(
        persons.some((p) => iou(p.box, truth) >= 0.5),
        `person at [${truth}] printed`,
      );
    }
    for (const d of frame.detections) {
      assert.equal(d.box.length, 4);
      assert.ok(d.box[2]! <= 768 && d.box[3]! <= 576, 'boxes are in source pixels');
    }
    const { summary } = lines[1] as { summary: Record<string, unknown> };
    assert.equal(summary.frames, 1);
    assert.equal(summary.decoded, 301);
    assert.ok(Number(summary.fps) > 0);
  });

  it('writes annotated JPEGs at source resolution with --out and prints a table without --json', async () => {
    const out = await mkdtemp(join(tmpdir(), 'argus-detect-'));
    try {
      const { stdout } = await run('node', [
        ARGUS,
        'detect',
        SAMPLE_VIDEO,
        '--frames',
        '0,600',
        '--out',
        out,
      ]);
      assert.match(stdout, /frame 0: \d+ objects\n\s+LABEL\s+SCORE\s+BOX/);
      assert.match(stdout, /frame 600: \d+ objects/);
      assert.match(stdout, /2 frame\(s\) detected, 601 decoded/);
      assert.deepEqual((await readdir(out)).sort(), ['frame-000000.jpg', 'frame-000600.jpg']);
      const meta = await sharp(join(out, 'frame-000600.jpg')).metadata();
      assert.equal(meta.format, 'jpeg');
      assert.deepEqual([meta.width, meta.height], [768, 576]);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('explains a missing file and a bad --frames value', async () => {
    await assert.rejects(
      run('node', [ARGUS, 'detect', '/nonexistent.mp4']),
      (err: { stderr: string; code: number }) => {
        assert.match(err.stderr, /video file \/nonexistent\.mp4 does not exist/);
        assert.equal(err.code, 1);
        return true;
      },
    );
    await assert.rejects(
      run('node', [ARGUS, 'detect', SAMPLE_VIDEO, '--frames', 'ten']),
      (err: { stderr: string }) => {
        assert.match(err.stderr, /--frames takes comma-separated frame numbers, got "ten"/);
        return true;
      },
    );
  });

  it('names the codec when the box has no decoder for it (an H.265 file, the H.265 decoders disabled)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'argus-h265-'));
    const file = join(dir, 'h265.mkv');
    try {
      await run('gst-launch-1.0', [
        ...['-q', 'videotestsrc', 'num-buffers=10', '!', 'video/x-raw,width=320,height=240'],
        ...['!', 'x265enc', '!', 'h265parse', '!', 'matroskamux', '!', 'filesink', `location=${file}`],
      ]);
      // the same file decodes where the decoder is there
      const { stdout } = await run('node', [ARGUS, 'detect', file, '--frames', '0', '--json']);
      assert.equal(JSON.parse(stdout.split('\n')[0]!).frame, 0);
      await assert.rejects(
        run('node', [ARGUS, 'detect', file, '--frames', '0'], {
          env: { ...process.env, GST_PLUGIN_FEATURE_RANK: 'avdec_h265:0,libde265dec:0' },
        }),
        (err: { stderr: string; code: number }) => {
          assert.match(err.stderr, /this box has no GStreamer decoder for H\.265: install the plugin/);
          assert.equal(err.code, 1);
          return true;
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
