/**
 * `buildCli(argv, io)` returns the configured yargs parser; `runCli(argv, io)`
 * runs it and resolves to the exit code. bin/blksnap sets process.exitCode
 * from it; tests drive it in-process with buffers for stdout/stderr.
 *
 * All errors (usage errors from yargs, typed errors from commands, anything
 * unexpected) end in the single catch in runCli: one message (or a JSON
 * error object with --json) and the exit code from lib/cli/exit-codes.ts.
 */
import yargsFactory from 'yargs/yargs';
import type { Argv } from 'yargs';
import { BlksnapError, SyscallError, UsageError, errnoNumber } from '../errors';
import { CLI_IO_KEY } from './command';
import { KERNEL_CHOICES, CliContext } from './context';
import type { GlobalArgs } from './context';
import { exitCodeFor, EXIT_CODES } from './exit-codes';
import type { CliIO } from './output';
import { Output, colorEnabled } from './output';
import { commands, referenceFormNames } from './commands';
import { toolVersion } from './tool-version';

export const GLOBAL_GROUP = 'Global Options:';

/** Commands that only group subcommands (an unknown word after them is the unknown subcommand). */
const GROUP_COMMANDS = ['cbt', 'snapshot', 'sim', 'debug', 'module'];

export function buildCli(argv: readonly string[] = process.argv.slice(2)): Argv<GlobalArgs> {
  let y = yargsFactory([...argv])
    .scriptName('blksnap')
    .usage('$0 <command> [options]\n\nSnapshots and changed-block tracking of Linux block devices with the blksnap kernel module.')
    .parserConfiguration({ 'dot-notation': false, 'duplicate-arguments-array': true, 'strip-dashed': true })
    .option('kernel', {
      group: GLOBAL_GROUP,
      type: 'string',
      choices: KERNEL_CHOICES as string[],
      describe: 'kernel to talk to (default $BLKSNAP_KERNEL, else auto: whichever control device exists)',
    })
    .option('sim-dir', {
      group: GLOBAL_GROUP,
      type: 'string',
      describe: 'state directory of the simulated kernel (default $BLKSNAP_SIM_DIR)',
    })
    .option('json', { group: GLOBAL_GROUP, alias: 'j', type: 'boolean', describe: 'machine-readable output: JSON on stdout, JSON errors on stderr' })
    .option('quiet', { group: GLOBAL_GROUP, alias: 'q', type: 'boolean', describe: 'print only data and errors' })
    .option('verbose', { group: GLOBAL_GROUP, alias: 'v', type: 'boolean', describe: 'more messages; stack traces on errors' })
    .option('color', { group: GLOBAL_GROUP, type: 'boolean', describe: 'colour in messages (--no-color; also NO_COLOR or not a terminal)' })
    .help('help')
    .alias('help', 'h')
    .group(['help', 'version'], GLOBAL_GROUP)
    .version('version', 'print the tool version only', toolVersion())
    .strict()
    .demandCommand(1, 'no command given')
    .recommendCommands()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .epilog(
      [
        `Reference C++ tool forms accepted unchanged: ${referenceFormNames.join(', ')}.`,
        '',
        'Exit status:',
        ...EXIT_CODES.filter((r) => r.kind !== 'unsupported_kernel').map((r) => `  ${String(r.code).padStart(3)}  ${r.short}`),
        '',
        'See blksnap(8) for the JSON schemas and an example backup script.',
      ].join('\n'),
    )
    .exitProcess(false)
    .fail((msg, err) => {
      // One path for every failure: yargs validation messages become UsageErrors,
      // errors thrown by command handlers pass through untouched.
      if (err) throw err;
      throw usageErrorFromYargs(msg, argv);
    });
  for (const command of commands) y = y.command(command);
  y = y.completion('completion', 'print a bash completion script (eval "$(blksnap completion)")');
  return y as unknown as Argv<GlobalArgs>;
}

/** Turns a yargs validation message into a one-line UsageError naming the bad thing, with a hint. */
export function usageErrorFromYargs(msg: string | undefined, argv: readonly string[]): UsageError {
  const text = msg ?? 'invalid command line';
  const suggestion = /^Did you mean (.+)\?$/.exec(text);
  if (suggestion) {
    const bad = argv.find((a) => !a.startsWith('-') && !GROUP_COMMANDS.includes(a)) ?? '';
    return new UsageError(`unknown command "${bad}"`, { hint: `did you mean "${suggestion[1]}"? (see blksnap --help)` });
  }
  const invalid = /Argument: (\S+), Given: (.+?), Choices: (.+)$/m.exec(text);
  if (invalid) {
    return new UsageError(`invalid value ${invalid[2]} for --${invalid[1]}`, { hint: `choose one of ${invalid[3]}` });
  }
  const unknown = /^Unknown arguments?: (.+)$/.exec(text);
  if (unknown) {
    const names = unknown[1].split(', ');
    const looksLikeCommand = names.every((n) => argv.includes(n));
    return new UsageError(looksLikeCommand ? `unknown command "${names[0]}"` : `unknown option ${names.map((n) => (n.length === 1 ? '-' : '--') + n).join(', ')}`, {
      hint: 'see blksnap --help, or blksnap COMMAND --help',
    });
  }
  return new UsageError(text.split('\n')[0], { hint: 'see blksnap --help, or blksnap COMMAND --help' });
}

/** Runs one invocation; never throws and never exits the process. */
export async function runCli(argv: readonly string[], io: CliIO): Promise<number> {
  const globals = peekGlobals(argv);
  let helpOutput = '';
  try {
    const cli = buildCli(argv);
    await cli.parseAsync([...argv], { [CLI_IO_KEY]: io }, (_err, _parsed, output) => {
      helpOutput = output;
    });
    if (helpOutput) io.stdout.write(helpOutput.endsWith('\n') ? helpOutput : helpOutput + '\n');
    return 0;
  } catch (thrown) {
    const err = asTypedError(thrown);
    let out: Output;
    try {
      out = new CliContext(io, globals).out;
    } catch {
      out = new Output(io, { json: !!globals.json, quiet: false, verbose: !!globals.verbose, color: colorEnabled(io, globals.color) });
    }
    out.error(err);
    return exitCodeFor(err);
  }
}

/**
 * A Node system error (fs, child_process: `code` EACCES, ENOSPC...) becomes a
 * SyscallError, so it gets the exit code and wording of its errno (EACCES is
 * a permission error, 4) instead of an anonymous failure.
 */
export function asTypedError(err: unknown): unknown {
  // Duck-typed: errors from Node's core are not `instanceof Error` across vm contexts (jest).
  if (err instanceof BlksnapError || typeof err !== 'object' || err === null || typeof (err as Error).message !== 'string') return err;
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code !== 'string' || !/^E[A-Z0-9]+$/.test(e.code)) return err;
  try {
    errnoNumber(e.code);
  } catch {
    return err;
  }
  const typed = new SyscallError(e.code, e.syscall ?? 'system call', e.path);
  (typed as { cause?: unknown }).cause = err;
  return typed;
}

/** The global flags as typed, before yargs has parsed (to word an error that happened while parsing). */
function peekGlobals(argv: readonly string[]): GlobalArgs {
  const has = (...names: string[]) => argv.some((a) => names.includes(a));
  return {
    json: has('--json', '-j'),
    verbose: has('--verbose', '-v'),
    color: has('--no-color') ? false : undefined,
  };
}
