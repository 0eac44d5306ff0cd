/**
 * Reference form `blksnap cbtinfo --device D [--json]` — same as `cbt info D`
 * (key=value lines block_size, device_capacity, block_count, generation_id,
 * changes_number; JSON as `cbt info`).
 */
import { UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { printCbtInfo } from './cbt-info';

interface Args extends GlobalArgs {
  device?: string;
}

export default defineCommand<Args>({
  command: 'cbtinfo',
  describe: false,
  builder: (y) => y.option('device', { alias: 'd', type: 'string', requiresArg: true, describe: 'device name' }).example('$0 cbtinfo --device /dev/sdb1', 'reference form of cbt info'),
  exitCodes: [0, 2, 3, 4, 5],
  async run(ctx, argv) {
    if (!argv.device) throw new UsageError("Argument 'device' is missed.", { hint: 'blksnap cbtinfo --device /dev/sdb1' });
    await printCbtInfo(ctx, argv.device);
  },
});
