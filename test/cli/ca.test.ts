import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { caInit, caIssue } from '../../cli/commands/ca.ts';

async function run(command: typeof caInit, args: string[]): Promise<string> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await command.run(args, { signal: new AbortController().signal, stdout });
  assert.equal(code, 0);
  return out;
}

describe('argus ca init | issue', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-ca-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes a CA, a server and a client certificate, with 0600 keys it never prints', async () => {
    const ca = join(dir, 'ca');
    const out = [
      await run(caInit, ['--dir', ca]),
      await run(caIssue, [
        '--dir',
        ca,
        '--name',
        'cp',
        '--host',
        'argus.example',
        '--host',
        'localhost',
        '--ip',
        '10.0.0.5',
        '--days',
        '30',
      ]),
      await run(caIssue, ['--dir', ca, '--name', 'box-7', '--client']),
    ].join('');
    assert.doesNotMatch(out, /PRIVATE KEY|BEGIN/);
    assert.equal((await stat(ca)).mode & 0o777, 0o700);
    for (const key of ['ca.key', 'cp.key', 'box-7.key']) {
      assert.equal((await stat(join(ca, key))).mode & 0o777, 0o600, key);
      assert.ok(out.includes(join(ca, key)), `says where ${key} is`);
    }
    const root = new X509Certificate(await readFile(join(ca, 'ca.crt')));
    assert.ok(root.ca);
    const server = new X509Certificate(await readFile(join(ca, 'cp.crt')));
    assert.ok(server.verify(root.publicKey), 'signed by the CA');
    assert.equal(server.subject, 'CN=cp');
    assert.equal(server.subjectAltName, 'DNS:argus.example, DNS:localhost, IP Address:10.0.0.5');
    assert.ok(server.checkHost('argus.example') && server.checkIP('10.0.0.5'));
    assert.ok(!server.ca);
    const days = (Date.parse(server.validTo) - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days <= 30, `valid ${days} days`);
    assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth');
    const client = new X509Certificate(await readFile(join(ca, 'box-7.crt')));
    assert.ok(client.verify(root.publicKey));
    assert.equal(client.subject, 'CN=box-7');
    assert.deepEqual(client.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth');
    assert.equal(client.subjectAltName, undefined);
  });

  it('refuses bad names and addresses, and says what to give', async () => {
    const ca = join(dir, 'ca');
    await assert.rejects(
      run(caIssue, ['--dir', ca, '--name', 'x', '--ip', '10.0.0.300']),
      /--ip "10.0.0.300" is not an IP address/,
    );
    await assert.rejects(
      run(caIssue, ['--dir', ca, '--name', 'x', '--host', 'a b']),
      /--host "a b" is not a DNS name/,
    );
    await assert.rejects(run(caIssue, ['--dir', ca, '--name', '../x', '--client']), /not a usable name/);
    await assert.rejects(
      run(caIssue, ['--dir', join(dir, 'none'), '--name', 'x', '--client']),
      /holds no CA/,
    );
    await assert.rejects(run(caIssue, ['--dir', ca]), /needs --name/);
  });
});
