/**
 * `blksnap mod` (also `blksnap module info`) — the module's modification
 * interface (IOCTL_BLKSNAP_MOD, standalone module only). Prints the
 * reference tool's shape `NAME : flag flag -`, e.g. `standalone : setlog -`.
 * On the upstream flavour there is no such request (ENOTTY): it says so and
 * prints the module version instead, exit 0.
 *
 * JSON (stdout): { "flavour": string, "version": string,
 *   "modification": { "name": string, "compatibility_flags": n, "flags": [string] } | null }
 * Exit status: 0; 3 no module; 4 not root.
 */
import { defineCommand, defineGroup } from '../command';
import type { CliContext, GlobalArgs } from '../context';

async function showModule(ctx: CliContext): Promise<void> {
  const kernel = await ctx.kernel();
  const control = await ctx.control();
  const version = await control.version();
  const mod = await control.moduleInfo();
  if (ctx.out.json) {
    return ctx.out.data({
      flavour: kernel.flavour,
      version: version.text,
      modification: mod ? { name: mod.name, compatibility_flags: mod.compatibilityFlags, flags: mod.flagNames } : null,
    });
  }
  if (mod) {
    ctx.out.text(`${mod.name} : ${mod.flagNames.map((f) => f + ' ').join('')}-`);
  } else {
    ctx.out.text(`no modification interface (${kernel.flavour} blksnap module ${version.text})`);
  }
}

const builder = (y: import('yargs').Argv<GlobalArgs>) =>
  y.example('$0 mod', 'standalone : setlog -').example('$0 module info --json', 'the same as JSON');

export const mod = defineCommand<GlobalArgs>({
  command: 'mod',
  describe: 'Show the module modification name and compatibility flags',
  builder,
  exitCodes: [0, 3, 4],
  run: showModule,
});

const moduleInfo = defineCommand<GlobalArgs>({
  command: 'info',
  describe: 'Show the module modification name and compatibility flags (same as mod)',
  builder,
  exitCodes: [0, 3, 4],
  run: showModule,
});

export const moduleGroup = defineGroup({
  command: 'module',
  describe: 'Kernel module information (module info)',
  subcommands: [moduleInfo],
});

export default mod;
