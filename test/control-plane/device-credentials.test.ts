import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { sha256Hex } from '../../common/hash.ts';
import { DeviceCredentials } from '../../control-plane/auth.ts';
import { EXCHANGE_RETRY_WINDOW_MS } from '../../control-plane/enrollment.ts';
import { DeviceCredentialStore, Enrollment, openRepository } from '../../control-plane/index.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';
import { PostgresServer } from '../helpers/postgres.ts';

/** the credential life cycle on the database, the same on both backends */
function credentialSuite(name: string, open: () => Promise<Repository>): void {
  describe(`device credentials and claims (${name})`, () => {
    let repo: Repository;
    let store: DeviceCredentialStore;
    let enrollment: Enrollment;
    let credentials: DeviceCredentials;
    const revokedAtBroker: string[] = [];
    const granted: string[] = [];
    before(async () => {
      repo = await open();
      store = new DeviceCredentialStore(repo.sql);
      enrollment = new Enrollment(store, {
        checksSecrets: true,
        grant: async (device) => void granted.push(device),
        revoke: async (device) => void revokedAtBroker.push(device),
      });
      credentials = new DeviceCredentials(store);
    });
    after(() => repo?.close());

    it('exchanges a claim token once for a credential, then refuses it as used', async () => {
      const claim = await enrollment.createClaim('cam-a', 3600, 'test');
      const first = await enrollment.exchange('cam-a', claim.token);
      assert.ok('credential' in first, JSON.stringify(first));
      assert.equal(await credentials.verifyToken('cam-a', first.credential), true);
      assert.equal(await credentials.verify('cam-a', `Bearer ${first.credential}`), true);
      assert.deepEqual(granted, ['cam-a']);
      const again = await enrollment.exchange('cam-a', claim.token);
      assert.equal('reason' in again && again.reason, 'used');
      assert.equal(await credentials.verifyToken('cam-a', first.credential), true, 'the credential stays');
      const stored = await store.get('cam-a');
      assert.equal(stored?.secretSha256, sha256Hex(first.credential), 'only the digest is stored');
    });

    it('refuses a claim token of another device, an unknown one and an expired one', async () => {
      const claim = await enrollment.createClaim('cam-b', 3600, 'test');
      const other = await enrollment.exchange('cam-c', claim.token);
      assert.equal('reason' in other && other.reason, 'unknown');
      const unknown = await enrollment.exchange('cam-b', 'never-issued-claim-token');
      assert.equal('reason' in unknown && unknown.reason, 'unknown');
      const now = Date.now();
      await store.createClaim({
        tokenSha256: sha256Hex('an-expired-claim-token'),
        device: 'cam-b',
        createdBy: 'test',
        createdAt: now - 7200_000,
        expiresAt: now - 1,
      });
      const expired = await enrollment.exchange('cam-b', 'an-expired-claim-token');
      assert.equal('reason' in expired && expired.reason, 'expired');
      assert.equal(await store.get('cam-b'), undefined, 'no credential was issued');
      assert.ok(
        'credential' in (await enrollment.exchange('cam-b', claim.token)),
        'the right one still works',
      );
      await assert.rejects(enrollment.createClaim('cam-b', 10, 'test'), /between 60 s and/);
    });

    it('lets exactly one of concurrent exchanges of one claim token win', async () => {
      const claim = await enrollment.createClaim('cam-race', 3600, 'test');
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, () => enrollment.exchange('cam-race', claim.token)),
      );
      const winners = outcomes.flatMap((o) => ('credential' in o ? [o.credential] : []));
      assert.equal(winners.length, 1, JSON.stringify(outcomes));
      assert.ok(outcomes.every((o) => 'credential' in o || o.reason === 'used'));
      assert.equal(
        (await store.get('cam-race'))?.secretSha256,
        sha256Hex(winners[0]!),
        "the winner's credential",
      );
    });

    it('rotates: the old credential is valid until the new one is used, then refused', async () => {
      const claim = await enrollment.createClaim('cam-rot', 3600, 'test');
      const issued = await enrollment.exchange('cam-rot', claim.token);
      assert.ok('credential' in issued);
      const old = issued.credential;
      assert.equal(await enrollment.rotate('cam-rot', 'not-its-credential'), undefined);
      const lost = await enrollment.rotate('cam-rot', old);
      assert.ok(lost);
      // the box never got that answer: it asks again with the old one, which is still valid
      assert.equal(await credentials.verifyToken('cam-rot', old), true);
      const next = await enrollment.rotate('cam-rot', old);
      assert.ok(next && next !== lost);
      assert.equal(await credentials.verifyToken('cam-rot', lost), false, 'the unused one is replaced');
      assert.equal(await credentials.verifyToken('cam-rot', old), true, 'valid until the new one is used');
      assert.equal(await credentials.verifyToken('cam-rot', next), true);
      assert.equal(await credentials.verifyToken('cam-rot', old), false, 'the new one was used');
      assert.ok((await store.get('cam-rot'))?.rotatedAt);
    });

    it('hands out a rotation request once, and revokes for good', async () => {
      const claim = await enrollment.createClaim('cam-rev', 3600, 'test');
      const issued = await enrollment.exchange('cam-rev', claim.token);
      assert.ok('credential' in issued);
      assert.equal(await enrollment.requestRotation('cam-rev'), true);
      assert.deepEqual(await enrollment.takeRotationRequests(['cam-rev', 'cam-a']), ['cam-rev']);
      assert.deepEqual(await enrollment.takeRotationRequests(['cam-rev']), [], 'taken once');
      const spare = await enrollment.createClaim('cam-rev', 3600, 'test');
      assert.equal(await enrollment.revoke('cam-rev'), true);
      assert.deepEqual(revokedAtBroker, ['cam-rev'], 'the broker was told');
      assert.equal(await credentials.verifyToken('cam-rev', issued.credential), false);
      assert.equal(await enrollment.rotate('cam-rev', issued.credential), undefined);
      assert.equal(await enrollment.requestRotation('cam-rev'), false);
      assert.equal(await enrollment.revoke('cam-rev'), false, 'already revoked');
      const unused = await enrollment.exchange('cam-rev', spare.token);
      assert.equal('reason' in unused && unused.reason, 'expired', 'its unused claims went with it');
      const fresh = await enrollment.exchange(
        'cam-rev',
        (await enrollment.createClaim('cam-rev', 3600, 'test')).token,
      );
      assert.ok('credential' in fresh, 'enrolled again');
      assert.equal(await credentials.verifyToken('cam-rev', fresh.credential), true);
    });

    it('takes the config list as pre-provisioned credentials until the database decides', async () => {
      const digest = (t: string) => sha256Hex(t);
      await store.provision([{ id: 'cfg-1', tokenSha256: digest('config-token-one') }], Date.now());
      assert.equal(await credentials.verifyToken('cfg-1', 'config-token-one'), true);
      await store.provision([{ id: 'cfg-1', tokenSha256: digest('config-token-two') }], Date.now());
      assert.equal(await credentials.verifyToken('cfg-1', 'config-token-one'), false, 'the config changed');
      assert.equal(await credentials.verifyToken('cfg-1', 'config-token-two'), true);
      assert.equal(await enrollment.revoke('cfg-1'), true);
      await store.provision([{ id: 'cfg-1', tokenSha256: digest('config-token-two') }], Date.now());
      assert.equal(
        await credentials.verifyToken('cfg-1', 'config-token-two'),
        false,
        'a restart does not undo a revoke',
      );
      assert.equal(await credentials.verifyToken('nobody', 'config-token-two'), false);
      assert.equal(await credentials.verify('cfg-1', 'config-token-two'), false, 'not a Bearer header');
    });

    it('gives the box that spent a claim token a new credential when it asks again with its exchange key', async () => {
      const claim = await enrollment.createClaim('cam-lost', 3600, 'test');
      const key = 'the-boxs-own-exchange-key-1';
      const lost = await enrollment.exchange('cam-lost', claim.token, key);
      assert.ok('credential' in lost);
      // the answer never reached the box: it asks again with the same key
      const again = await enrollment.exchange('cam-lost', claim.token, key);
      assert.ok('credential' in again, JSON.stringify(again));
      assert.notEqual(again.credential, lost.credential);
      assert.equal(await credentials.verifyToken('cam-lost', lost.credential), false, 'the lost one is void');
      assert.equal(await credentials.verifyToken('cam-lost', again.credential), true);
      for (const other of ['somebody-elses-exchange-key', undefined]) {
        const stolen = await enrollment.exchange('cam-lost', claim.token, other);
        assert.equal('reason' in stolen && stolen.reason, 'used', `key ${other}`);
      }
      assert.equal(await credentials.verifyToken('cam-lost', again.credential), true, 'untouched by them');
      const onOther = await enrollment.exchange('cam-other', claim.token, key);
      assert.equal('reason' in onOther && onOther.reason, 'unknown');
      // once the credential was used to rotate, or revoked, the key is worth nothing
      assert.ok(await enrollment.rotate('cam-lost', again.credential));
      const afterRotation = await enrollment.exchange('cam-lost', claim.token, key);
      assert.equal('reason' in afterRotation && afterRotation.reason, 'used');
    });

    it('refuses the exchange key after its window and after a revocation', async () => {
      const key = 'the-boxs-own-exchange-key-2';
      const late = await enrollment.createClaim('cam-late', 3600, 'test');
      const spentAt = Date.now() - EXCHANGE_RETRY_WINDOW_MS - 1000;
      const refusal = await store.exchangeClaim({
        tokenSha256: sha256Hex(late.token),
        device: 'cam-late',
        secretSha256: sha256Hex('a-credential-issued-long-ago'),
        exchangeSha256: sha256Hex(key),
        now: spentAt,
      });
      assert.equal(refusal, undefined);
      const tooLate = await enrollment.exchange('cam-late', late.token, key);
      assert.deepEqual(tooLate, { reason: 'used', at: spentAt });
      const revoked = await enrollment.createClaim('cam-gone', 3600, 'test');
      assert.ok('credential' in (await enrollment.exchange('cam-gone', revoked.token, key)));
      assert.equal(await enrollment.revoke('cam-gone'), true);
      const afterRevoke = await enrollment.exchange('cam-gone', revoked.token, key);
      assert.equal('reason' in afterRevoke && afterRevoke.reason, 'used');
      assert.equal((await store.get('cam-gone'))?.revokedAt !== null, true, 'still revoked');
    });

    it('lets exactly one of concurrent retries with the exchange key win', async () => {
      const claim = await enrollment.createClaim('cam-retry-race', 3600, 'test');
      const key = 'the-boxs-own-exchange-key-3';
      assert.ok('credential' in (await enrollment.exchange('cam-retry-race', claim.token, key)));
      const outcomes = await Promise.all(
        Array.from({ length: 8 }, () => enrollment.exchange('cam-retry-race', claim.token, key)),
      );
      const valid = [];
      for (const o of outcomes)
        if ('credential' in o && (await credentials.verifyToken('cam-retry-race', o.credential)))
          valid.push(o);
      assert.equal(valid.length, 1, 'one credential of the claim is valid at a time');
    });

    it('never gives a credential to another key than the first exchanger (property)', async () => {
      const keys = ['exchange-key-of-the-box', 'exchange-key-of-a-thief', undefined] as const;
      const action = fc.oneof(
        fc.record({ op: fc.constant('exchange' as const), key: fc.constantFrom(...keys) }),
        fc.constant({ op: 'rotate' as const }),
        fc.constant({ op: 'revoke' as const }),
      );
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 8 }), async (actions) => {
          const device = `cam-prop-${run++}`;
          const claim = await enrollment.createClaim(device, 3600, 'test');
          let first: string | undefined | null = null; // null: not spent yet
          let current: string | undefined;
          let rotated = false;
          let revoked = false;
          for (const a of actions) {
            if (a.op === 'exchange') {
              const out = await enrollment.exchange(device, claim.token, a.key);
              const mayHave: boolean =
                !revoked && (first === null || (a.key !== undefined && a.key === first && !rotated));
              assert.equal('credential' in out, mayHave, JSON.stringify({ actions, a, out }));
              if ('credential' in out) {
                if (first === null) first = a.key;
                if (current) assert.equal(await credentials.verifyToken(device, current), false);
                current = out.credential;
              }
            } else if (a.op === 'rotate' && current) {
              const next = await enrollment.rotate(device, current);
              assert.equal(next !== undefined, !revoked);
              if (next) {
                rotated = true;
                current = next;
              }
            } else if (a.op === 'revoke') {
              // a revocation also ends the device's unspent claims
              assert.equal(await enrollment.revoke(device), current !== undefined && !revoked);
              revoked = true;
            }
            if (current) assert.equal(await credentials.verifyToken(device, current), !revoked);
          }
        }),
        { numRuns: 60, seed: 16_001 },
      );
    });
  });
}

let dir: string;
let pg: PostgresServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-credentials-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

credentialSuite('sqlite', () =>
  openRepository({ kind: 'sqlite', sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } }),
);
credentialSuite('postgres', async () =>
  openRepository({
    kind: 'postgres',
    postgres: { url: await pg.createDatabase('argus_credentials'), poolSize: 4 },
  }),
);
