import assert from 'node:assert/strict';
import { apiFetch } from '../control-plane/setup.ts';

/**
 * An SSE client of the API (with its test token) reading in the background: each message block
 * (the text between blank lines) goes through `keep`, and what it returns is collected in `items`.
 */
export async function followSse<T>(
  url: string,
  keep: (block: string) => T | undefined,
): Promise<{ items: T[]; stop(): Promise<void> }> {
  const abort = new AbortController();
  const res = await apiFetch(url, { signal: abort.signal });
  assert.equal(res.status, 200);
  const items: T[] = [];
  const decoder = new TextDecoder();
  let pending = '';
  const reading = (async () => {
    for await (const chunk of res.body!) {
      const blocks = (pending + decoder.decode(chunk, { stream: true })).split('\n\n');
      pending = blocks.pop()!;
      for (const b of blocks) {
        const item = keep(b);
        if (item !== undefined) items.push(item);
      }
    }
  })().catch((err: unknown) => {
    if (!abort.signal.aborted) throw err;
  });
  return {
    items,
    async stop() {
      abort.abort();
      await reading;
    },
  };
}
