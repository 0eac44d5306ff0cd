/**
 * `blksnap debug abi [--json]` — every ioctl (name, number, direction, size)
 * and every struct (size, alignment, field offsets) of both kernel flavours,
 * as this tool computes them: the first thing to compare with a kernel's
 * headers (or an strace line) when a kernel disagrees. Needs no kernel.
 *
 * JSON (stdout): the document of ioctl-defs/report.ts `abiReport()`:
 *   { "schema": 1, "arch": string, "flavours": { "upstream"|"standalone": {
 *       "controlDevice", "filterDevice", "ioctls": [{"name","number","hex","size","dir","type","typeHex","nr","arg","argSize"}],
 *       "structs": [{"name","size","align","fields":[{"name","offset","size","align","type","pointsTo"}],"padding":[{"offset","size"}]}] } },
 *     "linux": { "ioctls": [...], "structs": [...] } }
 * Exit status: 0.
 */
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';

export default defineCommand<GlobalArgs>({
  command: 'abi',
  describe: 'Print every ioctl number and struct layout of both flavours',
  builder: (y) =>
    y
      .example('$0 debug abi', 'human-readable tables')
      .example('$0 debug abi --json | jq \'.flavours.upstream.ioctls[] | select(.name=="BLKFILTER_CTL")\'', 'one ioctl'),
  exitCodes: [0],
  async run(ctx) {
    const { abiReport } = await import('../../../ioctl-defs/report');
    const report = abiReport();
    if (ctx.out.json) return ctx.out.data(report);
    const sections: [string, { ioctls: typeof report.linux.ioctls; structs: typeof report.linux.structs }][] = [
      [`upstream flavour (control ${report.flavours.upstream.controlDevice}; filter ioctls on the block device)`, report.flavours.upstream],
      [`standalone flavour (control ${report.flavours.standalone.controlDevice}; filter ioctls on ${report.flavours.standalone.filterDevice})`, report.flavours.standalone],
      ['generic Linux ioctls used', report.linux],
    ];
    ctx.out.text(`# ABI as computed for ${report.arch}`);
    for (const [title, section] of sections) {
      ctx.out.text('');
      ctx.out.text(`== ${title}`);
      ctx.out.text('ioctls:');
      for (const i of section.ioctls) {
        ctx.out.text(`  ${i.name.padEnd(36)} ${i.hex}  ${i.dir.padEnd(5)} type ${i.typeHex} nr ${String(i.nr).padStart(3)} size ${String(i.size).padStart(4)}  arg ${i.arg} (${i.argSize})`);
      }
      ctx.out.text('structs:');
      for (const s of section.structs) {
        ctx.out.text(`  struct ${s.name}  size ${s.size}  align ${s.align}`);
        for (const f of s.fields) {
          ctx.out.text(`    @${String(f.offset).padStart(4)}  ${String(f.size).padStart(4)}  ${f.type.padEnd(20)} ${f.name}${f.pointsTo ? `  -> ${f.pointsTo}` : ''}`);
        }
        for (const p of s.padding) ctx.out.text(`    @${String(p.offset).padStart(4)}  ${String(p.size).padStart(4)}  (padding)`);
      }
    }
  },
});
