/**
 * Reference form `blksnap snapshot_collect` — the ids of every snapshot the
 * module holds, one per line, in creation order.
 * JSON (stdout): { "ids": [ string ] }
 */
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';

export default defineCommand<GlobalArgs>({
  command: 'snapshot_collect',
  describe: false,
  builder: (y) => y.example('for id in $(blksnap snapshot_collect); do blksnap snapshot_destroy --id $id; done', 'destroy everything'),
  exitCodes: [0, 3, 4],
  async run(ctx) {
    const ids = (await (await ctx.control()).collectSnapshots()).map(String);
    if (ctx.out.json) return ctx.out.data({ ids });
    for (const id of ids) ctx.out.text(id);
  },
});
