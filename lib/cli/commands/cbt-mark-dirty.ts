/**
 * `blksnap cbt mark-dirty DEVICE --range START:COUNT...` or
 * `blksnap cbt mark-dirty --file PATH` (also `markdirtyblock --device D
 * --ranges R... | --file PATH`) — mark sector ranges as changed, so the next
 * incremental backup copies them (use it after writing to a snapshot image,
 * which is writable). Ranges are 512-byte sectors; every range is checked
 * (count > 0, inside the device) before anything is sent, because the real
 * module marks blocks even for a range it then rejects (blksnap-abi.md §7).
 * `--file` marks the extents of a file on the device it lives on (FIEMAP).
 *
 * JSON (stdout): { "device": string, "ranges": [ { "offset": n, "count": n } ], "sectors": n }
 * Exit status: 0; 2 malformed or out-of-range range, no range; 3; 4; 5 device not found or not tracked.
 */
import { promises as fsp } from 'fs';
import { UsageError } from '../../errors';
import type { SectorRange } from '../../kernel/types';
import { defineCommand } from '../command';
import type { CliContext, GlobalArgs } from '../context';
import { parseRange } from '../parse';

export interface CbtMarkDirtyArgs extends GlobalArgs {
  device?: string;
  range?: string[];
  file?: string;
}

export async function markDirty(ctx: CliContext, deviceArg: string | undefined, rangeTexts: string[] | undefined, file: string | undefined): Promise<void> {
  if (file !== undefined && rangeTexts?.length) throw new UsageError('give --range or --file, not both', { hint: 'blksnap cbt mark-dirty DEVICE --range 2048:8' });
  let device: string;
  let ranges: SectorRange[];
  if (file !== undefined) {
    if (file.trim() === '') throw new UsageError('empty file name ""', { hint: 'blksnap cbt mark-dirty --file /mnt/data/changed.bin' });
    await fsp.stat(file); // a missing file is ENOENT (exit 5), before anything else
    const kernel = await ctx.kernel();
    const fileDevice = await kernel.deviceOfPath(file);
    const identity = deviceArg !== undefined ? await kernel.resolveDevice(deviceArg) : fileDevice;
    if (!identity) {
      throw new UsageError(`${file}: cannot tell which block device holds this file`, { path: file, hint: 'name the device: blksnap cbt mark-dirty DEVICE --file PATH' });
    }
    const { fileSectorRanges } = await import('../../kernel/fiemap');
    device = identity.path;
    ranges = fileSectorRanges(file, identity, fileDevice);
    if (ranges.length === 0) ctx.out.info(`${file}: no allocated extents; nothing to mark`);
  } else {
    if (deviceArg === undefined) throw new UsageError('mark-dirty: no device given', { hint: 'blksnap cbt mark-dirty DEVICE --range START:COUNT' });
    if (!rangeTexts || rangeTexts.length === 0) throw new UsageError('mark-dirty: no --range given', { hint: 'blksnap cbt mark-dirty DEVICE --range 2048:8 (512-byte sectors), or --file PATH' });
    const parsed = rangeTexts.map((r) => parseRange(String(r)));
    const kernel = await ctx.kernel();
    const identity = await kernel.resolveDevice(deviceArg);
    device = identity.path;
    const sectors = identity.size / 512n;
    for (let i = 0; i < parsed.length; i++) {
      const r = parsed[i];
      if (r.offset + r.count > sectors) {
        throw new UsageError(`range "${rangeTexts[i]}" ends past the end of ${device} (${sectors} sectors)`, {
          path: device,
          hint: `ranges are START:COUNT in 512-byte sectors within 0..${sectors}`,
        });
      }
    }
    ranges = parsed;
  }
  const kernel = await ctx.kernel();
  if (ranges.length > 0) await kernel.device(device).markDirty(ranges);
  const total = ranges.reduce((s, r) => s + r.count, 0n);
  if (ctx.out.json) return ctx.out.data({ device, ranges, sectors: total });
  ctx.out.say(`${device}: ${ranges.length} range(s), ${total} sectors marked changed`);
}

export default defineCommand<CbtMarkDirtyArgs>({
  command: 'mark-dirty [device]',
  describe: 'Mark sector ranges (or a file) as changed for the next backup',
  builder: (y) =>
    y
      .positional('device', { type: 'string', describe: 'a tracked block device (not needed with --file)' })
      .option('range', { alias: 'r', type: 'string', array: true, requiresArg: true, describe: 'START:COUNT in 512-byte sectors (repeatable)' })
      .option('file', { alias: 'f', type: 'string', requiresArg: true, describe: 'mark the extents of this file on its device' })
      .example('$0 cbt mark-dirty /dev/sdb1 --range 0:8 --range 2048:16', 'two ranges')
      .example('$0 cbt mark-dirty --file /mnt/snap/etc/fstab', 'a file written through a snapshot image'),
  exitCodes: [0, 2, 3, 4, 5],
  run: (ctx, argv) => markDirty(ctx, argv.device, argv.range, argv.file),
});
