import { ArgusError, errorMessage } from '../common/errors.ts';
import { type Command, HelpRequested } from './command.ts';
import { artifactsList, artifactsPublish, artifactsShow } from './commands/artifacts.ts';
import { caInit, caIssue } from './commands/ca.ts';
import { controlPlaneEnroll, controlPlaneRun } from './commands/control-plane.ts';
import { demo } from './commands/demo.ts';
import { detect } from './commands/detect.ts';
import { deviceRun } from './commands/device.ts';
import { devicesRevoke, devicesRotate } from './commands/devices.ts';
import { keysGenerate, keysList, keysTrust } from './commands/keys.ts';
import { loopRun, loopWorker } from './commands/loop.ts';
import {
  modelsBuild,
  modelsInspect,
  modelsInstall,
  modelsSign,
  modelsVerify,
} from './commands/model-bundles.ts';
import { modelsEvaluate, modelsPrune, modelsQuantize } from './commands/model-factory.ts';
import { modelsFetch, modelsList } from './commands/models.ts';
import { replay } from './commands/replay.ts';
import {
  devicesLabel,
  rolloutsCancel,
  rolloutsCreate,
  rolloutsList,
  rolloutsPause,
  rolloutsResume,
  rolloutsShow,
} from './commands/rollouts.ts';
import { usersAdd, usersList, usersPasswd, usersRemove } from './commands/users.ts';

/** every `argus` subcommand; each lives in its own module under commands/ */
export const COMMANDS: readonly Command[] = [
  modelsFetch,
  modelsList,
  modelsQuantize,
  modelsPrune,
  modelsEvaluate,
  modelsBuild,
  modelsSign,
  modelsVerify,
  modelsInspect,
  modelsInstall,
  detect,
  replay,
  demo,
  deviceRun,
  controlPlaneRun,
  controlPlaneEnroll,
  devicesRotate,
  devicesRevoke,
  devicesLabel,
  rolloutsCreate,
  rolloutsList,
  rolloutsShow,
  rolloutsPause,
  rolloutsResume,
  rolloutsCancel,
  keysGenerate,
  keysTrust,
  keysList,
  caInit,
  caIssue,
  usersAdd,
  usersList,
  usersRemove,
  usersPasswd,
  artifactsPublish,
  artifactsList,
  artifactsShow,
  loopRun,
  loopWorker,
];

function help(): string {
  const lines = COMMANDS.map((c) => `  argus ${c.path.join(' ').padEnd(18)} ${c.summary}`);
  return `Argus — edge video analytics\n\nusage:\n${lines.join('\n')}\n\nargus <command> --help shows a command's options.\n`;
}

function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  const matches = COMMANDS.filter((c) => c.path.every((word, i) => argv[i] === word)).sort(
    (a, b) => b.path.length - a.path.length,
  );
  const command = matches[0];
  return command ? { command, rest: argv.slice(command.path.length) } : undefined;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === 'help') {
    process.stdout.write(help());
    return argv.length === 0 ? 1 : 0;
  }
  const found = findCommand(argv);
  if (!found) {
    process.stderr.write(`argus: unknown command "${argv.join(' ')}"\n\n${help()}`);
    return 2;
  }
  const { command, rest } = found;
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\ninterrupted: stopping (Ctrl-C again to force)\n');
    controller.abort(new ArgusError('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // the reader of our output went away (`argus replay … | head`): stop like on Ctrl-C. The
  // listener stays: later writes report the closed stdout again, also after the command returned.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    controller.abort(new ArgusError('output closed'));
  });
  try {
    return await command.run(rest, { signal: controller.signal, stdout: process.stdout });
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.text);
      return 0;
    }
    process.stderr.write(`argus ${command.path.join(' ')}: ${errorMessage(err)}\n`);
    if (!(err instanceof ArgusError) && err instanceof Error && err.stack)
      process.stderr.write(`${err.stack}\n`);
    return controller.signal.aborted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
