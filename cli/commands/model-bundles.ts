import { basename, extname, resolve } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { resolveModelDir } from '../../inference/model-dir.ts';
import { buildBundle } from '../../models/bundle/build.ts';
import { readBundleFile } from '../../models/bundle/container.ts';
import { installBundle } from '../../models/bundle/install.ts';
import { loadSigningKey } from '../../models/bundle/keys.ts';
import { MANIFEST_FILE, type Manifest, parseManifest } from '../../models/bundle/manifest.ts';
import { BundleRejected } from '../../models/bundle/rejection.ts';
import { signBundle } from '../../models/bundle/sign.ts';
import { verifyBundle, verifyBundleEntries } from '../../models/bundle/verify.ts';
import { DEFAULT_GATE, loadGateConfig } from '../../models/evaluate/gate.ts';
import { evaluationReportsIn, readEvaluationReport } from '../../models/evaluate/report.ts';
import { buildSceneBundle } from '../../ota/scene-bundle.ts';
import { type Command, integerOption, onePositional, parseCommandArgs } from '../command.ts';

function parseTarget(value: string): { executionProvider: string; hardwareClass: string } {
  const [executionProvider, hardwareClass, ...rest] = value.split(':');
  if (!executionProvider || !hardwareClass || rest.length > 0) {
    throw new ArgusError(
      `--target "${value}" is not PROVIDER:HARDWARE_CLASS`,
      'e.g. --target cpu:x86_64-avx2',
    );
  }
  return { executionProvider, hardwareClass };
}

const MODEL_ONLY = ['evaluation', 'gate', 'target'] as const;

export const modelsBuild: Command = {
  path: ['models', 'build'],
  summary:
    'pack a model directory (derived models must pass the gate) or, with --kind scene, a scene file into a bundle',
  usage:
    'argus models build MODEL|SCENE.yaml --version N [--kind model|scene] [--out FILE] [--name NAME] [--evaluation REPORT]... [--gate FILE] [--target PROVIDER:CLASS]... [--expires-days N] [--key NAME]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      kind: {
        type: 'string',
        value: 'model|scene',
        description: 'what the bundle carries: a model directory (default) or a scene file',
      },
      version: {
        type: 'string',
        value: 'N',
        description: 'the bundle version, a whole number ≥ 1 (required)',
      },
      out: { type: 'string', value: 'FILE', description: 'the bundle file (default: NAME-vN.argus-model)' },
      name: {
        type: 'string',
        value: 'NAME',
        description: 'the model name in the manifest (default: the directory name)',
      },
      evaluation: {
        type: 'string',
        multiple: true,
        value: 'REPORT',
        description: 'an evaluation report to include (default: the reports in the model directory)',
      },
      gate: {
        type: 'string',
        value: 'FILE',
        description: 'the gate (YAML) a derived model must pass (default: the built-in gate)',
      },
      target: {
        type: 'string',
        multiple: true,
        value: 'PROVIDER:CLASS',
        description: 'an execution provider and hardware class the bundle is for',
      },
      'expires-days': {
        type: 'string',
        value: 'N',
        description: 'the bundle expires after this many days (default 365)',
      },
      key: { type: 'string', value: 'NAME|FILE.key', description: 'sign the bundle with this key' },
    });
    const kind = values.kind ?? 'model';
    if (kind !== 'model' && kind !== 'scene') {
      throw new ArgusError(`--kind "${kind}" is not a bundle kind`, 'use --kind model or --kind scene');
    }
    const source = onePositional(this, positionals, kind === 'model' ? 'MODEL' : 'SCENE.yaml');
    const version = integerOption(values.version, '--version', 1);
    if (version === undefined) throw new ArgusError('--version is required', `usage: ${this.usage}`);
    const expiresInDays = integerOption(values['expires-days'], '--expires-days', 1) ?? 365;
    const signWith = values.key ? await loadSigningKey(values.key) : undefined;
    let manifest: Manifest;
    let out: string;
    if (kind === 'scene') {
      const given = MODEL_ONLY.filter((o) => values[o] !== undefined);
      if (given.length > 0) {
        throw new ArgusError(
          `${given.map((o) => `--${o}`).join(', ')} ${given.length > 1 ? 'are' : 'is'} for model bundles only`,
          `usage: ${this.usage}`,
        );
      }
      const sceneFile = resolve(source);
      out = resolve(
        values.out ?? `${values.name ?? basename(sceneFile, extname(sceneFile))}-v${version}.argus-scene`,
      );
      manifest = await buildSceneBundle({
        sceneFile,
        out,
        version,
        expiresInDays,
        ...(values.name ? { name: values.name } : {}),
        ...(signWith ? { signWith } : {}),
      });
    } else {
      const modelDir = resolveModelDir(source);
      const reportFiles = values.evaluation ?? (await evaluationReportsIn(modelDir));
      const evaluations = await Promise.all(reportFiles.map((f) => readEvaluationReport(f)));
      out = resolve(values.out ?? `${values.name ?? basename(modelDir)}-v${version}.argus-model`);
      manifest = await buildBundle({
        modelDir,
        out,
        version,
        evaluations,
        gate: values.gate ? await loadGateConfig(values.gate) : DEFAULT_GATE,
        expiresInDays,
        ...(values.name ? { name: values.name } : {}),
        ...(values.target ? { targets: values.target.map(parseTarget) } : {}),
        ...(signWith ? { signWith } : {}),
      });
    }
    ctx.stdout.write(
      `built ${out}: ${manifest.kind} ${manifest.name} v${manifest.version}, ${manifest.files.length} file${manifest.files.length === 1 ? '' : 's'}, expires ${manifest.expires}${signWith ? ', signed' : ' (unsigned: run `argus models sign`)'}\n`,
    );
    return 0;
  },
};

export const modelsSign: Command = {
  path: ['models', 'sign'],
  summary: 'sign a bundle’s manifest with an ed25519 key',
  usage: 'argus models sign BUNDLE --key NAME|FILE.key',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      key: { type: 'string', value: 'NAME|FILE.key', description: 'the signing key (required)' },
    });
    if (!values.key) throw new ArgusError('--key is required', `usage: ${this.usage}`);
    const path = resolve(onePositional(this, positionals, 'BUNDLE'));
    const signature = await signBundle(path, await loadSigningKey(values.key));
    ctx.stdout.write(`signed ${path} with key ${signature.keyId}\n`);
    return 0;
  },
};

export const modelsVerify: Command = {
  path: ['models', 'verify'],
  summary: 'check a model or scene bundle’s signature, files, expiry and version against the installed one',
  usage: 'argus models verify BUNDLE [--keyring DIR] [--installed DIR]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      keyring: {
        type: 'string',
        value: 'DIR',
        description: "the directory of trusted public keys (default: the key directory's trusted/)",
      },
      installed: {
        type: 'string',
        value: 'DIR',
        description: 'where installed models live, to compare versions (default: the model cache)',
      },
    });
    const verified = await verifyBundle(resolve(onePositional(this, positionals, 'BUNDLE')), {
      ...(values.keyring ? { keyring: values.keyring } : {}),
      ...(values.installed ? { installedDir: values.installed } : {}),
    });
    const m = verified.manifest;
    for (const k of verified.unreadableKeys)
      ctx.stdout.write(`warning: key file skipped: ${k.file}: ${k.problem}\n`);
    ctx.stdout.write(
      `ok: ${m.kind} ${m.name} v${m.version} signed by ${verified.signature.keyId}, ${m.files.length} file${m.files.length === 1 ? '' : 's'} intact, expires ${m.expires}, installed ${verified.installedVersion === undefined ? 'none' : `v${verified.installedVersion}`}\n`,
    );
    return 0;
  },
};

export const modelsInstall: Command = {
  path: ['models', 'install'],
  summary: 'verify a bundle and install its model (into the model cache) or scene (into the scene store)',
  usage: 'argus models install BUNDLE [--keyring DIR] [--installed DIR]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      keyring: {
        type: 'string',
        value: 'DIR',
        description: "the directory of trusted public keys (default: the key directory's trusted/)",
      },
      installed: {
        type: 'string',
        value: 'DIR',
        description: 'where installed models live, to compare versions (default: the model cache)',
      },
    });
    const result = await installBundle(resolve(onePositional(this, positionals, 'BUNDLE')), {
      ...(values.keyring ? { keyring: values.keyring } : {}),
      ...(values.installed ? { installedDir: values.installed } : {}),
    });
    ctx.stdout.write(
      `installed ${result.manifest.kind} ${result.manifest.name} v${result.manifest.version} in ${result.dir}\n`,
    );
    return 0;
  },
};

function describeManifest(m: Manifest): string {
  const lines = [`${m.kind} ${m.name} v${m.version}  created ${m.created}  expires ${m.expires}`];
  if (m.kind === 'model') {
    lines.push(
      `  lineage: ${m.lineage.derivedFrom ? `${m.lineage.derivedFrom.name} v${m.lineage.derivedFrom.version}` : 'original'}${m.lineage.steps.map((s) => ` → ${s.kind}`).join('')}`,
      `  targets: ${m.targets.map((t) => `${t.executionProvider}:${t.hardwareClass}`).join(', ')}`,
      `  labels (${m.labels.length}): ${m.labels.join(', ')}`,
      ...Object.entries(m.metrics).map(
        ([hw, x]) =>
          `  ${hw}: mAP@0.5 ${x.map50.toFixed(3)} vs ${x.reference.name} v${x.reference.version}, latency ${x.latencyP50Ms.toFixed(1)} ms (ratio ${x.latencyRatio.toFixed(2)}, ${x.threads} thread(s)), frames ${x.frames}`,
      ),
    );
  } else {
    lines.push(
      `  classes: ${m.scene.classes.length > 0 ? m.scene.classes.join(', ') : 'every class of the model'}`,
      `  rules (${m.scene.rules.length}): ${m.scene.rules.map((r) => `${r.id} (${r.type})`).join(', ')}`,
    );
  }
  lines.push(...m.files.map((f) => `  file ${f.path}  ${f.bytes} bytes  sha256 ${f.sha256}`));
  return `${lines.join('\n')}\n`;
}

export const modelsInspect: Command = {
  path: ['models', 'inspect'],
  summary: 'show a bundle’s manifest and whether it verifies',
  usage: 'argus models inspect BUNDLE [--keyring DIR] [--installed DIR] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      keyring: {
        type: 'string',
        value: 'DIR',
        description: "the directory of trusted public keys (default: the key directory's trusted/)",
      },
      installed: {
        type: 'string',
        value: 'DIR',
        description: 'where installed models live, to compare versions (default: the model cache)',
      },
      json: { type: 'boolean', description: 'print the manifest and verdict as JSON' },
    });
    const path = resolve(onePositional(this, positionals, 'BUNDLE'));
    const entries = await readBundleFile(path);
    const bytes = entries.get(MANIFEST_FILE);
    if (!bytes) throw new ArgusError(`${path} is not a bundle: it has no ${MANIFEST_FILE}`);
    const manifest = parseManifest(bytes, `${MANIFEST_FILE} of ${path}`);
    let status: string;
    try {
      const v = await verifyBundleEntries(path, entries, {
        ...(values.keyring ? { keyring: values.keyring } : {}),
        ...(values.installed ? { installedDir: values.installed } : {}),
      });
      status = `verified (key ${v.signature.keyId})`;
    } catch (err) {
      if (!(err instanceof BundleRejected)) throw err;
      status = `REJECTED (${err.reason}): ${err.message}`;
    }
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify({ manifest, status })}\n`);
    } else {
      ctx.stdout.write(describeManifest(manifest));
      ctx.stdout.write(`  status: ${status}\n`);
    }
    return 0;
  },
};
