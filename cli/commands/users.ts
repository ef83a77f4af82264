import { readFile } from 'node:fs/promises';
import { ArgusError } from '../../common/errors.ts';
import { ROLES, type Role } from '../../control-plane/api/access.ts';
import { loadControlPlaneConfig, openRepository } from '../../control-plane/index.ts';
import { generatePassword } from '../../control-plane/passwords.ts';
import { Users } from '../../control-plane/storage/users.ts';
import { type Command, onePositional, parseCommandArgs } from '../command.ts';

/**
 * `argus users …`: operators' accounts, in the control plane's database (opened directly, so it
 * works while the control plane runs, and before its first start). A password is read from a file
 * (`--password-file`, `-` for stdin: its first line), never from an argument that lands in the
 * shell's history; without one a password is generated and printed once.
 */

const CONFIG = {
  config: {
    type: 'string',
    value: 'FILE',
    description: "the control plane's config (its database holds the accounts)",
  },
  'password-file': {
    type: 'string',
    value: 'FILE',
    description:
      'read the password from the first line of FILE (- for standard input); else one is generated and printed once',
  },
} as const;

async function withUsers<T>(configFile: string | undefined, usage: string, f: (users: Users) => Promise<T>) {
  if (!configFile) throw new ArgusError('give the control plane’s config file', `usage: ${usage}`);
  const config = await loadControlPlaneConfig(configFile);
  const repo = await openRepository(config.storage);
  try {
    return await f(new Users(repo.sql));
  } finally {
    await repo.close();
  }
}

/** the password of `--password-file` (its first line; `-` reads stdin), or undefined when not given */
async function readPassword(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  const text =
    file === '-'
      ? await new Promise<string>((resolve, reject) => {
          let data = '';
          process.stdin.setEncoding('utf8');
          process.stdin.on('data', (d: string) => {
            data += d;
          });
          process.stdin.once('end', () => resolve(data));
          process.stdin.once('error', reject);
        })
      : await readFile(file, 'utf8');
  const password = text.split(/\r?\n/)[0] ?? '';
  if (!password)
    throw new ArgusError(`no password in ${file === '-' ? 'stdin' : file} (its first line is empty)`);
  return password;
}

function roleOf(value: string | undefined, usage: string): Role {
  const role = (value ?? 'viewer') as Role;
  if (!ROLES.includes(role))
    throw new ArgusError(`--role is one of ${ROLES.join(', ')}, got "${value}"`, `usage: ${usage}`);
  return role;
}

export const usersAdd: Command = {
  path: ['users', 'add'],
  summary: "add an operator's account (role admin, operator or viewer)",
  usage: 'argus users add NAME --config control-plane.yaml [--role viewer] [--password-file FILE|-]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      ...CONFIG,
      role: { type: 'string', value: 'ROLE', description: 'admin, operator or viewer' },
    });
    const name = onePositional(this, positionals, 'NAME');
    const role = roleOf(values.role, this.usage);
    const given = await readPassword(values['password-file']);
    const password = given ?? generatePassword();
    const added = await withUsers(values.config, this.usage, (users) => users.add(name, role, password));
    if (!added)
      throw new ArgusError(`there is an account "${name}" already`, 'argus users passwd sets its password');
    ctx.stdout.write(`added ${name} (${role})${given ? '' : `\npassword: ${password}  (shown once)`}\n`);
    return 0;
  },
};

export const usersList: Command = {
  path: ['users', 'list'],
  summary: "list operators' accounts and their roles",
  usage: 'argus users list --config control-plane.yaml',
  async run(args, ctx) {
    const { values } = parseCommandArgs(this, args, { config: CONFIG.config });
    const users = await withUsers(values.config, this.usage, (u) => u.list());
    if (users.length === 0) ctx.stdout.write('no accounts: argus users add NAME --role admin adds one\n');
    for (const u of users)
      ctx.stdout.write(
        `${u.name.padEnd(24)} ${u.role.padEnd(9)} since ${new Date(u.createdAt).toISOString()}\n`,
      );
    return 0;
  },
};

export const usersRemove: Command = {
  path: ['users', 'remove'],
  summary: "remove an operator's account; its sessions end",
  usage: 'argus users remove NAME --config control-plane.yaml',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, { config: CONFIG.config });
    const name = onePositional(this, positionals, 'NAME');
    const outcome = await withUsers(values.config, this.usage, (u) => u.remove(name));
    if (outcome === 'missing') throw new ArgusError(`no account "${name}"`, 'argus users list shows them');
    if (outcome === 'last-admin')
      throw new ArgusError(`${name} is the only admin`, 'give another account the role admin first');
    ctx.stdout.write(`removed ${name}\n`);
    return 0;
  },
};

export const usersPasswd: Command = {
  path: ['users', 'passwd'],
  summary: "set an account's password (its sessions end); generated unless given",
  usage: 'argus users passwd NAME --config control-plane.yaml [--password-file FILE|-]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, CONFIG);
    const name = onePositional(this, positionals, 'NAME');
    const given = await readPassword(values['password-file']);
    const password = given ?? generatePassword();
    if (!(await withUsers(values.config, this.usage, (u) => u.setPassword(name, password))))
      throw new ArgusError(`no account "${name}"`, 'argus users add adds it');
    ctx.stdout.write(`new password of ${name} set${given ? '' : `\npassword: ${password}  (shown once)`}\n`);
    return 0;
  },
};
