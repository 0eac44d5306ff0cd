/**
 * The real platform on this machine's kernel, with loop devices: device
 * resolution and identity from sysfs, the filesystem's device of a path,
 * image reads (O_DIRECT, exact lengths, short reads), FIEMAP against
 * filefrag and against the device's bytes, and the messages a user gets on
 * a kernel without blksnap (this VM: no filter support, no module).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as abi from '../../ioctl-defs';
import { ModuleMissingError, NotFoundError, ShortReadError, UnsupportedKernelError, UsageError } from '../../lib/errors';
import { KernelTransport } from '../../lib/ioctl/transport';
import { createKernel } from '../../lib/kernel';
import { extentsToSectorRanges, fileDirtyRanges, fileExtents, fileSectorRanges } from '../../lib/kernel/fiemap';
import { RealPlatform, waitForImageNode } from '../../lib/kernel/real-platform';
import { cleanupAll, createLoopDevice, mountExt4 } from '../helpers/loop';
import type { LoopDevice } from '../helpers/loop';
import { describeAsRoot } from '../helpers/root';

const noBlksnap = !fs.existsSync('/dev/blksnap-control') && !fs.existsSync('/dev/veeamblksnap');

afterAll(() => cleanupAll());

describeAsRoot('real platform: devices', () => {
  const platform = new RealPlatform('upstream');
  let loop: LoopDevice;
  let tmp: string;
  beforeAll(() => {
    loop = createLoopDevice({ sizeBytes: 32 * 1024 * 1024 });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kernel-real-'));
  });
  afterAll(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
    loop.cleanup();
  });

  test('resolveDevice: a loop device, identity from sysfs', async () => {
    const id = await platform.resolveDevice(loop.path);
    const [maj, min] = fs.readFileSync(`/sys/block/${path.basename(loop.path)}/dev`, 'utf8').trim().split(':').map(Number);
    expect(id).toMatchObject({ path: loop.path, major: maj, minor: min, size: BigInt(loop.sizeBytes), parent: null });
  });

  test('resolveDevice: a symlink (like /dev/disk/by-id) resolves to the canonical /dev name', async () => {
    const link = path.join(tmp, 'by-id-link');
    fs.symlinkSync(loop.path, link);
    const twice = path.join(tmp, 'link-to-link');
    fs.symlinkSync(link, twice);
    expect((await platform.resolveDevice(link)).path).toBe(loop.path);
    expect((await platform.resolveDevice(twice)).path).toBe(loop.path);
  });

  test('resolveDevice: a second device node elsewhere maps to the kernel name', async () => {
    const st = fs.statSync(loop.path);
    const node = path.join(tmp, 'node');
    execFileSync('mknod', [node, 'b', String(Math.floor(st.rdev / 256) & 0xfff), String(st.rdev & 0xff)]);
    expect((await platform.resolveDevice(node)).path).toBe(loop.path);
  });

  test.each([
    ['a directory', (): string => tmp, UsageError, /is a directory, not a block device$/],
    ['a regular file', (): string => loop.backingFile, UsageError, /is a regular file, not a block device$/],
    ['a character device', (): string => '/dev/null', UsageError, /is a character device, not a block device$/],
    ['a missing path', (): string => path.join(tmp, 'missing'), NotFoundError, /: no such device$/],
  ] as const)('resolveDevice refuses %s with one line naming the argument', async (_what, arg, cls, text) => {
    const err = await platform.resolveDevice(arg()).catch((e) => e);
    expect(err).toBeInstanceOf(cls);
    expect(err.message.startsWith(`${arg()}: `)).toBe(true);
    expect(err.message).toMatch(text);
    expect(err.message).not.toContain('\n');
  });

  test('resolveDevice: a partition knows its parent disk', async () => {
    const disk = createLoopDevice({ sizeBytes: 16 * 1024 * 1024, partscan: true });
    try {
      // Add partition 1 (1 MiB .. 9 MiB) with BLKPG, as fdisk would.
      const t = new KernelTransport();
      const fd = t.open(disk.path, { access: 'read' });
      try {
        const mem = t.userMemory();
        const part = abi.blkpg_partition.encode({ start: 1n << 20n, length: 8n << 20n, pno: 1 });
        const arg = abi.blkpg_ioctl_arg.encode({ op: abi.BLKPG_OP.ADD_PARTITION, flags: 0, datalen: part.length, data: mem.pin(part) });
        t.ioctl(fd, abi.BLKPG, arg, mem);
      } finally {
        t.close(fd);
      }
      const partPath = `${disk.path}p1`;
      for (let i = 0; i < 100 && !fs.existsSync(partPath); i++) await new Promise((r) => setTimeout(r, 20));
      const id = await platform.resolveDevice(partPath);
      expect(id).toMatchObject({ path: partPath, parent: disk.path, size: 8n << 20n });
    } finally {
      disk.cleanup();
    }
  });

  test('deviceOfPath: a file on an ext4 mount, the device itself, and tmpfs', async () => {
    const fsLoop = createLoopDevice({ sizeBytes: 32 * 1024 * 1024 });
    const mount = mountExt4(fsLoop);
    try {
      fs.writeFileSync(path.join(mount.mountpoint, 'f'), 'x');
      expect((await platform.deviceOfPath(path.join(mount.mountpoint, 'f')))?.path).toBe(fsLoop.path);
      // A path that does not exist yet: its nearest existing directory decides.
      expect((await platform.deviceOfPath(path.join(mount.mountpoint, 'not', 'yet')))?.path).toBe(fsLoop.path);
      expect((await platform.deviceOfPath(fsLoop.path))?.path).toBe(fsLoop.path);
      if (fs.existsSync('/dev/shm')) expect(await platform.deviceOfPath('/dev/shm')).toBeNull();
    } finally {
      mount.cleanup();
      fsLoop.cleanup();
    }
  });

  test('imagePath: an existing node is returned; a missing one fails clearly after the timeout', async () => {
    await expect(waitForImageNode(path.basename(loop.path), 100)).resolves.toBe(loop.path);
    const err = await waitForImageNode('blksnap-no-such-image', 100).catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('image /dev/blksnap-no-such-image did not appear within 100 ms');
    await expect(waitForImageNode('../etc/passwd', 100)).rejects.toThrow(UsageError);
  });

  test('openImage: O_DIRECT reads of any offset and length equal the device bytes', async () => {
    const content = fillDevice(loop.path, loop.sizeBytes, 4096);
    const reader = await platform.openImage(loop.path, {});
    try {
      expect(reader.direct).toBe(true);
      expect(reader.alignment).toBe(512);
      expect(reader.size).toBe(BigInt(loop.sizeBytes));
      for (const [pos, len] of [[0, 4096], [1, 100], [4095, 8193], [loop.sizeBytes - 700, 700], [12345, 1 << 20]]) {
        const buf = Buffer.alloc(len + 3).subarray(3); // deliberately misaligned in memory
        await reader.read(buf, len, BigInt(pos));
        expect(buf.subarray(0, len).equals(content.subarray(pos, pos + len))).toBe(true);
      }
      await expect(reader.read(Buffer.alloc(1024), 1024, BigInt(loop.sizeBytes - 512))).rejects.toThrow(ShortReadError);
    } finally {
      await reader.close();
    }
  });

  test('openImage: concurrent unaligned O_DIRECT reads each get their own bytes', async () => {
    const content = fillDevice(loop.path, loop.sizeBytes, 4);
    const reader = await platform.openImage(loop.path, {});
    try {
      expect(reader.direct).toBe(true);
      // Misaligned positions force the bounce path; all reads are in flight at once.
      const reads = Array.from({ length: 16 }, (_, k) => ({ pos: 1 + k * 65537, len: 40000 + k * 3 }));
      const bufs = reads.map((r) => Buffer.alloc(r.len + 1).subarray(1));
      await Promise.all(reads.map((r, k) => reader.read(bufs[k], r.len, BigInt(r.pos))));
      reads.forEach((r, k) => expect(bufs[k].subarray(0, r.len).equals(content.subarray(r.pos, r.pos + r.len))).toBe(true));
    } finally {
      await reader.close();
    }
  });

  test('openImage: a file that shrinks under the reader gives ShortReadError, not EOF', async () => {
    const file = path.join(tmp, 'shrinks.img');
    fs.writeFileSync(file, Buffer.alloc(1 << 20, 7));
    const reader = await platform.openImage(file, { direct: false });
    try {
      fs.truncateSync(file, 4096);
      const err = await reader.read(Buffer.alloc(8192), 8192, 0n).catch((e) => e);
      expect(err).toBeInstanceOf(ShortReadError);
      expect(err.message).toContain('short read: 4096 of 8192 bytes');
    } finally {
      await reader.close();
    }
  });
});

describeAsRoot('real platform: FIEMAP', () => {
  let loop: LoopDevice;
  let mountpoint: string;
  let unmount: () => void;
  beforeAll(() => {
    loop = createLoopDevice({ sizeBytes: 64 * 1024 * 1024 });
    const m = mountExt4(loop);
    mountpoint = m.mountpoint;
    unmount = () => m.cleanup();
  });
  afterAll(() => {
    unmount();
    loop.cleanup();
  });

  function filefragSectors(file: string): { logical: bigint; physical: bigint; count: bigint }[] {
    const out = execFileSync('filefrag', ['-v', '-b512', file], { encoding: 'utf8' });
    const rows: { logical: bigint; physical: bigint; count: bigint }[] = [];
    for (const line of out.split('\n')) {
      const m = /^\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+):/.exec(line);
      if (m) rows.push({ logical: BigInt(m[1]), physical: BigInt(m[2]), count: BigInt(m[3]) });
    }
    return rows;
  }

  test('fileExtents agrees with filefrag and points at the file\'s bytes on the device', async () => {
    const file = path.join(mountpoint, 'sparse.bin');
    const chunkA = Buffer.alloc(192 * 1024);
    const chunkB = Buffer.alloc(128 * 1024);
    for (let i = 0; i < chunkA.length; i++) chunkA[i] = (i * 7) & 0xff;
    for (let i = 0; i < chunkB.length; i++) chunkB[i] = (i * 13 + 1) & 0xff;
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, chunkA, 0, chunkA.length, 0);
    fs.writeSync(fd, chunkB, 0, chunkB.length, 640 * 1024); // a hole in between
    fs.fsyncSync(fd);
    fs.closeSync(fd);

    const extents = fileExtents(file);
    expect(extents.length).toBeGreaterThanOrEqual(2);
    const ours = extents.map((e) => ({ logical: e.logical / 512n, physical: e.physical / 512n, count: e.length / 512n }));
    expect(ours).toEqual(filefragSectors(file));

    // Independent check: the device holds the file's bytes at those offsets.
    execFileSync('sync');
    const dev = fs.openSync(loop.path, 'r');
    try {
      const fileBytes = fs.readFileSync(file);
      for (const e of extents) {
        const len = Number(e.length);
        const onDevice = Buffer.alloc(len);
        fs.readSync(dev, onDevice, 0, len, Number(e.physical));
        const inFile = fileBytes.subarray(Number(e.logical), Number(e.logical) + len);
        expect(onDevice.subarray(0, inFile.length).equals(inFile)).toBe(true);
      }
    } finally {
      fs.closeSync(dev);
    }
  });

  test('fileSectorRanges checks the device and merges adjacent extents', async () => {
    const file = path.join(mountpoint, 'plain.bin');
    fs.writeFileSync(file, Buffer.alloc(100 * 1024, 1));
    const platform = new RealPlatform('upstream');
    const device = await platform.resolveDevice(loop.path);
    const ranges = fileSectorRanges(file, device, await platform.deviceOfPath(file));
    const total = ranges.reduce((s, r) => s + r.count, 0n);
    expect(total).toBe(200n); // 100 KiB in 512-byte sectors, ext4 4 KiB blocks
    for (const r of ranges) expect(r.offset + r.count).toBeLessThanOrEqual(device.size / 512n);
    const other = createLoopDevice({ sizeBytes: 8 * 1024 * 1024 });
    try {
      const otherId = await platform.resolveDevice(other.path);
      expect(() => fileSectorRanges(file, otherId, device)).toThrow(new RegExp(`the file is not on ${other.path}`));
    } finally {
      other.cleanup();
    }
  });

  test('fileDirtyRanges: through a real-kernel Kernel; refused on the simulated kernel', async () => {
    const file = path.join(mountpoint, 'dirty.bin');
    fs.writeFileSync(file, Buffer.alloc(8192, 2));
    const kernel = await createKernel({ kernel: 'upstream' });
    const ranges = await fileDirtyRanges(kernel, file, loop.path);
    expect(ranges.reduce((s, r) => s + r.count, 0n)).toBe(16n);
    const simDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fiemap-sim-'));
    try {
      const sim = await createKernel({ kernel: 'sim', simDir });
      await expect(fileDirtyRanges(sim, file, loop.path)).rejects.toThrow(/--file needs a real kernel/);
    } finally {
      fs.rmSync(simDir, { recursive: true, force: true });
    }
  });

  test('extentsToSectorRanges rounds outwards and merges', () => {
    expect(extentsToSectorRanges([
      { physical: 4096n, length: 4096n },
      { physical: 8192n, length: 100n },
      { physical: 1000n, length: 10n },
    ])).toEqual([{ offset: 1n, count: 1n }, { offset: 8n, count: 9n }]);
  });
});

describeAsRoot('real kernel without blksnap (this machine)', () => {
  const maybe = noBlksnap ? test : test.skip;
  if (!noBlksnap) process.stderr.write('skipped: kernel-real "without blksnap" tests: a blksnap module is loaded here\n');

  maybe('attach on a loop device with the kernel forced to upstream: no filter support', async () => {
    const loop = createLoopDevice({ sizeBytes: 8 * 1024 * 1024 });
    try {
      const kernel = await createKernel({ kernel: 'upstream' });
      const err = await kernel.device(loop.path).attach().catch((e) => e);
      expect(err).toBeInstanceOf(UnsupportedKernelError);
      expect(err.message).toMatch(/^this kernel has no block device filter support \(BLKFILTER_ATTACH: (ENOTTY|EINVAL)\) — blksnap needs a kernel with the blksnap patches or the standalone module$/);
      expect(err.hint).toBeTruthy();
    } finally {
      loop.cleanup();
    }
  });

  maybe('the control device missing: ModuleMissingError naming it; auto detection names both', async () => {
    const kernel = await createKernel({ kernel: 'upstream' });
    const err = await kernel.control().version().catch((e) => e);
    expect(err).toBeInstanceOf(ModuleMissingError);
    expect(err.message).toBe('blksnap kernel module is not loaded (/dev/blksnap-control does not exist)');
    const standalone = await createKernel({ kernel: 'standalone' });
    const err2 = await standalone.control().version().catch((e) => e);
    expect(err2.message).toBe('blksnap kernel module is not loaded (none of /dev/veeamblksnap, /dev/bdevfilter exists)');
    const auto = await createKernel({ kernel: 'auto' }).catch((e) => e);
    expect(auto).toBeInstanceOf(ModuleMissingError);
    expect(auto.message).toContain('/dev/blksnap-control');
    expect(auto.message).toContain('/dev/veeamblksnap');
    expect(auto.message).toContain('/dev/bdevfilter');
    expect(auto.hint).toContain('--kernel sim');
  });
});

/** Writes each byte offset that is a multiple of `stride` into the device at that offset (u32le); returns the content. */
function fillDevice(device: string, size: number, stride: number): Buffer {
  const content = Buffer.alloc(size);
  for (let i = 0; i < size; i += stride) content.writeUInt32LE(i, i);
  const fd = fs.openSync(device, 'r+');
  try {
    fs.writeSync(fd, content, 0, content.length, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return content;
}
