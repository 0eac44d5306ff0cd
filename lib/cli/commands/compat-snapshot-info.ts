/**
 * Reference form `blksnap snapshot_info --device D [--field image|error_code] [--json]`:
 *   error_code=0
 *   image=/dev/blksnap-7-0
 * or only the bare value of one field with --field. Exit 0 whatever error_code
 * says (as the reference); `snapshot info` exits 8 for a failed snapshot.
 * JSON as `snapshot info`.
 */
import { UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { deviceSnapshotInfo, snapshotInfoDoc } from './snapshot-info';

interface Args extends GlobalArgs {
  device?: string;
  field?: string;
}

export default defineCommand<Args>({
  command: 'snapshot_info',
  describe: false,
  builder: (y) =>
    y
      .option('device', { alias: 'd', type: 'string', requiresArg: true, describe: 'device name' })
      .option('field', { alias: 'f', type: 'string', requiresArg: true, describe: 'print only this field: image or error_code' })
      .example('IMAGE=$(blksnap snapshot_info --device /dev/sdb1 --field image)', 'the image path for a script'),
  exitCodes: [0, 2, 3, 4, 5],
  async run(ctx, argv) {
    if (!argv.device) throw new UsageError("Argument 'device' is missed.", { hint: 'blksnap snapshot_info --device /dev/sdb1' });
    if (argv.field !== undefined && argv.field !== 'image' && argv.field !== 'error_code') {
      throw new UsageError(`Value '${argv.field}' for argument '--field' is not supported.`, { hint: 'use --field image or --field error_code' });
    }
    const { device, info } = await deviceSnapshotInfo(ctx, argv.device);
    const image = info.imagePath ?? '';
    if (ctx.out.json) {
      const doc = snapshotInfoDoc(device, info);
      return ctx.out.data(argv.field === 'image' ? { image: doc.image } : argv.field === 'error_code' ? { error_code: doc.error_code } : doc);
    }
    if (argv.field === 'image') ctx.out.text(image);
    else if (argv.field === 'error_code') ctx.out.text(String(info.errorCode));
    else {
      ctx.out.text(`error_code=${info.errorCode}`);
      ctx.out.text(`image=${image}`);
    }
  },
});
