/**
 * `blksnap cbt map DEVICE [--out FILE]` (also `readcbtmap --device D --file F`)
 * — the raw change-tracking map: one byte per tracking block, the snapshot
 * number that last changed it, as of the last TAKE. Written to FILE, or to
 * stdout when it is not a terminal.
 *
 * JSON (stdout): { "device": string, "block_size": n, "block_count": n,
 *   "generation_id": string, "changes_number": n, "out": string | null,
 *   "map_base64": string (only without --out) }
 * Exit status: 0; 1 write error; 2 bad argument (or stdout is a terminal); 3; 4; 5 device not found or not tracked.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { UsageError } from '../../errors';
import type { CliContext } from '../context';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';

export interface CbtMapArgs extends GlobalArgs {
  device: string;
  out?: string;
}

export async function writeCbtMap(ctx: CliContext, deviceArg: string, out: string | undefined, stdoutIsTTY: boolean): Promise<void> {
  if (out !== undefined && out.trim() === '') throw new UsageError('empty output file name ""', { hint: 'give a file path, e.g. --out /tmp/sdb1.map' });
  if (out === undefined && !ctx.out.json && stdoutIsTTY) {
    throw new UsageError('refusing to write the binary CBT map to a terminal', { hint: 'use --out FILE, redirect stdout, or --json' });
  }
  const kernel = await ctx.kernel();
  const device = await ctx.resolveDevice(deviceArg);
  const client = kernel.device(device);
  const info = await client.cbtInfo();
  const map = await client.readCbtMap(info);
  const outPath = out === undefined ? null : path.resolve(out);
  if (outPath) await fsp.writeFile(outPath, map);
  if (ctx.out.json) {
    ctx.out.data({
      device,
      block_size: info.blockSize,
      block_count: info.blockCount,
      generation_id: info.generationId,
      changes_number: info.changesNumber,
      out: outPath,
      ...(outPath ? {} : { map_base64: Buffer.from(map).toString('base64') }),
    });
  } else if (outPath) {
    ctx.out.info(`${device}: ${map.length} map bytes written to ${outPath}`);
  } else {
    ctx.io.stdout.write(map);
  }
}

export default defineCommand<CbtMapArgs>({
  command: 'map <device>',
  describe: 'Write the raw change-tracking map (one byte per block)',
  builder: (y) =>
    y
      .positional('device', { type: 'string', demandOption: true, describe: 'a tracked block device' })
      .option('out', { alias: 'o', type: 'string', requiresArg: true, describe: 'file to write the map to (default stdout)' })
      .example('$0 cbt map /dev/sdb1 --out sdb1.map', 'save the map')
      .example('$0 cbt map /dev/sdb1 | xxd | head', 'look at it'),
  exitCodes: [0, 1, 2, 3, 4, 5],
  run: (ctx, argv) => writeCbtMap(ctx, argv.device, argv.out, !!(process.stdout.isTTY && ctx.io.stdout === process.stdout)),
});
