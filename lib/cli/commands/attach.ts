/**
 * `blksnap attach DEVICE...` (also the reference form `attach --device D`) —
 * attach the blksnap filter to each device, which starts change tracking.
 * Every device is checked first; if one is bad, none is attached.
 *
 * Text: one line per device, `DEVICE: attached` or `DEVICE: already attached`
 * (reference form: `Attached successfully` / `Already was attached`).
 * JSON (stdout): { "devices": [ { "device": string, "already_attached": boolean } ] }
 * Exit status: 0; 2 bad device argument; 3 no module; 4 not root; 5 device not found; 6 another filter attached.
 */
import { defineCommand } from '../command';
import { devicesOf, resolveAll, withDevices } from './devices';
import type { DeviceArgs } from './devices';

export default defineCommand<DeviceArgs>({
  command: 'attach [devices..]',
  describe: 'Start change tracking on block devices (attach the blksnap filter)',
  builder: (y) =>
    withDevices(y, 'block devices to track')
      .example('$0 attach /dev/sdb1 /dev/sdc', 'track two devices')
      .example('$0 attach --device /dev/sdb1', 'reference-tool form'),
  exitCodes: [0, 2, 3, 4, 5, 6],
  async run(ctx, argv) {
    const args = devicesOf(argv, 'attach');
    const kernel = await ctx.kernel();
    const paths = await resolveAll((a) => ctx.resolveDevice(a), args);
    const results: { device: string; already_attached: boolean }[] = [];
    for (const path of paths) {
      const r = await kernel.device(path).attach();
      results.push({ device: path, already_attached: r.alreadyAttached });
      if (ctx.out.json) continue;
      if (argv.device?.length && !argv.devices?.length) ctx.out.say(r.alreadyAttached ? 'Already was attached' : 'Attached successfully');
      else ctx.out.say(`${path}: ${r.alreadyAttached ? 'already attached' : 'attached'}`);
    }
    if (ctx.out.json) ctx.out.data({ devices: results });
  },
});
