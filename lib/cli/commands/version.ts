/**
 * `blksnap version` — the tool version, the kernel flavour and control
 * device, the module version, and on the standalone module its modification
 * name and compatibility flags. Scripts use it as a probe: when no module
 * answers it still prints the tool version, then exits 3.
 * (`blksnap --version` prints only the tool version.)
 *
 * JSON (stdout): {
 *   "tool": { "name": "blksnap", "version": string },
 *   "kernel": { "kind": "kernel"|"sim", "flavour": "upstream"|"standalone", "control_device": string } | null,
 *   "module": { "version": string, "major": n, "minor": n, "revision": n, "build": n,
 *               "modification": { "name": string, "compatibility_flags": n, "flags": string[] } | null } | null
 * }   (kernel/module null when no module answers; the error follows on stderr)
 * Exit status: 0; 3 module missing or kernel unsupported; 4 permission denied.
 */
import { BlksnapError } from '../../errors';
import type { GlobalArgs } from '../context';
import { defineCommand } from '../command';
import { toolVersion } from '../tool-version';

export default defineCommand<GlobalArgs>({
  command: 'version',
  describe: 'Show the tool, kernel flavour and module versions (exit 3 when no module answers)',
  builder: (y) =>
    y
      .example('$0 version', 'tool, flavour and module version')
      .example('$0 version --kernel sim --json', 'the same as JSON, on the simulated kernel')
      .example('blksnap version >/dev/null 2>&1 || echo "no blksnap module"', 'probe in a script'),
  exitCodes: [0, 3, 4],
  async run(ctx) {
    const tool = { name: 'blksnap', version: toolVersion() };
    let kernelDoc: { kind: string; flavour: string; control_device: string } | null = null;
    let moduleDoc: Record<string, unknown> | null = null;
    let failure: unknown = null;
    try {
      const kernel = await ctx.kernel();
      kernelDoc = { kind: kernel.kind, flavour: kernel.flavour, control_device: kernel.controlDevicePath };
      const control = await ctx.control();
      const v = await control.version();
      const mod = await control.moduleInfo();
      moduleDoc = {
        version: v.text,
        major: v.major,
        minor: v.minor,
        revision: v.revision,
        build: v.build,
        modification: mod ? { name: mod.name, compatibility_flags: mod.compatibilityFlags, flags: mod.flagNames } : null,
      };
    } catch (err) {
      if (!(err instanceof BlksnapError)) throw err;
      failure = err;
    }
    if (ctx.out.json) {
      ctx.out.data({ tool, kernel: failure ? null : kernelDoc, module: moduleDoc });
    } else {
      ctx.out.text(`blksnap ${tool.version}`);
      if (kernelDoc && !failure) {
        ctx.out.text(`kernel: ${kernelDoc.kind === 'sim' ? 'simulated ' : ''}${kernelDoc.flavour} (${kernelDoc.control_device})`);
      }
      if (moduleDoc) {
        ctx.out.text(`module: ${moduleDoc.version}`);
        const mod = moduleDoc.modification as { name: string; flags: string[] } | null;
        if (mod) ctx.out.text(`modification: ${mod.name}${mod.flags.length ? ' (' + mod.flags.join(' ') + ')' : ''}`);
      }
    }
    if (failure) throw failure;
  },
});
