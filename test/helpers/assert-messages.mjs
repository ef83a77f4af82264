/**
 * Loaded before every test file and worker thread (`--import`; plain JS, as a worker runs its
 * `--import`s before tsx can load TypeScript; in scripts/run-tests.sh and `npm run fuzz`): a failing
 * `assert.ok(value)` without a message gets one here, so that node never builds it from the source.
 *
 * Why: node 20 writes the message of a failing message-less `assert.ok` by reading the caller's
 * file at the call site's line and column and parsing it with acorn (nodejs/node#52677). Under tsx
 * the call site is a position in the transformed code, which tsx emits on one line, so node reads
 * the `.ts` file on disk at line 1 and a column far into it, fails to parse TypeScript there, and
 * `findColumn` re-reads zero bytes and re-parses for ever: the event loop is blocked, the failure is
 * never reported, and the test "hangs" until the runner's timeout. The paging test of
 * http-limits.test.ts looked like a lost request for that reason; it was a failing `assert.ok`.
 */
import assert, { AssertionError } from 'node:assert';
import { syncBuiltinESMExports } from 'node:module';
import { inspect } from 'node:util';

/** `original` (an `assert.ok`), failing with a message of its own when it was given none */
function withMessage(original) {
  return function ok(...args) {
    const [value, message] = args;
    if (args.length >= 1 && !value && message === undefined)
      throw new AssertionError({
        message: `expected a truthy value, got ${inspect(value)} (assert.ok without a message: see the stack for the call)`,
        actual: value,
        expected: true,
        operator: '==',
        stackStartFn: ok,
      });
    return original.apply(this, args);
  };
}

Object.assign(assert, { ok: withMessage(assert.ok) });
Object.assign(assert.strict, { ok: withMessage(assert.strict.ok) });
// named imports (`import { ok } from 'node:assert'`) see the replaced functions too
syncBuiltinESMExports();
