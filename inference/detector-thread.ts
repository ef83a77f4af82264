import { getPriority, setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../common/errors.ts';
import { createLogger } from '../common/logger.ts';
import { threadData } from '../common/thread.ts';
import { Detector } from './detector.ts';
import { inputBytes, type ModelFrame } from './model-frame.ts';
import type { DetectorSettings } from './settings.ts';
import type { DetectReply, DetectRequest, ThreadReady } from './thread-protocol.ts';

/**
 * The worker side of ThreadedDetector: loads one Detector and answers detection requests in the
 * order they arrive. Frames come packed in one transferred buffer.
 */
const port = parentPort!;
const settings = threadData<DetectorSettings>();
const log = createLogger('detector-thread');

// before the session exists: threads onnxruntime starts for it inherit the priority
if (settings.threadNice !== 0) {
  try {
    setPriority(0, settings.threadNice);
  } catch (err) {
    log.warn(
      { nice: settings.threadNice, err: errorMessage(err) },
      'cannot set the detector thread priority, it runs at the default: run the agent as root or give it CAP_SYS_NICE, or set detector.threadNice to 0',
    );
  }
}

try {
  const detector = await Detector.load(settings, log);
  port.on('message', async (req: DetectRequest | 'close') => {
    if (req === 'close') {
      await detector.close();
      port.close();
      return;
    }
    let reply: DetectReply;
    try {
      let offset = 0;
      const frames = req.frames.map((f): ModelFrame => {
        const bytes = inputBytes(f.size);
        offset += bytes;
        return { ...f, pixels: new Uint8Array(req.pixels, offset - bytes, bytes) };
      });
      reply = { id: req.id, detections: await detector.detect(frames), pixels: req.pixels };
    } catch (err) {
      reply = { id: req.id, error: errorMessage(err), pixels: req.pixels };
    }
    port.postMessage(reply, [req.pixels]);
  });
  const ready: ThreadReady = {
    ready: true,
    descriptor: detector.descriptor,
    provider: detector.provider,
    maxBatch: detector.maxBatch,
    nice: getPriority(0),
  };
  port.postMessage(ready);
} catch (err) {
  const failed: ThreadReady = { ready: false, error: errorMessage(err) };
  port.postMessage(failed);
}
