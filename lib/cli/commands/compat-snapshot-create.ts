/**
 * Reference form `blksnap snapshot_create --device D... [--file PATH] [--limit SIZE]`
 * — creates a snapshot and adds the devices without taking it (then
 * `snapshot_take --id`). Prints only the new id. Unlike the reference, if
 * adding any device fails it destroys the snapshot it just created and fails,
 * the difference storage is checked against the devices first, and size
 * suffixes are read in either case.
 * JSON (stdout): { "id": string }
 */
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { devicesOf } from './devices';
import { createSnapshot } from './snapshot-create';

interface Args extends GlobalArgs {
  device?: string[];
  file?: string;
  limit?: string;
}

export default defineCommand<Args>({
  command: 'snapshot_create',
  describe: false,
  builder: (y) =>
    y
      .option('device', { alias: 'd', type: 'string', array: true, requiresArg: true, describe: 'device name for snapshot (multitoken)' })
      .option('file', { alias: ['f', 's'], type: 'string', requiresArg: true, describe: 'file, directory or block device for the difference storage' })
      .option('limit', { alias: 'l', type: 'string', requiresArg: true, describe: 'limit of the difference storage size, e.g. 512M, 2G' }),
  exitCodes: [0, 2, 3, 4, 5, 6],
  async run(ctx, argv) {
    const devices = devicesOf({ device: argv.device }, 'snapshot_create');
    const { session } = await createSnapshot(ctx, {
      devices,
      diffStorage: argv.file,
      limit: argv.limit,
      noTake: true,
      purpose: 'snapshot_create',
      limitWhat: '--limit',
    });
    if (ctx.out.json) return ctx.out.data({ id: session.id.toString() });
    ctx.out.text(session.id.toString());
  },
});
