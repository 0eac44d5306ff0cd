/**
 * `blksnap snapshot destroy ID... | --all` (also `snapshot_destroy --id ID`)
 * — release the snapshots: their images disappear and the difference storage
 * is freed; change tracking continues. Every id is checked against the
 * kernel's list first, so a malformed or unknown id destroys nothing.
 *
 * JSON (stdout): { "destroyed": [ string ] }
 * Exit status: 0; 2 malformed id, or ids together with --all; 3; 4; 5 no such snapshot.
 */
import { NotFoundError, UsageError } from '../../errors';
import type { SnapshotId } from '../../kernel/snapshot-id';
import { defineCommand } from '../command';
import type { CliContext, GlobalArgs } from '../context';
import { parseId } from '../parse';

export interface SnapshotDestroyArgs extends GlobalArgs {
  ids?: string[];
  all?: boolean;
}

/** Destroys the given snapshots after checking that the kernel holds every one of them. */
export async function destroySnapshots(ctx: CliContext, idTexts: string[], all: boolean): Promise<string[]> {
  if (all && idTexts.length > 0) throw new UsageError('give snapshot ids or --all, not both', { hint: 'blksnap snapshot destroy --all' });
  if (!all && idTexts.length === 0) throw new UsageError('no snapshot id given', { hint: 'blksnap snapshot destroy ID... (ids: blksnap snapshot list), or --all' });
  const wanted = idTexts.map(parseId);
  const control = await ctx.control();
  const present = await control.collectSnapshots();
  let targets: SnapshotId[];
  if (all) targets = present;
  else {
    const missing = wanted.filter((id) => !present.some((p) => p.equals(id)));
    if (missing.length > 0) {
      throw new NotFoundError(`snapshot ${missing.map(String).join(', ')} not found`, {
        path: missing[0].toString(),
        hint: 'see blksnap snapshot list; nothing was destroyed',
      });
    }
    targets = wanted.filter((id, i) => wanted.findIndex((w) => w.equals(id)) === i);
  }
  const destroyed: string[] = [];
  for (const id of targets) {
    await control.destroySnapshot(id);
    destroyed.push(id.toString());
  }
  return destroyed;
}

export default defineCommand<SnapshotDestroyArgs>({
  command: 'destroy [ids..]',
  describe: 'Destroy snapshots (images go away, tracking continues)',
  builder: (y) =>
    y
      .positional('ids', { type: 'string', array: true, describe: 'snapshot ids' })
      .option('all', { type: 'boolean', describe: 'destroy every snapshot the module holds' })
      .example('$0 snapshot destroy 3f2a8c1e-1b2c-4d5e-8f90-123456789abc', 'release one snapshot')
      .example('$0 snapshot destroy --all', 'release all of them'),
  exitCodes: [0, 2, 3, 4, 5],
  async run(ctx, argv) {
    const destroyed = await destroySnapshots(ctx, (argv.ids ?? []).map(String), !!argv.all);
    if (ctx.out.json) return ctx.out.data({ destroyed });
    for (const id of destroyed) ctx.out.say(`snapshot ${id} destroyed`);
    if (destroyed.length === 0) ctx.out.info('no snapshots');
  },
});
