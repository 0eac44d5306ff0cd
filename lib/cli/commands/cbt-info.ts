/**
 * `blksnap cbt info DEVICE` (also the reference form `cbtinfo --device D`) —
 * the change tracker of a device: capacity, tracking block size and count,
 * generation id and changes number, as the reference tool's key=value lines:
 *   block_size=65536
 *   device_capacity=536870912
 *   block_count=8192
 *   generation_id=0b6e8f3c-...
 *   changes_number=3
 *
 * JSON (stdout): { "device": string, "device_capacity": n, "block_size": n,
 *   "block_count": n, "generation_id": string, "changes_number": n }
 * Exit status: 0; 2 bad device; 3 no module; 4 not root; 5 device not found or not tracked.
 */
import type { CbtInfo } from '../../kernel/types';
import type { CliContext } from '../context';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';

export interface CbtInfoArgs extends GlobalArgs {
  device: string;
}

export function cbtInfoDoc(device: string, info: CbtInfo) {
  return {
    device,
    device_capacity: info.capacity,
    block_size: info.blockSize,
    block_count: info.blockCount,
    generation_id: info.generationId,
    changes_number: info.changesNumber,
  };
}

export async function printCbtInfo(ctx: CliContext, deviceArg: string): Promise<void> {
  const kernel = await ctx.kernel();
  const path = await ctx.resolveDevice(deviceArg);
  const info = await kernel.device(path).cbtInfo();
  if (ctx.out.json) return ctx.out.data(cbtInfoDoc(path, info));
  ctx.out.text(`block_size=${info.blockSize}`);
  ctx.out.text(`device_capacity=${info.capacity}`);
  ctx.out.text(`block_count=${info.blockCount}`);
  ctx.out.text(`generation_id=${info.generationId}`);
  ctx.out.text(`changes_number=${info.changesNumber}`);
}

export default defineCommand<CbtInfoArgs>({
  command: 'info <device>',
  describe: 'Show the change tracker of a device (key=value lines)',
  builder: (y) =>
    y
      .positional('device', { type: 'string', demandOption: true, describe: 'a tracked block device' })
      .example('$0 cbt info /dev/sdb1', 'block_size=..., generation_id=..., changes_number=...')
      .example('$0 cbt info /dev/sdb1 --json | jq .changes_number', 'one value for a script'),
  exitCodes: [0, 2, 3, 4, 5],
  run: (ctx, argv) => printCbtInfo(ctx, argv.device),
});
