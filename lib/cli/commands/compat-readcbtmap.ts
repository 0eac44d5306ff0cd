/** Reference form `blksnap readcbtmap --device D --file F` — same as `cbt map D --out F`. */
import { UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { writeCbtMap } from './cbt-map';

interface Args extends GlobalArgs {
  device?: string;
  file?: string;
}

export default defineCommand<Args>({
  command: 'readcbtmap',
  describe: false,
  builder: (y) =>
    y
      .option('device', { alias: 'd', type: 'string', requiresArg: true, describe: 'device name' })
      .option('file', { alias: 'f', type: 'string', requiresArg: true, describe: 'file name for output' })
      .example('$0 readcbtmap --device /dev/sdb1 --file sdb1.map', 'reference form of cbt map'),
  exitCodes: [0, 1, 2, 3, 4, 5],
  async run(ctx, argv) {
    if (!argv.device) throw new UsageError("Argument 'device' is missed.", { hint: 'blksnap readcbtmap --device /dev/sdb1 --file sdb1.map' });
    if (!argv.file) throw new UsageError("Argument 'file' is missed.", { hint: 'blksnap readcbtmap --device /dev/sdb1 --file sdb1.map' });
    await writeCbtMap(ctx, argv.device, argv.file, false);
  },
});
