import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openRepository } from '../../control-plane/index.ts';
import { verifyPassword } from '../../control-plane/passwords.ts';
import { ApiTokens } from '../../control-plane/storage/api-tokens.ts';
import { AuditLog } from '../../control-plane/storage/audit.ts';
import { LoginFailures } from '../../control-plane/storage/login-failures.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';
import { Sessions } from '../../control-plane/storage/sessions.ts';
import { Users } from '../../control-plane/storage/users.ts';
import { PostgresServer } from '../helpers/postgres.ts';

/** the operators' stores behave the same on both backends */
function storesSuite(name: string, open: () => Promise<Repository>): void {
  describe(`operator stores (${name})`, () => {
    let repo: Repository;
    before(async () => {
      repo = await open();
    });
    after(() => repo?.close());

    it('users: scrypt hashes with a salt each, authentication, roles, the last admin kept', async () => {
      const users = new Users(repo.sql);
      assert.equal(await users.add('ann', 'admin', 'ann-password-123', 1000), true);
      assert.equal(await users.add('ann', 'viewer', 'ann-password-123'), false);
      assert.equal(await users.add('ben', 'admin', 'ann-password-123'), true);
      const hashes = await repo.sql.read<{ password_hash: string }>(
        'SELECT password_hash FROM users ORDER BY name',
      );
      assert.match(hashes[0]!.password_hash, /^scrypt\$32768\$8\$1\$/);
      assert.notEqual(hashes[0]!.password_hash, hashes[1]!.password_hash, 'the same password, another salt');
      assert.equal(await verifyPassword('ann-password-123', hashes[0]!.password_hash), true);
      assert.deepEqual(await users.authenticate('ann', 'ann-password-123'), {
        name: 'ann',
        role: 'admin',
        createdAt: 1000,
        updatedAt: 1000,
      });
      assert.equal(await users.authenticate('ann', 'ann-password-124'), undefined);
      assert.equal(await users.authenticate('nobody', 'ann-password-123'), undefined);
      assert.equal(await users.setRole('ben', 'viewer'), 'done');
      assert.equal(await users.setRole('ann', 'operator'), 'last-admin');
      assert.equal(await users.remove('ann'), 'last-admin');
      assert.equal(await users.remove('ben'), 'done');
      assert.equal(await users.remove('ben'), 'missing');
      await assert.rejects(users.add('Bad Name', 'viewer', 'long-enough-pass'), /not a user name/);
      await assert.rejects(users.add('cat', 'viewer', 'short'), /12 to 1024 characters/);
    });

    it('sessions: only the hash of the id stored, expiry, the current role, ended with the password', async () => {
      const users = new Users(repo.sql);
      await users.add('cid', 'viewer', 'cid-password-123');
      const sessions = new Sessions(repo.sql);
      const s = await sessions.create('cid', 60_000, 10_000);
      const stored = await repo.sql.read<{ id_sha256: string }>('SELECT id_sha256 FROM sessions');
      assert.ok(
        stored.every((r) => r.id_sha256 !== s.id),
        'the id itself is not stored',
      );
      assert.deepEqual(await sessions.find(s.id, 20_000), {
        user: 'cid',
        role: 'viewer',
        csrfToken: s.csrfToken,
        expiresAt: 70_000,
      });
      assert.equal(await sessions.find(s.id, 70_000), undefined, 'expired');
      await users.setRole('cid', 'operator');
      assert.equal((await sessions.find(s.id, 20_000))?.role, 'operator');
      await users.setPassword('cid', 'cid-password-456');
      assert.equal(await sessions.find(s.id, 20_000), undefined);
      const t = await sessions.create('cid', 60_000);
      assert.equal(await sessions.end(t.id), true);
      assert.equal(await sessions.find(t.id), undefined);
    });

    it('API tokens: stored hashed, revocable, last use recorded', async () => {
      const tokens = new ApiTokens(repo.sql);
      const { token, secret } = await tokens.create('ci', 'operator', 'user:ann', 5000);
      assert.match(secret, /^argus_[A-Za-z0-9_-]{43}$/);
      const rows = await repo.sql.read<Record<string, unknown>>('SELECT * FROM api_tokens');
      assert.ok(!JSON.stringify(rows).includes(secret));
      assert.equal((await tokens.authenticate(secret, 6000))?.role, 'operator');
      assert.equal((await tokens.list()).find((t) => t.id === token.id)?.lastUsedAt, 6000);
      assert.equal(await tokens.authenticate(`${secret}x`), undefined);
      assert.equal(await tokens.revoke(token.id), true);
      assert.equal(await tokens.revoke(token.id), false);
      assert.equal(await tokens.authenticate(secret), undefined);
    });

    it('login failures are counted per account within a window and cleared', async () => {
      const failures = new LoginFailures(repo.sql);
      for (const at of [100, 200, 300]) await failures.record('dan', at, 0);
      await failures.record('eva', 300, 0);
      assert.equal(await failures.count('dan', 150), 2);
      await failures.clear('dan');
      assert.equal(await failures.count('dan', 0), 0);
      assert.equal(await failures.count('eva', 0), 1);
      await new Users(repo.sql).add('eva', 'viewer', 'eva-password-123');
      await new Users(repo.sql).setPassword('eva', 'eva-password-456');
      assert.equal(await failures.count('eva', 0), 0, 'a new password lifts the throttling');
    });

    it('audit: entries newest first, filtered, paged by cursor', async () => {
      const audit = new AuditLog(repo.sql);
      for (let i = 0; i < 5; i++)
        await audit.append({
          at: 1000 + i,
          actor: i % 2 ? 'ann' : 'ci',
          actorKind: i % 2 ? 'user' : 'token',
          action: i === 0 ? 'login' : 'DELETE /api/v1/users/:name',
          params: i === 0 ? {} : { name: `u${i}` },
          address: '127.0.0.1',
          status: i === 4 ? 403 : 200,
          outcome: i === 4 ? 'denied' : 'ok',
        });
      const all = await audit.query({ limit: 10 });
      assert.deepEqual(
        all.map((e) => e.at),
        [1004, 1003, 1002, 1001, 1000],
      );
      assert.deepEqual(all[0]!.params, { name: 'u4' });
      const page = await audit.query({ limit: 2, before: all[1]!.id });
      assert.deepEqual(
        page.map((e) => e.at),
        [1002, 1001],
      );
      assert.deepEqual(
        (await audit.query({ limit: 10, actor: 'ann' })).map((e) => e.at),
        [1003, 1001],
      );
      assert.deepEqual(
        (await audit.query({ limit: 10, outcome: 'denied' })).map((e) => e.at),
        [1004],
      );
      assert.deepEqual(
        (await audit.query({ limit: 10, from: 1001, to: 1003 })).map((e) => e.at),
        [1002, 1001],
      );
      assert.deepEqual(
        (await audit.query({ limit: 10, action: 'login' })).map((e) => e.at),
        [1000],
      );
    });
  });
}

let dir: string;
let pg: PostgresServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-operator-stores-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

storesSuite('sqlite', () =>
  openRepository({ kind: 'sqlite', sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } }),
);
storesSuite('postgres', async () =>
  openRepository({
    kind: 'postgres',
    postgres: { url: await pg.createDatabase('argus_operators'), poolSize: 4 },
  }),
);
