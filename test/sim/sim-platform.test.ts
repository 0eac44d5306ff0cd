/**
 * The simulated kernel's platform: device resolution, image paths, image
 * readers, flavour switching and the state directory default.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as defs from '../../ioctl-defs';
import { NotFoundError, ShortReadError, SyscallError, UsageError } from '../../lib/errors';
import { createSimPlatform, defaultSimDir, DEVICE_MAJOR } from '../../lib/kernel/sim';
import {
  attachedDevice, createSnapshot, destroy, errnoOf, filterCall, makeSim, snapshotAdd, snapshotInfo, take, type Sim,
} from './sim-helpers';

let sim: Sim;
beforeEach(async () => {
  sim = await makeSim('upstream');
});
afterEach(() => sim.cleanup());

test('resolveDevice: canonical path, fake major:minor, size, stable id, parent; clear errors naming the argument', async () => {
  const disk = path.join(sim.dir, 'disk.img');
  const part = path.join(sim.dir, 'part1.img');
  await sim.admin.createDevice(disk, 2 << 20);
  fs.writeFileSync(part, Buffer.alloc(1000 * 512 + 100));
  await sim.admin.addDevice(part, { parent: disk });
  const link = path.join(sim.dir, 'by-id-link');
  fs.symlinkSync(part, link);
  const id = await sim.platform.resolveDevice(link);
  expect(id).toEqual({
    path: fs.realpathSync(part), major: DEVICE_MAJOR, minor: 1, size: 512000n,
    stableId: expect.stringMatching(/^[0-9a-f-]{36}$/), parent: fs.realpathSync(disk),
  });
  expect((await sim.platform.resolveDevice(part)).stableId).toBe(id.stableId);
  const any = path.join(sim.dir, 'any.img');
  fs.writeFileSync(any, Buffer.alloc(4096));
  expect((await sim.platform.resolveDevice(any)).minor).toBe(2);
  await expect(sim.platform.resolveDevice(sim.dir)).rejects.toThrow(UsageError);
  await expect(sim.platform.resolveDevice(sim.dir)).rejects.toThrow(sim.dir);
  const missing = path.join(sim.dir, 'nope.img');
  await expect(sim.platform.resolveDevice(missing)).rejects.toThrow(NotFoundError);
  await expect(sim.platform.resolveDevice(missing)).rejects.toThrow(missing);
});

test('deviceOfPath: the device itself, or the device mounted where the path is; else null', async () => {
  const dev = path.join(sim.dir, 'fs.img');
  await sim.admin.createDevice(dev, 1 << 20);
  const mnt = path.join(sim.dir, 'mnt');
  fs.mkdirSync(path.join(mnt, 'sub'), { recursive: true });
  await sim.admin.addDevice(dev, { mountpoint: mnt });
  expect((await sim.platform.deviceOfPath(dev))!.path).toBe(fs.realpathSync(dev));
  expect((await sim.platform.deviceOfPath(path.join(mnt, 'sub', 'not-yet-created')))!.path).toBe(fs.realpathSync(dev));
  expect(await sim.platform.deviceOfPath(path.join(sim.dir, 'elsewhere'))).toBeNull();
  expect(await sim.platform.deviceOfPath(mnt + '-other/x')).toBeNull();
});

test('image paths and readers: waits for the name, EINVAL on misaligned direct reads, EOF after DESTROY', async () => {
  await expect(sim.platform.imagePath('blksnap-7-9', 50)).rejects.toThrow(NotFoundError);
  await expect(sim.platform.imagePath('../state.json', 0)).rejects.toThrow(UsageError);
  const dev = await attachedDevice(sim, 'a.img', 1 << 20);
  await sim.admin.writeDevice(dev, 0, Buffer.alloc(1 << 20, 0x77));
  const storage = path.join(sim.dir, 'diff');
  fs.mkdirSync(storage);
  const id = createSnapshot(sim, storage, 4096n);
  snapshotAdd(sim, dev, id);
  take(sim, id);
  const p = await sim.platform.imagePath(snapshotInfo(sim, dev).image, 0);
  expect(path.dirname(p)).toBe(path.join(sim.platform.simDir, 'dev'));
  const direct = await sim.platform.openImage(p, { direct: true });
  expect([direct.direct, direct.alignment, direct.size]).toEqual([true, 512, 1n << 20n]);
  const buf = Buffer.alloc(4096);
  await expect(direct.read(buf, 100, 0n)).rejects.toThrow(SyscallError);
  await direct.read(buf, 4096, 4096n);
  expect(buf.every((b) => b === 0x77)).toBe(true);
  await expect(direct.read(buf, 4096, (1n << 20n) - 512n)).rejects.toThrow(ShortReadError);
  destroy(sim, id);
  expect(fs.existsSync(p)).toBe(false);
  await expect(direct.read(buf, 4096, 0n)).rejects.toThrow(ShortReadError);
  await direct.close();
  // A device file opened as a plain block device.
  const plain = await sim.platform.openImage(dev, {});
  await plain.read(buf, 4096, 0n);
  expect(buf[0]).toBe(0x77);
  await plain.close();
});

test('one flavour at a time: the other flavour\'s control device is missing while trackers exist', async () => {
  const dev = path.join(sim.dir, 'a.img');
  await sim.admin.createDevice(dev, 1 << 20);
  const standalone = createSimPlatform({ simDir: sim.platform.simDir, flavour: 'standalone' });
  // Nothing loaded yet: the module may be reloaded as the other flavour.
  const fd = standalone.transport.open('/dev/veeamblksnap', { access: 'read' });
  standalone.transport.close(fd);
  expect((await sim.admin.state()).flavour).toBe('standalone');
  filterCall(sim, dev, 'attach'); // upstream claims it back, then holds a tracker
  expect((await sim.admin.state()).flavour).toBe('upstream');
  let err: unknown;
  try {
    standalone.transport.open('/dev/veeamblksnap', { access: 'read' });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SyscallError);
  expect((err as SyscallError).errno).toBe('ENOENT');
  expect((err as SyscallError).hint).toMatch(/upstream/);
  const v = Buffer.alloc(8);
  expect(sim.platform.transport.ioctl(sim.control, defs.IOCTL_BLKSNAP_VERSION, v, sim.platform.transport.userMemory())).toBe(0);
  await sim.admin.reloadModule();
  expect(errnoOf(() => snapshotInfo(sim, dev))).toBe('ENOENT');
  const fd2 = standalone.transport.open('/dev/veeamblksnap', { access: 'read' });
  standalone.transport.close(fd2);
});

test('BLKGETSIZE64 and BLKSSZGET answer on device fds; unknown fds are EBADF', () => {
  const dev = path.join(sim.dir, 'a.img');
  fs.writeFileSync(dev, Buffer.alloc(3 * 512 + 7));
  const t = sim.platform.transport;
  const fd = t.open(dev, { access: 'read' });
  const size = Buffer.alloc(8);
  t.ioctl(fd, defs.BLKGETSIZE64, size, t.userMemory());
  expect(size.readBigUInt64LE(0)).toBe(1536n);
  const ssz = Buffer.alloc(4);
  t.ioctl(fd, defs.BLKSSZGET, ssz, t.userMemory());
  expect(ssz.readUInt32LE(0)).toBe(512);
  t.close(fd);
  expect(errnoOf(() => t.ioctl(fd, defs.BLKSSZGET, ssz, t.userMemory()))).toBe('EBADF');
  expect(t.pathOf(sim.control)).toBe('/dev/blksnap-control');
});

test('defaultSimDir: $BLKSNAP_SIM_DIR, else $XDG_RUNTIME_DIR/blksnap-sim, else <tmp>/blksnap-sim-<uid>', () => {
  expect(defaultSimDir({ BLKSNAP_SIM_DIR: '/x/y', XDG_RUNTIME_DIR: '/run/user/1' })).toBe('/x/y');
  expect(defaultSimDir({ XDG_RUNTIME_DIR: '/run/user/1' })).toBe('/run/user/1/blksnap-sim');
  expect(defaultSimDir({})).toMatch(new RegExp(`/blksnap-sim-${process.getuid!()}$`));
});
