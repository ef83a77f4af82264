import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { BatchedWrites, WRITE_BATCH_BYTES } from '../../common/batched-writes.ts';

describe('BatchedWrites (a stream written to a file in batches)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-batched-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('for any chunks and start position, the file holds them in order; it never holds back more than a batch', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.integer({ min: 0, max: 16 }),
            fc.integer({ min: 1, max: 70_000 }),
            fc.integer({ min: WRITE_BATCH_BYTES - 10, max: WRITE_BATCH_BYTES + 10 }),
          ),
          { maxLength: 60 },
        ),
        fc.integer({ min: 0, max: 5000 }),
        async (sizes, start) => {
          const file = join(dir, `f${run++}`);
          const fd = await open(file, 'w');
          const head = Buffer.alloc(start, 0xee);
          await fd.write(head, 0, start, 0);
          const out = new BatchedWrites(fd, start);
          const chunks: Buffer[] = [];
          let added = 0;
          try {
            for (const [i, size] of sizes.entries()) {
              const c = Buffer.alloc(size, i % 251);
              chunks.push(c);
              await out.add(c);
              added += size;
              assert.ok(out.written <= start + added, 'written counts only what was added');
              assert.ok(
                start + added - out.written < WRITE_BATCH_BYTES + size,
                `held back ${start + added - out.written} bytes`,
              );
            }
            await out.flush();
            assert.equal(out.written, start + added);
          } finally {
            await fd.close();
          }
          assert.deepEqual(await readFile(file), Buffer.concat([head, ...chunks]));
          await rm(file);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('writes a chunk that waited while more came slowly, however small the batch', async () => {
    const fd = await open(join(dir, 'slow'), 'w');
    try {
      const out = new BatchedWrites(fd, 0);
      await out.add(Buffer.alloc(100, 1));
      assert.equal(out.written, 0, 'a small batch waits for more');
      await new Promise((r) => setTimeout(r, 250));
      await out.add(Buffer.alloc(100, 2));
      assert.equal(out.written, 200, 'the batch whose first chunk waited is written with the next');
    } finally {
      await fd.close();
    }
  });
});
