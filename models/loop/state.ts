import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/fs-atomic.ts';
import { compileSchema } from '../../common/schema.ts';

/**
 * The loop's persisted state machine: the step it is in and what each finished step produced.
 * Written atomically to `state.json` in the work directory after every step, before the next
 * starts; a run started again on the same work directory goes on from the step it was in (that
 * step starts over: its output is only ever renamed into place whole).
 */

export const LOOP_STEPS = ['collect', 'teacher', 'adapt', 'quantize', 'gate', 'sign'] as const;
export type LoopStep = (typeof LOOP_STEPS)[number];

export const STATE_FILE = 'state.json';

export const LoopStateSchema = Type.Object(
  {
    schemaVersion: Type.Literal(1),
    site: Type.String({ minLength: 1, maxLength: 200 }),
    startedAt: Type.String({ format: 'date-time' }),
    /** the step running or next (`done` once every step has) */
    step: Type.Union([
      Type.Literal('collect'),
      Type.Literal('teacher'),
      Type.Literal('adapt'),
      Type.Literal('quantize'),
      Type.Literal('gate'),
      Type.Literal('sign'),
      Type.Literal('done'),
    ]),
    /** each finished step's summary, by step */
    results: Type.Record(Type.String(), Type.Record(Type.String(), Type.Unknown())),
    /** each finished step's wall time, ms */
    wallMs: Type.Record(Type.String(), Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export type LoopState = Type.Static<typeof LoopStateSchema>;

const validator = compileSchema<LoopState>(LoopStateSchema);

export async function readLoopState(workDir: string): Promise<LoopState | undefined> {
  const path = join(workDir, STATE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ArgusError(
      `${path} is not valid JSON: ${(err as Error).message}`,
      'it is written atomically, so something else wrote it; remove the work directory to start over',
    );
  }
  return validator.parse(raw, path);
}

export async function writeLoopState(workDir: string, state: LoopState): Promise<void> {
  validator.parse(state, 'loop state');
  await writeFileAtomic(join(workDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}
