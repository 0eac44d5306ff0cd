/** Reference form `blksnap snapshot_take --id ID` — same as `snapshot take ID`, prints nothing. */
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseId } from '../parse';
import { takeSnapshot } from './snapshot-take';

interface Args extends GlobalArgs {
  id?: string;
}

export default defineCommand<Args>({
  command: 'snapshot_take',
  describe: false,
  builder: (y) => y.option('id', { alias: 'i', type: 'string', requiresArg: true, describe: 'snapshot uuid' }),
  exitCodes: [0, 2, 3, 4, 5, 6],
  async run(ctx, argv) {
    const id = await takeSnapshot(ctx, parseId(argv.id).toString());
    if (ctx.out.json) ctx.out.data({ id, taken: true });
  },
});
