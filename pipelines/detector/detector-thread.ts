import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { threadData } from '../../common/thread.ts';
import { Detector, type ModelFrame } from './detector.ts';
import type { DetectorSettings } from './settings.ts';
import type { DetectReply, DetectRequest, ThreadReady } from './thread-protocol.ts';

/**
 * The worker side of ThreadedDetector: loads one Detector and answers detection requests in the
 * order they arrive. Frames come packed in one transferred buffer.
 */
const port = parentPort!;
const settings = threadData<DetectorSettings>();

try {
  const detector = await Detector.load(settings, createLogger('detector-thread'));
  const frameBytes = detector.inputWidth * detector.inputHeight * 3;
  port.on('message', async (req: DetectRequest | 'close') => {
    if (req === 'close') {
      await detector.close();
      port.close();
      return;
    }
    let reply: DetectReply;
    try {
      const frames: ModelFrame[] = req.sizes.map(([sourceWidth, sourceHeight], i) => ({
        pixels: new Uint8Array(req.pixels, i * frameBytes, frameBytes),
        sourceWidth,
        sourceHeight,
      }));
      reply = { id: req.id, detections: await detector.detect(frames) };
    } catch (err) {
      reply = { id: req.id, error: errorMessage(err) };
    }
    port.postMessage(reply);
  });
  const ready: ThreadReady = {
    ready: true,
    descriptor: detector.descriptor,
    provider: detector.provider,
    maxBatch: detector.maxBatch,
  };
  port.postMessage(ready);
} catch (err) {
  const failed: ThreadReady = { ready: false, error: errorMessage(err) };
  port.postMessage(failed);
}
