import { initCa, issueCertificate } from '../../common/certificate-authority.ts';
import { ArgusError } from '../../common/errors.ts';
import { type Command, integerOption, parseCommandArgs } from '../command.ts';

function needDir(command: Command, dir: string | undefined, positionals: string[]): string {
  if (!dir || positionals.length > 0)
    throw new ArgusError(`${command.path.join(' ')} needs --dir`, `usage: ${command.usage}`);
  return dir;
}

export const caInit: Command = {
  path: ['ca', 'init'],
  summary: 'create a certificate authority for the fleet (its key stays in DIR, mode 0600)',
  usage: 'argus ca init --dir DIR [--name "Argus fleet CA"] [--days 3650]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      dir: {
        type: 'string',
        value: 'DIR',
        description: 'the CA directory to create (its key is written there, mode 0600)',
      },
      name: {
        type: 'string',
        value: 'NAME',
        description: 'the CA certificate\'s common name (default "Argus fleet CA")',
      },
      days: {
        type: 'string',
        value: 'N',
        description: 'how long the CA certificate is valid (default 3650)',
      },
    });
    const dir = needDir(this, values.dir, positionals);
    const days = integerOption(values.days, '--days', 1);
    const ca = await initCa(dir, {
      ...(values.name ? { name: values.name } : {}),
      ...(days ? { days } : {}),
    });
    ctx.stdout.write(
      `CA created\n  certificate: ${ca.cert} (give it to the boxes: tls.ca in their config)\n  key:         ${ca.key} (keep it here, off the fleet)\n`,
    );
    return 0;
  },
};

export const caIssue: Command = {
  path: ['ca', 'issue'],
  summary: 'issue a server certificate (--host/--ip) or a device client certificate (--client)',
  usage: 'argus ca issue --dir DIR --name NAME [--host NAME]… [--ip ADDRESS]… [--client] [--days 825]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      dir: { type: 'string', value: 'DIR', description: 'the CA directory made by `argus ca init`' },
      name: {
        type: 'string',
        value: 'NAME',
        description: "the certificate's common name: the server's name, or the device id for --client",
      },
      host: {
        type: 'string',
        multiple: true,
        value: 'NAME',
        description: 'a DNS name the server answers to (repeatable)',
      },
      ip: {
        type: 'string',
        multiple: true,
        value: 'ADDRESS',
        description: 'an IP address the server answers on (repeatable)',
      },
      client: {
        type: 'boolean',
        description: 'a device client certificate for mutual TLS instead of a server certificate',
      },
      days: { type: 'string', value: 'N', description: 'how long the certificate is valid (default 825)' },
    });
    const dir = needDir(this, values.dir, positionals);
    if (!values.name) throw new ArgusError('ca issue needs --name', `usage: ${this.usage}`);
    const days = integerOption(values.days, '--days', 1);
    const issued = await issueCertificate(dir, {
      name: values.name,
      hosts: values.host ?? [],
      ips: values.ip ?? [],
      client: values.client === true,
      ...(days ? { days } : {}),
    });
    ctx.stdout.write(
      `issued ${values.name}\n  certificate: ${issued.cert}\n  key:         ${issued.key} (mode 0600)\n`,
    );
    return 0;
  },
};
