import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openRepository } from '../../control-plane/index.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';
import { PostgresServer } from '../helpers/postgres.ts';

/** the plain-SQL access of the stores beside ingest behaves the same on both backends */
function sqlAccessSuite(name: string, open: () => Promise<Repository>): void {
  describe(`SqlAccess (${name})`, () => {
    let repo: Repository;
    before(async () => {
      repo = await open();
      const { dialect: d } = repo.sql;
      await repo.sql.write([
        { sql: `CREATE TABLE kv (n ${d.serial}, k TEXT NOT NULL UNIQUE, v ${d.bytes}, at ${d.bigint})` },
      ]);
    });
    after(() => repo?.close());

    it('writes in one transaction and reads what committed, with RETURNING rows and change counts', async () => {
      const { p } = repo.sql;
      const [a, b, c] = await repo.sql.write([
        {
          sql: `INSERT INTO kv (k, v, at) VALUES (${p(1)}, ${p(2)}, ${p(3)}) RETURNING n`,
          params: ['a', Buffer.from([1, 2, 3]), 2 ** 40],
        },
        { sql: `INSERT INTO kv (k, at) VALUES (${p(1)}, ${p(2)})`, params: ['b', 5] },
        { sql: `UPDATE kv SET at = at + 1 WHERE k IN (${p(1)}, ${p(2)})`, params: ['a', 'b'] },
      ]);
      assert.equal(a!.rows.length, 1);
      assert.ok(Number(a!.rows[0]!.n) > 0);
      assert.equal(b!.changes, 1);
      assert.equal(c!.changes, 2);
      const rows = await repo.sql.read<{ k: string; v: Uint8Array | null; at: number | string }>(
        `SELECT k, v, at FROM kv ORDER BY k`,
      );
      assert.deepEqual(
        rows.map((r) => [r.k, r.v ? [...r.v] : null, Number(r.at)]),
        [
          ['a', [1, 2, 3], 2 ** 40 + 1],
          ['b', null, 6],
        ],
      );
    });

    it('rolls the whole write back when one statement fails', async () => {
      const { p } = repo.sql;
      await assert.rejects(
        repo.sql.write([
          { sql: `INSERT INTO kv (k) VALUES (${p(1)})`, params: ['c'] },
          { sql: `INSERT INTO kv (k) VALUES (${p(1)})`, params: ['a'] },
        ]),
      );
      const rows = await repo.sql.read(`SELECT k FROM kv WHERE k = ${p(1)}`, ['c']);
      assert.equal(rows.length, 0);
    });
  });
}

let dir: string;
let pg: PostgresServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-sql-access-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

sqlAccessSuite('sqlite', () =>
  openRepository({ kind: 'sqlite', sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } }),
);
sqlAccessSuite('postgres', async () =>
  openRepository({ kind: 'postgres', postgres: { url: await pg.createDatabase('argus_sql'), poolSize: 4 } }),
);
