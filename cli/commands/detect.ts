import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { type Detection, Detector } from '../../inference/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS, type DetectorSettings } from '../../inference/settings.ts';
import { ensureModelInstalled } from '../../models/store.ts';
import { renderAnnotatedJpeg } from '../../pipelines/snapshot.ts';
import { FrameSource, toModelFrame, type VideoFrame } from '../../video/frame-source.ts';
import { parseSourceUrl } from '../../video/source-url.ts';
import { type Command, parseCommandArgs, parseIntegerList, parsePositiveNumber } from '../command.ts';

const round = (v: number, digits: number) => Number(v.toFixed(digits));

function jsonLine(frame: number, detections: Detection[]): string {
  return JSON.stringify({
    frame,
    detections: detections.map((d) => ({
      label: d.label,
      score: round(d.score, 3),
      box: d.box.map((v) => round(v, 1)),
    })),
  });
}

function tableLines(frame: number, detections: Detection[]): string {
  if (detections.length === 0) return `frame ${frame}: nothing detected\n`;
  const rows = detections.map(
    (d) =>
      `  ${d.label.padEnd(14)} ${d.score.toFixed(2)}   [${d.box.map((v) => Math.round(v).toString().padStart(4)).join(', ')}]`,
  );
  return `frame ${frame}: ${detections.length} object${detections.length > 1 ? 's' : ''}\n  ${'LABEL'.padEnd(14)} SCORE  BOX (x1, y1, x2, y2)\n${rows.join('\n')}\n`;
}

export const detect: Command = {
  path: ['detect'],
  summary: 'run the detector over a video file or an RTSP stream',
  usage:
    'argus detect <video-file|rtsp-url> [--model NAME] [--frames 0,300,600] [--max-frames N] [--json] [--out DIR] [--score X] [--threads N] [--batch N] [--ep cuda,cpu]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      model: { type: 'string', value: 'NAME', description: 'the model, a catalog name or a model directory' },
      frames: {
        type: 'string',
        value: 'LIST',
        description: 'detect only these frame numbers, e.g. 0,300,600',
      },
      'max-frames': { type: 'string', value: 'N', description: 'stop after detecting this many frames' },
      json: { type: 'boolean', description: 'print one JSON line per frame, then a summary line' },
      out: {
        type: 'string',
        value: 'DIR',
        description: 'write each detected frame as an annotated JPEG there',
      },
      score: { type: 'string', value: 'X', description: 'report detections scoring at least this (0..1)' },
      threads: { type: 'string', value: 'N', description: 'inference threads (0: as many as cores)' },
      batch: { type: 'string', value: 'N', description: 'frames per inference call at most' },
      ep: {
        type: 'string',
        value: 'LIST',
        description: 'onnxruntime execution providers to try in order, e.g. cuda,cpu',
      },
    });
    if (positionals.length !== 1)
      throw new ArgusError('detect needs exactly one video file or RTSP URL', `usage: ${this.usage}`);
    const source = parseSourceUrl(positionals[0]!);
    const wanted = values.frames ? new Set(parseIntegerList(values.frames, '--frames')) : undefined;
    const lastWanted = wanted ? Math.max(...wanted) : Number.POSITIVE_INFINITY;
    const maxFrames = parsePositiveNumber(values['max-frames'], '--max-frames') ?? Number.POSITIVE_INFINITY;
    const score = parsePositiveNumber(values.score, '--score');
    const settings: DetectorSettings = {
      ...DEFAULT_DETECTOR_SETTINGS,
      model: values.model ?? DEFAULT_DETECTOR_SETTINGS.model,
      intraOpThreads: parsePositiveNumber(values.threads, '--threads') ?? 0,
      maxBatch: parsePositiveNumber(values.batch, '--batch') ?? DEFAULT_DETECTOR_SETTINGS.maxBatch,
      executionProviders: values.ep ? values.ep.split(',') : DEFAULT_DETECTOR_SETTINGS.executionProviders,
      ...(score !== undefined ? { scoreThreshold: score } : {}),
    };
    const log = createLogger('detect');
    await ensureModelInstalled(settings.model, ctx.signal);
    const detector = await Detector.load(settings, log);
    if (values.out) await mkdir(values.out, { recursive: true });

    const input = detector.descriptor.input;
    const frames = new FrameSource(
      { source, model: { width: input.width, height: input.height, format: input.colorOrder } },
      log,
    );
    const stopOnAbort = () => frames.stop();
    ctx.signal.addEventListener('abort', stopOnAbort, { once: true });
    const started = performance.now();
    let processed = 0;
    let decoded = 0;
    let inferenceMs = 0;
    const pending: VideoFrame[] = [];

    const flush = async () => {
      if (pending.length === 0) return;
      const batch = pending.splice(0, pending.length);
      const t0 = performance.now();
      const results = await detector.detect(batch.map(toModelFrame));
      inferenceMs += performance.now() - t0;
      for (const [i, f] of batch.entries()) {
        const found = results[i]!;
        processed++;
        ctx.stdout.write(values.json ? `${jsonLine(f.index, found)}\n` : tableLines(f.index, found));
        if (values.out) {
          const jpeg = await renderAnnotatedJpeg(
            f.full,
            found.map((d) => ({ box: d.box, label: `${d.label} ${d.score.toFixed(2)}` })),
          );
          await writeFile(join(values.out, `frame-${String(f.index).padStart(6, '0')}.jpg`), jpeg);
        }
      }
    };

    frames.start();
    try {
      for (;;) {
        const frame = await frames.next();
        if (!frame) break;
        decoded++;
        if (!wanted || wanted.has(frame.index)) pending.push(frame);
        if (pending.length >= detector.maxBatch) await flush();
        if (frame.index >= lastWanted || processed + pending.length >= maxFrames) break;
      }
      await flush();
    } finally {
      frames.stop();
      ctx.signal.removeEventListener('abort', stopOnAbort);
      await detector.close();
    }
    if (wanted) {
      const missing = [...wanted].filter((n) => n >= decoded);
      if (missing.length > 0)
        log.warn({ missing, decoded }, 'requested frames are past the end of the stream');
    }
    const seconds = (performance.now() - started) / 1000;
    const summary = {
      frames: processed,
      decoded,
      seconds: round(seconds, 3),
      fps: round(decoded / seconds, 1),
      detect_fps: round(inferenceMs > 0 ? (processed * 1000) / inferenceMs : 0, 1),
      model: detector.descriptor.name,
      provider: detector.provider,
    };
    ctx.stdout.write(
      values.json
        ? `${JSON.stringify({ summary })}\n`
        : `\n${processed} frame(s) detected, ${decoded} decoded in ${summary.seconds} s (${summary.fps} fps overall, ${summary.detect_fps} fps inference) with ${summary.model} on ${summary.provider}\n`,
    );
    return 0;
  },
};
