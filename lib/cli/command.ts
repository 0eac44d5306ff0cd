/**
 * The command-module pattern every file in lib/cli/commands/ follows
 * (also the backup/verify/restore/cleanup modules):
 *
 * ```ts
 * // lib/cli/commands/frobnicate.ts
 * /**
 *  * `blksnap frobnicate DEVICE` — one line on what it does.
 *  *
 *  * JSON (stdout, --json): { "device": string, "frobs": number }   <- the stable schema
 *  * Exit status: 0, 2 usage, 5 device not found.
 *  *\/
 * import { defineCommand } from '../command';
 * export interface FrobnicateArgs extends GlobalArgs { device: string }
 * export default defineCommand<FrobnicateArgs>({
 *   command: 'frobnicate <device>',
 *   describe: 'Frobnicate a device',
 *   builder: (y) => y.positional('device', { type: 'string', demandOption: true, describe: '...' })
 *     .example('$0 frobnicate /dev/sda1', 'what it shows'),
 *   exitCodes: [0, 2, 5],
 *   async run(ctx, argv) {
 *     const { frobnicate } = await import('../../frob');   // lazy: load only what this command uses
 *     const result = await frobnicate(await ctx.kernel(), argv.device);
 *     if (ctx.out.json) return ctx.out.data({ device: argv.device, frobs: result.n });
 *     ctx.out.text(`${argv.device}: ${result.n} frobs`);
 *   },
 * });
 * ```
 * Rules: validate every argument (lib/cli/parse.ts) before the first call
 * that changes state; throw typed errors from lib/errors.ts (never print an
 * error, never call process.exit — main.ts maps the error to the exit code);
 * print only through `ctx.out` (see lib/cli/output.ts); top-level imports
 * only of light modules (types, parse helpers) so start-up stays fast; then
 * add the module to the list in lib/cli/commands/index.ts.
 */
import type { Argv, CommandModule } from 'yargs';
import { CliContext } from './context';
import type { GlobalArgs } from './context';
import type { CliIO } from './output';
import { EXIT_CODES } from './exit-codes';

/** Key under which main.ts passes the CliIO into yargs' parse context. */
export const CLI_IO_KEY = '__blksnapIO';

export interface CommandDef<A extends GlobalArgs> {
  command: string | readonly string[];
  /** Shown in `--help`; `false` hides the command (reference-tool forms). */
  describe: string | false;
  builder?: (y: Argv<GlobalArgs>) => Argv<A> | Argv<GlobalArgs>;
  /** Exit codes this command can end with, listed under its `--help`. */
  exitCodes?: readonly number[];
  run(ctx: CliContext, argv: A): Promise<void>;
}

/** Help text for a command's own exit codes (restic: "each command's help repeats its own codes"). */
export function exitCodeEpilog(codes: readonly number[]): string {
  const lines = codes.map((code) => {
    const row = EXIT_CODES.find((r) => r.code === code);
    return `  ${String(code).padStart(3)}  ${row ? row.short : 'signal'}`;
  });
  return `Exit status:\n${lines.join('\n')}`;
}

export function defineCommand<A extends GlobalArgs>(def: CommandDef<A>): CommandModule<GlobalArgs, A> {
  return {
    command: def.command as string | readonly string[] as string,
    describe: def.describe,
    builder: ((y: Argv<GlobalArgs>) => {
      const built = def.builder ? def.builder(y) : y;
      return def.exitCodes ? built.epilog(exitCodeEpilog(def.exitCodes)) : built;
    }) as CommandModule<GlobalArgs, A>['builder'],
    handler: async (argv) => {
      const io = (argv as unknown as Record<string, unknown>)[CLI_IO_KEY] as CliIO;
      const ctx = new CliContext(io, argv);
      try {
        await def.run(ctx, argv as unknown as A);
      } finally {
        ctx.close();
      }
    },
  };
}

/** A parent command (`snapshot`, `cbt`, ...) whose subcommands are modules of their own. */
export function defineGroup(def: {
  command: string | readonly string[];
  describe: string | false;
  subcommands: readonly CommandModule<GlobalArgs, any>[];
  examples?: readonly [string, string][];
}): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: def.command as string,
    describe: def.describe,
    builder: (y) => {
      let b = y;
      for (const sub of def.subcommands) b = b.command(sub);
      for (const [cmd, text] of def.examples ?? []) b = b.example(cmd, text);
      return b.demandCommand(1, 'give a subcommand (see --help)');
    },
    handler: () => {
      /* demandCommand makes this unreachable */
    },
  };
}
