import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ControlPlane } from '../../control-plane/index.ts';
import { startTestControlPlane } from '../control-plane/setup.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** `argus users …` as a child process; resolves with its exit code and output */
function argus(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = execFile(process.execPath, [join(ROOT, 'bin/argus.mjs'), ...args], (err, stdout, stderr) =>
      res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin ?? '');
  });
}

describe('argus users add | list | passwd | remove (on the database of a running control plane)', () => {
  let dir: string;
  let config: string;
  let cp: ControlPlane;
  const login = async (name: string, password: string) =>
    (
      await fetch(`${cp.httpUrl}/api/v1/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, password }),
      })
    ).status;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-users-'));
    config = join(dir, 'control-plane.yaml');
    await writeFile(config, 'storage: { sqlite: { path: argus.db, synchronous: normal } }\n');
    cp = await startTestControlPlane({ dir });
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('adds an admin with a generated password, printed once, that logs in', async () => {
    const out = await argus(['users', 'add', 'alice', '--role', 'admin', '--config', config]);
    assert.equal(out.code, 0, out.stderr);
    const password = /password: (\S+)/.exec(out.stdout)?.[1];
    assert.ok(password && password.length >= 20, out.stdout);
    assert.equal(await login('alice', password), 200);
    const again = await argus(['users', 'add', 'alice', '--config', config]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /there is an account "alice" already/);
  });

  it('takes a password from a file or stdin, never from an argument', async () => {
    const file = join(dir, 'bob.password');
    await writeFile(file, 'bob-password-from-file\n', { mode: 0o600 });
    const added = await argus([
      'users',
      'add',
      'bob',
      '--role',
      'operator',
      '--password-file',
      file,
      '--config',
      config,
    ]);
    assert.equal(added.code, 0, added.stderr);
    assert.doesNotMatch(added.stdout, /password:/, 'a given password is not printed');
    assert.equal(await login('bob', 'bob-password-from-file'), 200);
    const changed = await argus(
      ['users', 'passwd', 'bob', '--password-file', '-', '--config', config],
      'bob-password-from-stdin\n',
    );
    assert.equal(changed.code, 0, changed.stderr);
    assert.equal(await login('bob', 'bob-password-from-file'), 401);
    assert.equal(await login('bob', 'bob-password-from-stdin'), 200);
    const tooShort = await argus(
      ['users', 'passwd', 'bob', '--password-file', '-', '--config', config],
      'short\n',
    );
    assert.equal(tooShort.code, 1);
    assert.match(tooShort.stderr, /12 to 1024 characters/);
    const plain = await argus(['users', 'add', 'eve', '--password', 'in-history', '--config', config]);
    assert.equal(plain.code, 1, 'there is no --password option');
  });

  it('lists and removes accounts, never the only admin', async () => {
    const list = await argus(['users', 'list', '--config', config]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^alice\s+admin\s+since /m);
    assert.match(list.stdout, /^bob\s+operator\s+since /m);
    const removed = await argus(['users', 'remove', 'bob', '--config', config]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(await login('bob', 'bob-password-from-stdin'), 401);
    const last = await argus(['users', 'remove', 'alice', '--config', config]);
    assert.equal(last.code, 1);
    assert.match(last.stderr, /only admin/);
    const missing = await argus(['users', 'remove', 'nobody', '--config', config]);
    assert.match(missing.stderr, /no account "nobody"/);
  });
});
