/**
 * `blksnap detach DEVICE... [--force]` (also `detach --device D`) — stop
 * change tracking. Refuses a device that is in a snapshot: on the real
 * module a detach then silently stops copy-on-write while the image stays
 * (blksnap-abi.md §7). `--force` detaches anyway. All devices are checked
 * before any is detached.
 *
 * JSON (stdout): { "devices": [ { "device": string, "detached": true } ] }
 * Exit status: 0; 2 bad argument; 3 no module; 4 not root; 5 not found or not attached; 6 device in a snapshot.
 */
import { BusyError } from '../../errors';
import { defineCommand } from '../command';
import { devicesOf, resolveAll, withDevices } from './devices';
import type { DeviceArgs } from './devices';

interface DetachArgs extends DeviceArgs {
  force?: boolean;
}

export default defineCommand<DetachArgs>({
  command: 'detach [devices..]',
  describe: 'Stop change tracking on block devices (detach the blksnap filter)',
  builder: (y) =>
    withDevices(y, 'block devices to stop tracking')
      .option('force', { type: 'boolean', describe: 'detach even if the device is in a snapshot (its image stops being a snapshot)' })
      .example('$0 detach /dev/sdb1', 'stop tracking; the next backup of it will be a full one')
      .example('$0 detach --device /dev/sdb1', 'reference-tool form'),
  exitCodes: [0, 2, 3, 4, 5, 6],
  async run(ctx, argv) {
    const args = devicesOf(argv, 'detach');
    const kernel = await ctx.kernel();
    const paths = await resolveAll((a) => ctx.resolveDevice(a), args);
    if (!argv.force) {
      // Check every device before detaching any, so a refusal changes nothing.
      // SNAPSHOTINFO answers 0 for any tracked device, so an image name is what
      // shows the device is in a taken snapshot; the client's own detach check
      // (records, untaken snapshots) then runs per device.
      for (const path of paths) {
        const info = await kernel.device(path).snapshotInfo().catch(() => null);
        if (info && info.imageName !== '') {
          throw new BusyError(`${path}: device is in a snapshot (image ${info.imagePath ?? info.imageName}); detaching it would silently stop copy-on-write for its image`, {
            path,
            hint: 'destroy the snapshot first (blksnap snapshot list), or use --force',
          });
        }
      }
    }
    for (const path of paths) {
      await kernel.device(path).detach({ force: !!argv.force });
      ctx.out.say(`${path}: detached`);
    }
    if (ctx.out.json) ctx.out.data({ devices: paths.map((device) => ({ device, detached: true })) });
  },
});
