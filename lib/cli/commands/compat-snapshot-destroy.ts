/** Reference form `blksnap snapshot_destroy --id ID` — same as `snapshot destroy ID`, prints nothing. */
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseId } from '../parse';
import { destroySnapshots } from './snapshot-destroy';

interface Args extends GlobalArgs {
  id?: string;
}

export default defineCommand<Args>({
  command: 'snapshot_destroy',
  describe: false,
  builder: (y) => y.option('id', { alias: 'i', type: 'string', requiresArg: true, describe: 'snapshot uuid' }),
  exitCodes: [0, 2, 3, 4, 5],
  async run(ctx, argv) {
    const destroyed = await destroySnapshots(ctx, [parseId(argv.id).toString()], false);
    if (ctx.out.json) ctx.out.data({ destroyed });
  },
});
