/**
 * The kernel client contract: one suite that any Kernel must pass, run on
 * the simulated kernel (test/sim/kernel-contract.test.ts, both flavours) and
 * meant for the real module (test/e2e, with loop devices). It only uses the
 * public Kernel interface plus a fixture that makes devices and writes to
 * them, so it cannot tell which kernel it runs on.
 */
import { BlksnapError, BusyError, NotFoundError, SyscallError, UsageError } from '../../lib/errors';
import type { IoctlDef } from '../../ioctl-defs';
import * as abi from '../../ioctl-defs';
import { SnapshotId, isOverflowEvent, kernelOnPlatform, newRecord } from '../../lib/kernel';
import type { Kernel, KernelPlatform } from '../../lib/kernel';
import type { IoctlTransport, UserMemory } from '../../lib/ioctl/types';

export interface KernelFixture {
  kernel: Kernel;
  /** The platform under `kernel`, to build kernels with a wrapped transport. */
  platform: KernelPlatform;
  recordsDir: string;
  /** A new device of `sizeBytes` (zero-filled); returns its canonical path. */
  makeDevice(sizeBytes: number): Promise<string>;
  /** A write through the block layer (copy-on-write and change tracking see it). */
  writeDevice(path: string, offset: number, data: Buffer): Promise<void>;
  readDevice(path: string, offset: number, length: number): Promise<Buffer>;
  /** A directory for difference storage that is on none of the test devices. */
  storageDir: string;
  /** A regular file path (not yet existing) for difference storage. */
  storageFile(name: string): string;
  /** A directory whose filesystem lives on `device`, or null if the fixture cannot make one. */
  dirOnDevice?(device: string): Promise<string | null>;
  /** Requests seen that would have damaged a real kernel (the sim records them); empty on real kernels. */
  hazards(): Promise<unknown[]>;
  cleanup(): Promise<void>;
}

const MiB = 1024 * 1024;

/** A transport that runs `before` ahead of each request (to change the world between two calls). */
function interceptingPlatform(platform: KernelPlatform, before: (request: IoctlDef, arg: Buffer) => void): KernelPlatform {
  const inner = platform.transport;
  const transport: IoctlTransport = {
    kind: inner.kind,
    open: (p, o) => inner.open(p, o),
    close: (fd) => inner.close(fd),
    pathOf: (fd) => inner.pathOf(fd),
    userMemory: () => inner.userMemory(),
    ioctl(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory) {
      before(request, arg);
      return inner.ioctl(fd, request, arg, memory);
    },
    ioctlAsync(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory) {
      before(request, arg);
      return inner.ioctlAsync(fd, request, arg, memory);
    },
  };
  return {
    kind: platform.kind,
    flavour: platform.flavour,
    transport,
    resolveDevice: (a) => platform.resolveDevice(a),
    deviceOfPath: (p) => platform.deviceOfPath(p),
    imagePath: (n, t) => platform.imagePath(n, t),
    openImage: (p, o) => platform.openImage(p, o),
  };
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

export function kernelContract(title: string, makeFixture: () => Promise<KernelFixture>): void {
  describe(title, () => {
    let fx: KernelFixture;
    let kernel: Kernel;
    const created: SnapshotId[] = [];

    beforeAll(async () => {
      fx = await makeFixture();
      kernel = fx.kernel;
    });

    afterEach(async () => {
      // Every test destroys what it created; this only catches failures.
      const control = kernel.control();
      for (const id of created.splice(0)) await control.destroySnapshot(id).catch(() => undefined);
      control.close();
    });

    afterAll(async () => {
      if (!fx) return;
      // The wrong-name DETACH corrupts the real module (§7): never sent.
      expect(await fx.hazards()).toEqual([]);
      await fx.cleanup();
    });

    async function create(limitBytes = 64 * MiB, storage?: string): Promise<SnapshotId> {
      const id = await kernel.control().createSnapshot(storage ?? fx.storageDir, BigInt(limitBytes / 512));
      created.push(id);
      return id;
    }

    async function attached(sizeBytes = 16 * MiB): Promise<string> {
      const dev = await fx.makeDevice(sizeBytes);
      await kernel.device(dev).attach();
      return dev;
    }

    test('version and moduleInfo', async () => {
      const control = kernel.control();
      const v = await control.version();
      expect(v.text).toBe(`${v.major}.${v.minor}.${v.revision}.${v.build}`);
      const mod = await control.moduleInfo();
      if (kernel.flavour === 'upstream') {
        expect(mod).toBeNull();
      } else {
        expect(mod).not.toBeNull();
        expect(typeof mod?.name).toBe('string');
      }
      control.close();
    });

    test('setLog: disabling always works where the request exists', async () => {
      const control = kernel.control();
      const supported = await control.setLog({ level: null, filePath: null, tzMinutesWest: 0 });
      expect(supported).toBe(kernel.flavour === 'standalone');
      control.close();
    });

    test('attach twice: the second reports alreadyAttached; CBT info right after attach', async () => {
      const dev = await fx.makeDevice(16 * MiB);
      await expect(kernel.device(dev).attach()).resolves.toEqual({ alreadyAttached: false });
      await expect(kernel.device(dev).attach()).resolves.toEqual({ alreadyAttached: true });
      const info = await kernel.device(dev).cbtInfo();
      expect(info).toMatchObject({ capacity: BigInt(16 * MiB), blockSize: 65536, blockCount: 256, changesNumber: 0 });
      expect(SnapshotId.isValid(info.generationId)).toBe(true);
      const map = await kernel.device(dev).readCbtMap(info);
      expect(map.length).toBe(256);
      expect(map.every((b) => b === 0)).toBe(true);
    });

    test('detach, then CBT requests say to attach first', async () => {
      const dev = await attached();
      await kernel.device(dev).detach();
      const err = await kernel.device(dev).cbtInfo().catch((e) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err.message).toBe(`${dev}: change tracking is not attached`);
      await expect(kernel.device(dev).detach()).rejects.toThrow(NotFoundError);
    });

    test('writes before the first take show as 1 after it; markDirty stamps the read map with previous', async () => {
      const dev = await attached();
      await fx.writeDevice(dev, 655360, pattern(4096, 1)); // block 10 only (§7)
      const id = await create();
      await kernel.device(dev).addToSnapshot(id);
      await kernel.control().takeSnapshot(id);
      const info = await kernel.device(dev).cbtInfo();
      expect(info.changesNumber).toBe(1);
      let map = await kernel.device(dev).readCbtMap(info);
      expect([...map.keys()].filter((i) => map[i] !== 0)).toEqual([10]);
      expect(map[10]).toBe(1);
      await kernel.device(dev).markDirty([{ offset: 20n * 128n, count: 1n }]); // block 20
      map = await kernel.device(dev).readCbtMap();
      expect(map[20]).toBe(info.changesNumber);
      await kernel.control().destroySnapshot(id);
    });

    test('markDirty guards: {0,0}, zero count and ranges past the end never reach the kernel', async () => {
      const dev = await attached(16 * MiB);
      const sectors = BigInt((16 * MiB) / 512);
      for (const ranges of [[{ offset: 0n, count: 0n }], [{ offset: 5n, count: 0n }], [{ offset: sectors - 1n, count: 2n }], [{ offset: sectors, count: 1n }], []]) {
        await expect(kernel.device(dev).markDirty(ranges)).rejects.toThrow(UsageError);
      }
      // Had {0,0} reached the kernel, it would have marked the whole live
      // map (§7): after the next take, nothing may show as changed.
      const id = await create();
      await kernel.device(dev).addToSnapshot(id);
      await kernel.control().takeSnapshot(id);
      const map = await kernel.device(dev).readCbtMap();
      expect(map.every((b) => b === 0)).toBe(true);
      await kernel.control().destroySnapshot(id);
    });

    test('snapshot life: create, add, info before/after take, image equals the device at take, destroy', async () => {
      const dev = await attached(8 * MiB);
      const before = pattern(8 * MiB, 3);
      await fx.writeDevice(dev, 0, before);
      const control = kernel.control();
      const id = await create();
      expect((await control.collectSnapshots()).map(String)).toContain(id.toString());
      await kernel.device(dev).addToSnapshot(id);
      await expect(kernel.device(dev).snapshotInfo()).resolves.toEqual({ errorCode: 0, imageName: '', imagePath: null });
      await control.takeSnapshot(id);
      const info = await kernel.device(dev).snapshotInfo();
      expect(info.errorCode).toBe(0);
      expect(info.imageName).not.toBe('');
      expect(info.imagePath).toBeTruthy();
      await fx.writeDevice(dev, 4096, pattern(65536, 9)); // after take: must not show in the image
      const reader = await kernel.openImage(info.imagePath as string);
      try {
        expect(reader.size).toBe(BigInt(8 * MiB));
        const got = Buffer.alloc(8 * MiB);
        await reader.read(got, got.length, 0n);
        expect(got.equals(before)).toBe(true);
      } finally {
        await reader.close();
      }
      await expect(control.takeSnapshot(id)).rejects.toThrow(BusyError);
      await control.destroySnapshot(id);
      expect((await control.collectSnapshots()).map(String)).not.toContain(id.toString());
      // Attached but in no snapshot: SNAPSHOTINFO answers with no image.
      await expect(kernel.device(dev).snapshotInfo()).resolves.toEqual({ errorCode: 0, imageName: '', imagePath: null });
      await expect(control.destroySnapshot(id)).rejects.toThrow(NotFoundError);
      // Not attached at all: NotFoundError.
      const bare = await fx.makeDevice(MiB);
      await expect(kernel.device(bare).snapshotInfo()).rejects.toThrow(`${bare}: not in a snapshot`);
      control.close();
    });

    test('guards: add after take refused; detach of a device in a snapshot refused unless forced', async () => {
      const a = await attached();
      const b = await attached();
      const id = await create();
      await kernel.device(a).addToSnapshot(id);
      await kernel.control().takeSnapshot(id);
      await expect(kernel.device(b).addToSnapshot(id)).rejects.toThrow(/already taken/);
      expect((await kernel.device(b).snapshotInfo()).imageName).toBe(''); // joined nothing
      await expect(kernel.device(a).detach()).rejects.toThrow(/device is in a snapshot/);
      expect((await kernel.device(a).snapshotInfo()).errorCode).toBe(0);
      await kernel.control().destroySnapshot(id);
      await kernel.device(a).detach();
    });

    test('detach of a member of a snapshot not yet taken is refused too; force detaches', async () => {
      const c = await attached();
      const id = await create();
      await kernel.device(c).addToSnapshot(id);
      await expect(kernel.device(c).detach()).rejects.toThrow(BusyError);
      expect((await kernel.device(c).cbtInfo()).blockCount).toBe(256);
      await kernel.device(c).detach({ force: true });
      await expect(kernel.device(c).cbtInfo()).rejects.toThrow(/not attached/);
      await kernel.control().destroySnapshot(id);
    });

    test('add after take is refused in another process: the record names the members, the kernel says they have images', async () => {
      const a = await attached();
      const b = await attached();
      const id = await create();
      await kernel.device(a).addToSnapshot(id);
      await kernel.control().takeSnapshot(id);
      // Another process's view: a records directory with what the creator
      // wrote before its TAKE (no takenAt), and no in-process knowledge.
      const os = require('os') as typeof import('os');
      const path = require('path') as typeof import('path');
      const fs = require('fs') as typeof import('fs');
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'contract-records-'));
      try {
        const other = kernelOnPlatform(fx.platform, { recordsDir: dir });
        other.records.write(newRecord({ id: id.toString(), devices: [a], diffStorage: fx.storageDir, purpose: 'test' }));
        await expect(other.device(b).addToSnapshot(id)).rejects.toThrow(/already taken/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      await kernel.control().destroySnapshot(id);
    });

    test('errors: unknown ids, unattached device, device in another snapshot, take without devices', async () => {
      const control = kernel.control();
      const unknown = SnapshotId.parse('ffffffff-0000-4000-8000-000000000001');
      await expect(control.destroySnapshot(unknown)).rejects.toThrow(NotFoundError);
      await expect(control.takeSnapshot(unknown)).rejects.toThrow(NotFoundError);
      await expect(control.waitEvent(unknown, 10)).rejects.toThrow(NotFoundError);
      const dev = await attached();
      await expect(kernel.device(dev).addToSnapshot(unknown)).rejects.toThrow(NotFoundError);
      const bare = await fx.makeDevice(16 * MiB);
      const id1 = await create();
      await expect(kernel.device(bare).addToSnapshot(id1)).rejects.toThrow(/change tracking is not attached/);
      await kernel.device(dev).addToSnapshot(id1);
      await expect(kernel.device(dev).addToSnapshot(id1)).rejects.toThrow(BusyError);
      const id2 = await create();
      await expect(kernel.device(dev).addToSnapshot(id2)).rejects.toThrow(/belongs to another snapshot/);
      const err = await control.takeSnapshot(id2).catch((e) => e);
      expect(err).toBeInstanceOf(BlksnapError);
      expect(err.errno).toBe('ENODEV');
      await control.destroySnapshot(id2);
      await control.destroySnapshot(id1);
      control.close();
    });

    test('create: relative and missing paths; an existing file larger than the limit', async () => {
      const control = kernel.control();
      await expect(control.createSnapshot('relative/dir', 2048n)).rejects.toThrow(UsageError);
      await expect(control.createSnapshot(`${fx.storageDir}/no/such/dir`, 2048n)).rejects.toThrow(NotFoundError);
      const file = fx.storageFile('big.diff');
      require('fs').writeFileSync(file, Buffer.alloc(4 * MiB));
      const err = await control.createSnapshot(file, BigInt(MiB / 512)).catch((e) => e);
      expect(err).toBeInstanceOf(BlksnapError);
      expect(err.errno).toBe('ENOSPC');
      control.close();
    });

    test('collect survives the number of snapshots changing between its two calls', async () => {
      const control = kernel.control();
      const baseline = (await control.collectSnapshots()).length;
      const first = await create();
      let injected: SnapshotId | null = null;
      let creating = false;
      const wrapped = kernelOnPlatform(interceptingPlatform(fx.platform, (request, arg) => {
        if (request !== abi.IOCTL_BLKSNAP_SNAPSHOT_COLLECT || injected || creating) return;
        if (arg.readBigUInt64LE(8) === 0n) return; // let the probe through
        // Between the probe and the fetch, another process creates a snapshot.
        creating = true;
        const c2 = kernel.control();
        c2.createSnapshot(fx.storageDir, 2048n).then((id) => { injected = id; created.push(id); }).finally(() => c2.close());
      }), { recordsDir: fx.recordsDir });
      // createSnapshot above resolves synchronously inside the transport call
      // on the sim; on a real kernel the race is the same either way.
      const ids = await wrapped.control().collectSnapshots();
      const all = (await control.collectSnapshots()).map(String);
      expect(injected).not.toBeNull();
      expect(ids.map(String)).toEqual(all);
      expect(all).toHaveLength(baseline + 2);
      expect(all).toContain(first.toString());
      control.close();
    });

    test('openImage of a path that does not exist is NotFoundError naming it, on every platform', async () => {
      const missing = `${fx.storageDir}/no-such-image`;
      const err = await kernel.openImage(missing).catch((e) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err.path).toBe(missing);
      expect(err.errno).toBe('ENOENT');
    });

    test('waitEvent: no event gives null; abort gives null; a destroyed snapshot gives NotFoundError', async () => {
      const dev = await attached();
      const id = await create();
      await kernel.device(dev).addToSnapshot(id);
      await kernel.control().takeSnapshot(id);
      const control = kernel.control();
      await expect(control.waitEvent(id, 300)).resolves.toBeNull();
      const ac = new AbortController();
      const waiting = control.waitEvent(id, 600_000, ac.signal);
      setTimeout(() => ac.abort(), 50);
      await expect(waiting).resolves.toBeNull();
      await kernel.control().destroySnapshot(id);
      await expect(control.waitEvent(id, 300)).rejects.toThrow(NotFoundError);
      control.close();
    });

    test('overflow: one event, error_code -ENOSPC, image reads fail with EIO', async () => {
      const dev = await attached(16 * MiB);
      const id = await create(MiB); // 1 MiB of storage for 16 MiB of changes
      await kernel.device(dev).addToSnapshot(id);
      await kernel.control().takeSnapshot(id);
      const control = kernel.control();
      await fx.writeDevice(dev, 0, pattern(16 * MiB, 5));
      let ev = null;
      for (let i = 0; i < 20 && !ev; i++) ev = await control.waitEvent(id, 500);
      expect(ev).not.toBeNull();
      expect(isOverflowEvent(ev as never)).toBe(true);
      // §7: exactly one event, code 0 (corrupted) with +ENOSPC; no code-1 event follows.
      expect(ev).toMatchObject({ code: 'corrupted', errCode: 28 });
      await expect(control.waitEvent(id, 300)).resolves.toBeNull();
      const info = await kernel.device(dev).snapshotInfo();
      expect(info.errorCode).toBe(-28);
      const reader = await kernel.openImage(info.imagePath as string);
      try {
        const err = await reader.read(Buffer.alloc(4096), 4096, 0n).catch((e) => e);
        expect(err).toBeInstanceOf(SyscallError);
        expect(err.errno).toBe('EIO');
      } finally {
        await reader.close();
      }
      await control.destroySnapshot(id);
      control.close();
    });

    test('a difference storage on a member device is refused before SNAPSHOTADD', async () => {
      if (!fx.dirOnDevice) return;
      const dev = await attached(16 * MiB);
      const dir = await fx.dirOnDevice(dev);
      if (!dir) return;
      const id = await create(4 * MiB, dir);
      await expect(kernel.device(dev).addToSnapshot(id)).rejects.toThrow(/holds the difference storage/);
      await kernel.control().destroySnapshot(id);
    });
  });
}
