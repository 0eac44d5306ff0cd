/**
 * Reference form `blksnap snapshot_add --id ID --device D` — adds a device to
 * a snapshot that is not taken yet, attaching change tracking first if
 * needed (as the reference does). Prints nothing.
 * JSON (stdout): { "id": string, "device": string, "newly_attached": boolean }
 */
import { UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseId } from '../parse';

interface Args extends GlobalArgs {
  id?: string;
  device?: string;
}

export default defineCommand<Args>({
  command: 'snapshot_add',
  describe: false,
  builder: (y) =>
    y
      .option('id', { alias: 'i', type: 'string', requiresArg: true, describe: 'snapshot uuid' })
      .option('device', { alias: 'd', type: 'string', requiresArg: true, describe: 'device name' }),
  exitCodes: [0, 2, 3, 4, 5, 6],
  async run(ctx, argv) {
    const id = parseId(argv.id);
    if (!argv.device) throw new UsageError("Argument 'device' is missed.", { hint: 'blksnap snapshot_add --id ID --device /dev/sdb1' });
    const kernel = await ctx.kernel();
    const device = await ctx.resolveDevice(argv.device);
    const present = await (await ctx.control()).collectSnapshots();
    if (!present.some((p) => p.equals(id))) {
      const { NotFoundError } = await import('../../errors');
      throw new NotFoundError(`snapshot ${id} not found`, { path: id.toString(), hint: 'see blksnap snapshot_collect' });
    }
    const client = kernel.device(device);
    const attached = await client.attach();
    try {
      await client.addToSnapshot(id);
    } catch (err) {
      // Leave the device as it was: only undo tracking this command started.
      if (!attached.alreadyAttached) await client.detach().catch(() => undefined);
      throw err;
    }
    if (ctx.out.json) ctx.out.data({ id: id.toString(), device, newly_attached: !attached.alreadyAttached });
  },
});
