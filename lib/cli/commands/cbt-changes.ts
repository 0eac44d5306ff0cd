/**
 * `blksnap cbt changes DEVICE --since N [--generation UUID]` — the sector
 * ranges changed since the snapshot whose changes number was N (the
 * `changes_number` a previous backup recorded). Blocks whose map byte is
 * greater than N changed (blksnap-abi.md §4). With `--generation`, refuses
 * (exit 9) when the tracker's generation id differs: the map then says
 * nothing about changes since that backup and the next one must be full.
 *
 * Text (stdout): one `START:COUNT` line per merged range, in 512-byte sectors
 * (the form `cbt mark-dirty --range` takes). A summary goes to stderr.
 * JSON (stdout): { "device": string, "generation_id": string, "since": n,
 *   "changes_number": n, "block_size": n, "device_capacity": n,
 *   "changed_bytes": n, "ranges": [ { "offset": n, "count": n } ] }  (sectors)
 * Exit status: 0; 2 bad argument; 3; 4; 5 device not found or not tracked; 9 generation changed or N newer than the tracker.
 */
import { IncrementalImpossibleError, UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseCount, parseGeneration, SECTOR_BYTES } from '../parse';

export interface CbtChangesArgs extends GlobalArgs {
  device: string;
  since: string;
  generation?: string;
}

export default defineCommand<CbtChangesArgs>({
  command: 'changes <device>',
  describe: 'List sector ranges changed since snapshot number N',
  builder: (y) =>
    y
      .positional('device', { type: 'string', demandOption: true, describe: 'a tracked block device' })
      .option('since', { type: 'string', demandOption: true, requiresArg: true, describe: 'changes_number recorded by the previous backup (0-255)' })
      .option('generation', { type: 'string', requiresArg: true, describe: 'generation_id recorded by the previous backup; refuse if it changed' })
      .example('$0 cbt changes /dev/sdb1 --since 3 --generation 0b6e8f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b', 'what to copy for an incremental backup'),
  exitCodes: [0, 2, 3, 4, 5, 9],
  async run(ctx, argv) {
    const since = parseCount(argv.since, '--since changes number', 'expected the changes_number of a previous backup, 0-255 (see blksnap cbt info)');
    if (since > 255) throw new UsageError(`invalid --since changes number "${argv.since}": must be 0-255`, { hint: 'the kernel counts snapshots in one byte (see blksnap cbt info)' });
    const generation = argv.generation === undefined ? undefined : parseGeneration(argv.generation);
    const kernel = await ctx.kernel();
    const device = await ctx.resolveDevice(argv.device);
    const client = kernel.device(device);
    const info = await client.cbtInfo();
    if (generation !== undefined && generation !== info.generationId.toLowerCase()) {
      throw new IncrementalImpossibleError(`${device}: change tracking generation changed (recorded ${generation}, now ${info.generationId})`, {
        path: device,
        hint: 'the tracker was reset (reboot, module reload, capacity change or 255 snapshots); make a full backup',
      });
    }
    if (since > info.changesNumber) {
      throw new IncrementalImpossibleError(`${device}: --since ${since} is newer than the tracker's changes number ${info.changesNumber}`, {
        path: device,
        hint: 'the tracker was reset or this is another device; make a full backup',
      });
    }
    const { changedRanges, totalLength } = await import('../../cbt');
    const map = await client.readCbtMap(info);
    const ranges = changedRanges(map, since, info.blockSize, info.capacity);
    const sectors = ranges.map((r) => ({ offset: Math.floor(r.offset / SECTOR_BYTES), count: Math.ceil(r.length / SECTOR_BYTES) }));
    const changedBytes = totalLength(ranges);
    if (ctx.out.json) {
      return ctx.out.data({
        device,
        generation_id: info.generationId,
        since,
        changes_number: info.changesNumber,
        block_size: info.blockSize,
        device_capacity: info.capacity,
        changed_bytes: changedBytes,
        ranges: sectors,
      });
    }
    for (const r of sectors) ctx.out.text(`${r.offset}:${r.count}`);
    ctx.out.info(`${device}: ${sectors.length} range(s), ${changedBytes} bytes changed since snapshot number ${since} (now ${info.changesNumber}, generation ${info.generationId})`);
  },
});
