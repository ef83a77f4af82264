import { resolve } from 'node:path';
import {
  defaultKeyring,
  generateSigningKey,
  keysDir,
  loadKeyring,
  trustPublicKey,
} from '../../models/bundle/keys.ts';
import { type Command, onePositional, parseCommandArgs } from '../command.ts';

export const keysGenerate: Command = {
  path: ['keys', 'generate'],
  summary: 'create an ed25519 signing key for bundles (and trust its public key)',
  usage: 'argus keys generate NAME [--dir DIR]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      dir: {
        type: 'string',
        value: 'DIR',
        description: 'where to write the key pair (default: the key directory)',
      },
    });
    const key = await generateSigningKey(
      onePositional(this, positionals, 'NAME'),
      values.dir ? resolve(values.dir) : keysDir(),
    );
    ctx.stdout.write(
      `key ${key.keyId}\n  private: ${key.privateKeyPath} (keep it on the build machine)\n  public:  ${key.publicKeyPath} (give it to devices: argus keys trust FILE)\n`,
    );
    return 0;
  },
};

export const keysTrust: Command = {
  path: ['keys', 'trust'],
  summary: 'add a public key to the keyring whose bundle signatures are accepted',
  usage: 'argus keys trust FILE.pub [--keyring DIR]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      keyring: {
        type: 'string',
        value: 'DIR',
        description: "the directory of trusted public keys (default: the key directory's trusted/)",
      },
    });
    const keyring = values.keyring ? resolve(values.keyring) : defaultKeyring();
    const id = await trustPublicKey(onePositional(this, positionals, 'FILE'), keyring);
    ctx.stdout.write(`trusted key ${id} (keyring ${keyring})\n`);
    return 0;
  },
};

export const keysList: Command = {
  path: ['keys', 'list'],
  summary: 'list the keys of the keyring',
  usage: 'argus keys list [--keyring DIR]',
  async run(args, ctx) {
    const { values } = parseCommandArgs(this, args, {
      keyring: {
        type: 'string',
        value: 'DIR',
        description: "the directory of trusted public keys (default: the key directory's trusted/)",
      },
    });
    const keyring = values.keyring ? resolve(values.keyring) : defaultKeyring();
    const { keys, unreadable } = await loadKeyring(keyring);
    if (keys.size === 0) ctx.stdout.write(`no trusted keys in ${keyring}\n`);
    for (const [id, k] of keys) ctx.stdout.write(`${id}  ${k.file}\n`);
    for (const k of unreadable) ctx.stdout.write(`unreadable  ${k.file}: ${k.problem}\n`);
    return 0;
  },
};
