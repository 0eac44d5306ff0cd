/**
 * `blksnap snapshot take ID` (also `snapshot_take --id ID`) — take a snapshot
 * created with `snapshot create --no-take` (or `snapshot_create`): the kernel
 * creates one image per device and switches the change-tracking maps.
 *
 * JSON (stdout): { "id": string, "taken": true }
 * Exit status: 0; 2 malformed id; 3; 4; 5 no such snapshot, or no device in it; 6 already taken.
 */
import { defineCommand } from '../command';
import type { CliContext, GlobalArgs } from '../context';
import { parseId } from '../parse';

export interface SnapshotTakeArgs extends GlobalArgs {
  id: string;
}

export async function takeSnapshot(ctx: CliContext, idText: string): Promise<string> {
  const id = parseId(idText);
  const control = await ctx.control();
  await control.takeSnapshot(id);
  return id.toString();
}

export default defineCommand<SnapshotTakeArgs>({
  command: 'take <id>',
  describe: 'Take a created snapshot (make its images)',
  builder: (y) =>
    y
      .positional('id', { type: 'string', demandOption: true, describe: 'snapshot id from snapshot create --no-take' })
      .example('$0 snapshot take 3f2a8c1e-1b2c-4d5e-8f90-123456789abc', 'take it; then blksnap snapshot info DEVICE'),
  exitCodes: [0, 2, 3, 4, 5, 6],
  async run(ctx, argv) {
    const id = await takeSnapshot(ctx, argv.id);
    if (ctx.out.json) return ctx.out.data({ id, taken: true });
    ctx.out.say(`snapshot ${id} taken`);
  },
});
