/**
 * `blksnap snapshot info DEVICE` (also `snapshot_info --device D [--field F]`)
 * — the state of a device's snapshot image: the kernel's error code (0, or a
 * negative errno: -28 = overflowed its difference storage) and the image path.
 *   error_code=0
 *   image=/dev/blksnap-7-0
 *
 * JSON (stdout): { "device": string, "error_code": n, "image_name": string, "image": string | null }
 * Exit status: 0; 2; 3; 4; 5 device in no snapshot; 8 the snapshot overflowed or is corrupted (error_code != 0).
 */
import { SnapshotOverflowError } from '../../errors';
import type { SnapshotInfo } from '../../kernel/types';
import { defineCommand } from '../command';
import type { CliContext, GlobalArgs } from '../context';

export interface SnapshotInfoArgs extends GlobalArgs {
  device: string;
}

export async function deviceSnapshotInfo(ctx: CliContext, deviceArg: string): Promise<{ device: string; info: SnapshotInfo }> {
  const kernel = await ctx.kernel();
  const device = await ctx.resolveDevice(deviceArg);
  return { device, info: await kernel.device(device).snapshotInfo() };
}

export function snapshotInfoDoc(device: string, info: SnapshotInfo) {
  return { device, error_code: info.errorCode, image_name: info.imageName, image: info.imagePath };
}

export default defineCommand<SnapshotInfoArgs>({
  command: 'info <device>',
  describe: "Show a device's snapshot image and error code",
  builder: (y) =>
    y
      .positional('device', { type: 'string', demandOption: true, describe: 'a device in a snapshot' })
      .example('$0 snapshot info /dev/sdb1', 'error_code=0, image=/dev/blksnap-8-17')
      .example('$0 snapshot info /dev/sdb1 --json | jq -r .image', 'just the image path'),
  exitCodes: [0, 2, 3, 4, 5, 8],
  async run(ctx, argv) {
    const { device, info } = await deviceSnapshotInfo(ctx, argv.device);
    if (ctx.out.json) ctx.out.data(snapshotInfoDoc(device, info));
    else {
      ctx.out.text(`error_code=${info.errorCode}`);
      ctx.out.text(`image=${info.imagePath ?? ''}`);
    }
    if (info.errorCode !== 0) {
      throw new SnapshotOverflowError(
        info.errorCode === -28
          ? `${device}: the snapshot overflowed its difference storage (error_code -28); its image is unusable`
          : `${device}: the snapshot is corrupted (error_code ${info.errorCode})`,
        { path: device, hint: 'destroy the snapshot and retry with a larger --limit or another difference storage' },
      );
    }
  },
});
