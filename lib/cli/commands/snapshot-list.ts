/**
 * `blksnap snapshot list` — every snapshot the module holds (COLLECT, in
 * creation order), with the devices, images and difference storage this tool
 * recorded when it created it (nothing for snapshots made by other tools).
 *
 * Text (stdout): per snapshot, `ID` then indented `DEVICE IMAGE` lines; `(orphaned)` when
 * the process that created it is gone (`blksnap cleanup` would destroy it).
 * JSON (stdout): { "snapshots": [ { "id": string, "known": boolean, "orphaned": boolean,
 *   "devices": [string], "images": { DEVICE: IMAGE }, "diff_storage": string | null,
 *   "taken_at": string | null, "purpose": string | null, "pid": n | null } ] }
 * Exit status: 0; 3; 4.
 */
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';

export default defineCommand<GlobalArgs>({
  command: 'list',
  describe: 'List snapshots with the devices and images this tool put in them',
  builder: (y) => y.example('$0 snapshot list', 'ids, devices, images').example('$0 snapshot list --json | jq -r ".snapshots[].id"', 'ids only'),
  exitCodes: [0, 3, 4],
  async run(ctx) {
    const { listSnapshots } = await import('../../snapshot');
    const list = await listSnapshots(await ctx.kernel());
    if (ctx.out.json) {
      return ctx.out.data({
        snapshots: list.map((s) => ({
          id: s.id.toString(),
          known: s.record !== null,
          orphaned: s.orphaned,
          devices: s.devices,
          images: s.images,
          diff_storage: s.record?.diffStorage ?? null,
          taken_at: s.record?.takenAt ?? null,
          purpose: s.record?.purpose ?? null,
          pid: s.record?.pid ?? null,
        })),
      });
    }
    for (const s of list) {
      const notes = [s.record ? null : 'not created by this tool', s.orphaned ? 'orphaned' : null, s.record && !s.record.takenAt ? 'not taken' : null].filter(Boolean);
      ctx.out.text(`${s.id}${notes.length ? ` (${notes.join(', ')})` : ''}`);
      for (const d of s.devices) ctx.out.text(`  ${d} ${s.images[d] ?? '-'}`);
    }
    if (list.length === 0) ctx.out.info('no snapshots');
  },
});
