/** Reference form `blksnap markdirtyblock --device D --ranges S:C... | --file PATH` — same as `cbt mark-dirty`. */
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { markDirty } from './cbt-mark-dirty';

interface Args extends GlobalArgs {
  device?: string;
  ranges?: string[];
  file?: string;
}

export default defineCommand<Args>({
  command: 'markdirtyblock',
  describe: false,
  builder: (y) =>
    y
      .option('device', { alias: 'd', type: 'string', requiresArg: true, describe: 'device name' })
      .option('ranges', { alias: 'r', type: 'string', array: true, requiresArg: true, describe: "sectors range in format 'sector:count' (multitoken)" })
      .option('file', { alias: 'f', type: 'string', requiresArg: true, describe: 'file name with dirty blocks' }),
  exitCodes: [0, 2, 3, 4, 5],
  run: (ctx, argv) => markDirty(ctx, argv.device, argv.ranges, argv.file),
});
