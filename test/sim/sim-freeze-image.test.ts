/**
 * The frozen image made at TAKE: exactly the device content at that moment,
 * whether the device file is dense (plain in-kernel copy) or sparse (sparse
 * copy, holes kept); and the image reader's asynchronous reads: many in
 * flight at once, EOF for a read that DESTROY overtakes, close waits.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ShortReadError } from '../../lib/errors';
import { attachedDevice, createSnapshot, destroy, filterCall, makeSim, readImage, snapshotAdd, snapshotInfo, take, type Sim } from './sim-helpers';

const MiB = 1 << 20;
let sim: Sim;
beforeEach(async () => {
  sim = await makeSim('upstream');
});
afterEach(() => sim.cleanup());

async function takeSnapshot(dev: string): Promise<{ id: Buffer; image: string }> {
  const storage = path.join(sim.dir, 'diff');
  fs.mkdirSync(storage, { recursive: true });
  const id = createSnapshot(sim, storage, 1n << 20n);
  snapshotAdd(sim, dev, id);
  take(sim, id);
  return { id, image: snapshotInfo(sim, dev).image };
}

test('dense device: the image is the device content at TAKE, later writes do not show', async () => {
  const dev = await attachedDevice(sim, 'dense.img', 4 * MiB);
  const before = crypto.randomBytes(4 * MiB);
  await sim.admin.writeDevice(dev, 0, before);
  expect(fs.statSync(dev).blocks * 512).toBeGreaterThanOrEqual(4 * MiB); // really the dense case
  const { id, image } = await takeSnapshot(dev);
  await sim.admin.writeDevice(dev, 64 * 1024, crypto.randomBytes(MiB));
  const got = await readImage(sim, image);
  expect(got.length).toBe(before.length);
  expect(got.equals(before)).toBe(true);
  const file = await sim.platform.imagePath(image, 0);
  expect(fs.statSync(file).size).toBe(4 * MiB);
  destroy(sim, id);
});

test('dense device whose size is not a whole number of sectors: the image stops at the last whole sector', async () => {
  const dev = path.join(sim.dir, 'odd.img');
  const data = crypto.randomBytes(2 * MiB + 700);
  fs.writeFileSync(dev, data);
  await sim.admin.addDevice(dev, {});
  const real = fs.realpathSync(dev);
  filterCall(sim, real, 'attach');
  const { image } = await takeSnapshot(real);
  const got = await readImage(sim, image);
  expect(got.length).toBe(2 * MiB + 512);
  expect(got.equals(data.subarray(0, 2 * MiB + 512))).toBe(true);
});

test('sparse device: the image keeps its holes and its content', async () => {
  const dev = await attachedDevice(sim, 'sparse.img', 64 * MiB);
  const data = crypto.randomBytes(64 * 1024);
  await sim.admin.writeDevice(dev, 5 * MiB, data);
  const { image } = await takeSnapshot(dev);
  const file = await sim.platform.imagePath(image, 0);
  expect(fs.statSync(file).blocks * 512).toBeLessThan(MiB);
  const got = await readImage(sim, image);
  const want = Buffer.alloc(64 * MiB);
  data.copy(want, 5 * MiB);
  expect(got.equals(want)).toBe(true);
});

test('many reads in flight on one image reader each get their own piece', async () => {
  const dev = await attachedDevice(sim, 'dense.img', 4 * MiB);
  const content = crypto.randomBytes(4 * MiB);
  await sim.admin.writeDevice(dev, 0, content);
  const { image } = await takeSnapshot(dev);
  const reader = await sim.platform.openImage(await sim.platform.imagePath(image, 0), { direct: true });
  const piece = 256 * 1024;
  const bufs = Array.from({ length: 16 }, () => Buffer.alloc(piece));
  await Promise.all(bufs.map((b, i) => reader.read(b, piece, BigInt(i * piece))));
  expect(Buffer.concat(bufs).equals(content)).toBe(true);
  await reader.close();
});

test('DESTROY overtaking reads in flight: they end in EOF (short read), and close waits for them', async () => {
  const dev = await attachedDevice(sim, 'dense.img', 4 * MiB);
  await sim.admin.writeDevice(dev, 0, crypto.randomBytes(4 * MiB));
  const { id, image } = await takeSnapshot(dev);
  const reader = await sim.platform.openImage(await sim.platform.imagePath(image, 0), {});
  const buf = Buffer.alloc(4 * MiB);
  const pending = reader.read(buf, buf.length, 0n);
  destroy(sim, id); // runs before the thread pool's read is handed back
  await expect(pending).rejects.toThrow(ShortReadError);
  await expect(reader.read(buf, 4096, 0n)).rejects.toThrow(ShortReadError);
  await reader.close();
});

test('close() during reads in flight: they complete with their data, then the file is closed', async () => {
  const dev = await attachedDevice(sim, 'dense.img', 4 * MiB);
  const content = crypto.randomBytes(4 * MiB);
  await sim.admin.writeDevice(dev, 0, content);
  const { image } = await takeSnapshot(dev);
  const reader = await sim.platform.openImage(await sim.platform.imagePath(image, 0), {});
  const a = Buffer.alloc(2 * MiB);
  const b = Buffer.alloc(2 * MiB);
  const reads = Promise.all([reader.read(a, a.length, 0n), reader.read(b, b.length, BigInt(2 * MiB))]);
  const closes = Promise.all([reader.close(), reader.close()]);
  await reads;
  await closes;
  expect(Buffer.concat([a, b]).equals(content)).toBe(true);
  await expect(reader.read(a, 4096, 0n)).rejects.toThrow(/EBADF/);
});
