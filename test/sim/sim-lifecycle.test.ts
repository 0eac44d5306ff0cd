/**
 * The life of one backup (blksnap-abi.md §5) on the simulated kernel, raw
 * ioctls through the real codecs, in both flavours.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as defs from '../../ioctl-defs';
import {
  attachedDevice, call, cbtInfo, cbtMap, createSnapshot, destroy, errnoOf, makeSim, readImage, snapshotAdd,
  snapshotInfo, take, type Sim,
} from './sim-helpers';

describe.each(['upstream', 'standalone'] as const)('simulated %s kernel: backup cycle', (flavour) => {
  let sim: Sim;
  beforeEach(async () => {
    sim = await makeSim(flavour);
  });
  afterEach(() => sim.cleanup());

  test('version, attach, create, add, take, info, read image, CBT map, destroy', async () => {
    const v = Buffer.alloc(defs.blksnap_version.size);
    expect(call(sim, sim.control, defs.IOCTL_BLKSNAP_VERSION, v)).toBe(0);
    expect(defs.blksnap_version.decode(v)).toEqual({ major: 7, minor: 0, revision: 0, build: 0 });

    const dev = await attachedDevice(sim, 'disk0.img', 1 << 20);
    const info0 = cbtInfo(sim, dev);
    expect(info0.changes_number).toBe(0);
    expect(info0.device_capacity).toBe(1n << 20n);
    expect(info0.block_size).toBe(4096);
    expect(info0.block_count).toBe(256);

    const before = Buffer.alloc(8192, 0xab);
    await sim.admin.writeDevice(dev, 655360 / 16, before);

    const storageDir = path.join(sim.dir, 'diffdir');
    fs.mkdirSync(storageDir);
    const id = createSnapshot(sim, storageDir, 1n << 16n);
    expect(snapshotAdd(sim, dev, id)).toBe(0);
    expect(snapshotInfo(sim, dev).image).toBe('');
    expect(take(sim, id)).toBe(0);

    const info = snapshotInfo(sim, dev);
    expect(info.error_code).toBe(0);
    const st = await sim.admin.state();
    const minor = st.devices.find((d) => d.path === dev)!.minor;
    expect(info.image).toBe(flavour === 'upstream' ? `blksnap-7-${minor}` : `veeamblksnapimg_7:${minor}`);

    // The image keeps the content of TAKE while the device changes.
    const atTake = fs.readFileSync(dev);
    await sim.admin.writeDevice(dev, 0, Buffer.alloc(4096, 0x11));
    fs.writeFileSync(dev, Buffer.alloc(4096, 0x22), { flag: 'r+' });
    const image = await readImage(sim, info.image);
    expect(image.equals(atTake)).toBe(true);

    const i1 = cbtInfo(sim, dev);
    expect(i1.changes_number).toBe(1);
    expect(i1.generation_id.b.equals(info0.generation_id.b)).toBe(true);
    const map = cbtMap(sim, dev);
    // The 8 KiB written at 40960 before TAKE: blocks 10 and 11, stamped 1; nothing else.
    expect([...map.keys()].filter((i) => map[i] !== 0)).toEqual([10, 11]);
    expect(map[10]).toBe(1);

    const imagePath = await sim.platform.imagePath(info.image, 0);
    expect(destroy(sim, id)).toBe(0);
    expect(fs.existsSync(imagePath)).toBe(false);
    expect(errnoOf(() => destroy(sim, id))).toBe('ENODEV');
    // Tracking continues: the writes made under the snapshot show at the next TAKE.
    const id2 = createSnapshot(sim, storageDir, 1n << 16n);
    snapshotAdd(sim, dev, id2);
    take(sim, id2);
    const map2 = cbtMap(sim, dev);
    expect(map2[0]).toBe(2);
    expect(cbtInfo(sim, dev).changes_number).toBe(2);
    destroy(sim, id2);
  });
});
