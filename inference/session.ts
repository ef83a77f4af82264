import ort from 'onnxruntime-node';
import { ArgusError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';

export interface SessionOptions {
  /** in order of preference, e.g. ["cuda", "cpu"]; CPU is always tried last */
  executionProviders: readonly string[];
  /** threads for one operator (0 = ONNX Runtime's default: one per core) */
  intraOpThreads: number;
  interOpThreads: number;
}

export interface OpenedSession {
  session: ort.InferenceSession;
  /** the execution provider that was actually used */
  provider: string;
}

const ORT_FATAL_ONLY = 3;
// ONNX Runtime prints provider-loading failures natively to stderr; openSession logs them itself.
ort.env.logLevel = 'fatal';

/**
 * Opens an ONNX Runtime session on the first execution provider that loads and runs the model.
 * A provider that is not bundled, has no driver, or fails on a warm-up run is skipped with a log
 * line naming it and the reason, ending with CPU, which every build has.
 */
export async function openSession(
  model: Uint8Array,
  options: SessionOptions,
  warmup: (session: ort.InferenceSession) => Promise<void>,
  log: Logger,
): Promise<OpenedSession> {
  const providers = [...options.executionProviders.filter((p) => p !== 'cpu'), 'cpu'];
  const failures: string[] = [];
  for (const provider of providers) {
    try {
      const session = await ort.InferenceSession.create(model, {
        executionProviders: [provider],
        intraOpNumThreads: options.intraOpThreads,
        interOpNumThreads: options.interOpThreads,
        graphOptimizationLevel: 'all',
        logSeverityLevel: ORT_FATAL_ONLY,
      });
      try {
        await warmup(session);
      } catch (err) {
        await session.release();
        throw err;
      }
      if (failures.length > 0) {
        log.warn({ provider, skipped: failures }, `execution provider fallback: using ${provider}`);
      } else {
        log.info({ provider }, `execution provider ${provider}`);
      }
      return { session, provider };
    } catch (err) {
      const reason = (err as Error).message.split('\n')[0]!.slice(0, 200);
      failures.push(`${provider}: ${reason}`);
      if (provider !== 'cpu')
        log.warn({ provider, reason }, `execution provider ${provider} unavailable, falling back`);
    }
  }
  throw new ArgusError(`no execution provider could run the model:\n  ${failures.join('\n  ')}`);
}
