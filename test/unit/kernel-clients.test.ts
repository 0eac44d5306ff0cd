/**
 * The typed clients against a scripted transport: the exact requests they
 * send (bytes decoded by hand from blksnap-abi.md offsets where it matters),
 * the guards that must stop a request before it is sent, and how errnos
 * become typed errors. The same clients run on the simulated kernel in
 * test/sim/kernel-contract.test.ts.
 */
import * as abi from '../../ioctl-defs';
import type { IoctlDef } from '../../ioctl-defs';
import {
  BusyError,
  ModuleMissingError,
  NotFoundError,
  SyscallError,
  UnsupportedKernelError,
  UsageError,
} from '../../lib/errors';
import type { IoctlTransport, OpenOptions, UserMemory } from '../../lib/ioctl/types';
import { kernelOnPlatform, SnapshotId, CBTMAP_PIECE_BYTES, WAIT_EVENT_MAX_UNITS } from '../../lib/kernel';
import type { KernelPlatform } from '../../lib/kernel';
import type { DeviceIdentity } from '../../lib/kernel/types';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

class FakeMemory implements UserMemory {
  static next = 0x10000n;
  regions: { start: bigint; buf: Buffer }[] = [];
  pin(buf: Uint8Array): bigint {
    const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (b.length === 0) return 0n;
    const start = FakeMemory.next;
    FakeMemory.next += BigInt(b.length + 4096);
    this.regions.push({ start, buf: b });
    return start;
  }
  private find(addr: bigint, length: number): { buf: Buffer; at: number } {
    for (const r of this.regions) {
      if (addr >= r.start && addr + BigInt(length) <= r.start + BigInt(r.buf.length)) return { buf: r.buf, at: Number(addr - r.start) };
    }
    throw new SyscallError('EFAULT', 'copy', undefined);
  }
  read(addr: bigint, length: number): Buffer {
    const { buf, at } = this.find(addr, length);
    return Buffer.from(buf.subarray(at, at + length));
  }
  write(addr: bigint, data: Uint8Array): void {
    const { buf, at } = this.find(addr, data.length);
    buf.set(data, at);
  }
}

interface Call { path: string; request: IoctlDef; arg: Buffer; mem: FakeMemory; cmd?: abi.BlksnapCtlName; devpath?: string }
type Handler = (call: Call) => number | void | Promise<number | void>;

const CTL_NAMES = Object.fromEntries(Object.entries(abi.BLKSNAP_CTL).map(([k, v]) => [v, k])) as Record<number, abi.BlksnapCtlName>;

class FakeTransport implements IoctlTransport {
  readonly kind = 'sim' as const;
  calls: Call[] = [];
  existing = new Set<string>();
  private fds = new Map<number, string>();
  private nextFd = 100;
  constructor(public handler: Handler, existing: string[]) {
    for (const p of existing) this.existing.add(p);
  }
  open(p: string, _o: OpenOptions): number {
    if (!this.existing.has(p)) throw new SyscallError('ENOENT', 'open', p);
    const fd = this.nextFd++;
    this.fds.set(fd, p);
    return fd;
  }
  close(fd: number): void {
    this.fds.delete(fd);
  }
  pathOf(fd: number): string | undefined {
    return this.fds.get(fd);
  }
  userMemory(): UserMemory {
    return new FakeMemory();
  }
  openFds(): number {
    return this.fds.size;
  }
  private describe(fd: number, request: IoctlDef, arg: Buffer, mem: FakeMemory): Call {
    const call: Call = { path: this.fds.get(fd) as string, request, arg, mem };
    if (request === abi.BLKFILTER_CTL) call.cmd = CTL_NAMES[abi.blkfilter_ctl.decode(arg).cmd];
    if (request === abi.BDEVFILTER_CTL) call.cmd = CTL_NAMES[abi.bdevfilter_ctl.decode(arg).cmd];
    if (request === abi.BDEVFILTER_CTL || request === abi.BDEVFILTER_ATTACH || request === abi.BDEVFILTER_DETACH) {
      const addr = arg.readBigUInt64LE(0);
      const region = mem.regions.find((r) => r.start === addr);
      call.devpath = region ? region.buf.toString('utf8') : '<unpinned>';
    }
    return call;
  }
  ioctl(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): number {
    const call = this.describe(fd, request, arg, memory as FakeMemory);
    this.calls.push(call);
    const r = this.handler(call);
    if (r instanceof Promise) throw new Error('sync handler expected');
    return r ?? 0;
  }
  async ioctlAsync(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): Promise<number> {
    const call = this.describe(fd, request, arg, memory as FakeMemory);
    this.calls.push(call);
    return (await this.handler(call)) ?? 0;
  }
}

const errno = (name: string, call: Call): never => {
  throw new SyscallError(name, call.request.name, call.path);
};

const DEV = '/dev/sdz1';
const DISK = '/dev/sdz';
const OTHER = '/dev/sdy';
const identities: Record<string, DeviceIdentity> = {
  [DEV]: { path: DEV, major: 8, minor: 1, size: 1n << 30n, stableId: null, parent: DISK },
  [DISK]: { path: DISK, major: 8, minor: 0, size: 2n << 30n, stableId: null, parent: null },
  [OTHER]: { path: OTHER, major: 8, minor: 16, size: 1n << 30n, stableId: null, parent: null },
};

let recordsDir: string;
beforeEach(() => {
  recordsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kernel-clients-'));
});
afterEach(() => {
  fs.rmSync(recordsDir, { recursive: true, force: true });
});

function setup(flavour: abi.FlavourName, handler: Handler, options: { control?: boolean; storageDevice?: Record<string, string> } = {}) {
  const f = abi.flavours[flavour];
  const existing = [DEV, DISK, OTHER];
  if (options.control !== false) existing.push(f.controlDevice, ...(f.filterDevice ? [f.filterDevice] : []));
  const transport = new FakeTransport(handler, existing);
  const platform: KernelPlatform = {
    kind: 'sim',
    flavour,
    transport,
    async resolveDevice(arg) {
      const id = identities[arg];
      if (!id) throw new NotFoundError(`${arg}: no such device`);
      return id;
    },
    async deviceOfPath(p) {
      const dev = options.storageDevice?.[p];
      return dev ? identities[dev] : null;
    },
    async imagePath(name) {
      return `/dev/${name}`;
    },
    async openImage() {
      throw new Error('not used');
    },
  };
  return { kernel: kernelOnPlatform(platform, { recordsDir }), transport };
}

const ID = SnapshotId.parse('00112233-4455-6677-8899-aabbccddeeff');

/** Fills a CBTINFO answer at the opt pointer, by hand from the §2 offsets. */
function answerCbtInfo(call: Call, capacity: bigint, blockSize: number, blockCount: number): void {
  const ctl = call.request === abi.BLKFILTER_CTL ? abi.blkfilter_ctl.decode(call.arg) : abi.bdevfilter_ctl.decode(call.arg);
  const out = Buffer.alloc(40);
  out.writeBigUInt64LE(capacity, 0);
  out.writeUInt32LE(blockSize, 8);
  out.writeUInt32LE(blockCount, 12);
  Buffer.from('0f0e0d0c0b0a09080706050403020100', 'hex').copy(out, 16);
  out.writeUInt8(3, 32);
  call.mem.write(ctl.opt, out);
}

function optOf(call: Call): { addr: bigint; len: number } {
  const ctl = call.request === abi.BLKFILTER_CTL ? abi.blkfilter_ctl.decode(call.arg) : abi.bdevfilter_ctl.decode(call.arg);
  return { addr: ctl.opt, len: ctl.optlen };
}

describe.each(['upstream', 'standalone'] as const)('%s flavour', (flavour) => {
  const filterPath = flavour === 'upstream' ? DEV : '/dev/bdevfilter';

  test('every filter request names the filter "blksnap" and the canonical device', async () => {
    const { kernel, transport } = setup(flavour, (call) => {
      if (call.cmd === 'SNAPSHOTINFO') return errno('ENOENT', call);
      if (call.cmd === 'CBTINFO') return answerCbtInfo(call, 1n << 30n, 65536, 16384);
    });
    const dev = kernel.device(DEV);
    await dev.attach();
    await dev.cbtInfo();
    await dev.markDirty([{ offset: 0n, count: 8n }]);
    await dev.detach();
    const filterCalls = transport.calls.filter((c) => c.request.type === 0x12 || c.request.type === 'F'.charCodeAt(0));
    expect(filterCalls.length).toBeGreaterThanOrEqual(5);
    for (const c of filterCalls) {
      expect(c.path).toBe(filterPath);
      // name is at offset 0 (upstream) or 8 (standalone), 32 bytes NUL-padded.
      const at = flavour === 'upstream' ? 0 : 8;
      expect(c.arg.subarray(at, at + 32)).toEqual(Buffer.concat([Buffer.from('blksnap'), Buffer.alloc(25)]));
      if (flavour === 'standalone') expect(c.devpath).toBe(`${DEV}\0`);
    }
    expect(transport.openFds()).toBe(0);
  });

  test('attach: EALREADY is success, reported', async () => {
    const { kernel } = setup(flavour, (call) => errno('EALREADY', call));
    await expect(kernel.device(DEV).attach()).resolves.toEqual({ alreadyAttached: true });
  });

  test('attach: EBUSY means another filter', async () => {
    const { kernel } = setup(flavour, (call) => errno('EBUSY', call));
    await expect(kernel.device(DEV).attach()).rejects.toThrow(BusyError);
  });

  test('control device missing gives ModuleMissingError naming it', async () => {
    const { kernel } = setup(flavour, () => 0, { control: false });
    const err = await kernel.control().version().catch((e) => e);
    expect(err).toBeInstanceOf(ModuleMissingError);
    expect(err.message).toContain('blksnap kernel module is not loaded');
    expect(err.message).toContain(abi.flavours[flavour].controlDevice);
  });

  test('version decodes the four u16', async () => {
    const { kernel } = setup(flavour, (call) => {
      call.arg.writeUInt16LE(7, 0);
      call.arg.writeUInt16LE(1, 2);
      call.arg.writeUInt16LE(2, 4);
      call.arg.writeUInt16LE(9, 6);
    });
    await expect(kernel.control().version()).resolves.toEqual({ major: 7, minor: 1, revision: 2, build: 9, text: '7.1.2.9' });
  });

  test('collect asks with ids 0 first and asks again when the count grew (count left unchanged on ENODATA)', async () => {
    const ids = [0, 1, 2].map((i) => Buffer.alloc(16, i + 1));
    let present = 2;
    const seen: string[] = [];
    const { kernel } = setup(flavour, (call) => {
      const count = call.arg.readUInt32LE(0);
      const ptr = call.arg.readBigUInt64LE(8);
      seen.push(ptr === 0n ? 'probe' : `fetch${count}`);
      if (ptr === 0n) {
        call.arg.writeUInt32LE(present, 0);
        return;
      }
      if (count < present) return errno('ENODATA', call);
      call.mem.write(ptr, Buffer.concat(ids.slice(0, present)));
      call.arg.writeUInt32LE(present, 0);
      // another snapshot appears between this call and the next probe
    });
    const control = kernel.control();
    const orig = (kernel.transport as FakeTransport).handler;
    (kernel.transport as FakeTransport).handler = (call) => {
      const isProbe = call.arg.readBigUInt64LE(8) === 0n;
      const r = orig(call);
      if (isProbe && seen.length === 1) present = 3; // count changes between the two calls
      return r;
    };
    const got = await control.collectSnapshots();
    expect(seen).toEqual(['probe', 'fetch2', 'probe', 'fetch3']);
    expect(got.map((g) => g.bytes)).toEqual(ids);
  });

  test('collect when a snapshot disappears between the two calls returns what the kernel filled', async () => {
    const ids = [Buffer.alloc(16, 7), Buffer.alloc(16, 8)];
    let present = 2;
    const { kernel } = setup(flavour, (call) => {
      const ptr = call.arg.readBigUInt64LE(8);
      if (ptr === 0n) {
        call.arg.writeUInt32LE(present, 0);
        present = 1; // destroyed right after the probe
        return;
      }
      call.mem.write(ptr, Buffer.concat(ids.slice(0, present)));
      call.arg.writeUInt32LE(present, 0);
    });
    const got = await kernel.control().collectSnapshots();
    expect(got.map((g) => g.bytes)).toEqual([ids[0]]);
  });

  test('collect with no snapshots sends only the probe', async () => {
    const { kernel, transport } = setup(flavour, (call) => { call.arg.writeUInt32LE(0, 0); });
    await expect(kernel.control().collectSnapshots()).resolves.toEqual([]);
    expect(transport.calls).toHaveLength(1);
  });

  test.each([
    ['{0,0}', [{ offset: 0n, count: 0n }], 'no request at all'],
    ['zero count', [{ offset: 100n, count: 0n }], 'no request at all'],
    ['negative offset', [{ offset: -1n, count: 1n }], 'no request at all'],
    ['a bad range after a good one', [{ offset: 0n, count: 8n }, { offset: 0n, count: 0n }], 'no request at all'],
    ['no ranges', [], 'no request at all'],
    ['straddling the end', [{ offset: (1n << 21n) - 1n, count: 2n }], 'no request at all'],
    ['past the end', [{ offset: 1n << 21n, count: 1n }], 'no request at all'],
    ['past the tracker capacity (device grown since)', [{ offset: 1n << 20n, count: 1n }], 'only CBTINFO'],
  ])('markDirty refuses %s before sending CBTDIRTY (%#)', async (_name, ranges, sent) => {
    const { kernel, transport } = setup(flavour, (call) => {
      if (call.cmd === 'CBTINFO') return answerCbtInfo(call, 1n << 29n, 65536, 8192); // tracker: 512 MiB, device 1 GiB
    });
    await expect(kernel.device(DEV).markDirty(ranges as never)).rejects.toThrow(UsageError);
    expect(transport.calls.filter((c) => c.cmd === 'CBTDIRTY')).toHaveLength(0);
    expect(transport.calls.map((c) => c.cmd)).toEqual(sent === 'only CBTINFO' ? ['CBTINFO'] : []);
  });

  test('markDirty sends each range as one blksnap_sectors behind dirty_sectors, one range per request', async () => {
    const sent: Buffer[] = [];
    const { kernel } = setup(flavour, (call) => {
      if (call.cmd === 'CBTINFO') return answerCbtInfo(call, 1n << 30n, 65536, 16384);
      if (call.cmd === 'CBTDIRTY') {
        const opt = optOf(call);
        expect(opt.len).toBe(16);
        const hdr = call.mem.read(opt.addr, 16);
        const count = hdr.readUInt32LE(0);
        sent.push(call.mem.read(hdr.readBigUInt64LE(8), count * 16));
      }
    });
    await kernel.device(DEV).markDirty([{ offset: 0n, count: 8n }, { offset: (1n << 21n) - 1n, count: 1n }]);
    // One range per request: some module versions mark only the first range of a batch.
    expect(sent).toHaveLength(2);
    const first = Buffer.alloc(16);
    first.writeBigUInt64LE(0n, 0);
    first.writeBigUInt64LE(8n, 8);
    const second = Buffer.alloc(16);
    second.writeBigUInt64LE((1n << 21n) - 1n, 0);
    second.writeBigUInt64LE(1n, 8);
    expect(sent).toEqual([first, second]);
  });

  test('readCbtMap reads any block_count in pieces of at most 1 MiB', async () => {
    const blockCount = 2 * CBTMAP_PIECE_BYTES + 12345;
    const pieces: [number, number][] = [];
    const { kernel } = setup(flavour, (call) => {
      if (call.cmd === 'CBTINFO') return answerCbtInfo(call, BigInt(blockCount) * 65536n, 65536, blockCount);
      if (call.cmd === 'CBTMAP') {
        const opt = optOf(call);
        const m = call.mem.read(opt.addr, 16);
        const offset = m.readUInt32LE(0);
        const length = m.readUInt32LE(4);
        pieces.push([offset, length]);
        const data = Buffer.alloc(length);
        for (let i = 0; i < length; i++) data[i] = (offset + i) % 251;
        call.mem.write(m.readBigUInt64LE(8), data);
      }
    });
    const map = await kernel.device(DEV).readCbtMap();
    expect(map.length).toBe(blockCount);
    expect(pieces).toEqual([[0, CBTMAP_PIECE_BYTES], [CBTMAP_PIECE_BYTES, CBTMAP_PIECE_BYTES], [2 * CBTMAP_PIECE_BYTES, 12345]]);
    for (const i of [0, 1, CBTMAP_PIECE_BYTES, blockCount - 1]) expect(map[i]).toBe(i % 251);
  });

  test('cbtInfo decodes the answer; ENOENT says to attach first', async () => {
    let attached = true;
    const { kernel } = setup(flavour, (call) => {
      if (!attached) return errno('ENOENT', call);
      answerCbtInfo(call, 1n << 30n, 65536, 16384);
    });
    await expect(kernel.device(DEV).cbtInfo()).resolves.toEqual({
      capacity: 1n << 30n, blockSize: 65536, blockCount: 16384, generationId: '0f0e0d0c-0b0a-0908-0706-050403020100', changesNumber: 3,
    });
    attached = false;
    const err = await kernel.device(DEV).cbtInfo().catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe(`${DEV}: change tracking is not attached`);
    expect(err.hint).toContain(`blksnap attach ${DEV}`);
  });

  test('snapshotInfo sends a zeroed buffer and keeps what the kernel did not set', async () => {
    const { kernel } = setup(flavour, (call) => {
      const opt = optOf(call);
      expect(opt.len).toBe(36);
      expect(call.mem.read(opt.addr, 36)).toEqual(Buffer.alloc(36));
      const errorCode = Buffer.alloc(4);
      errorCode.writeInt32LE(-28, 0);
      call.mem.write(opt.addr, errorCode); // only error_code, no image
    });
    await expect(kernel.device(DEV).snapshotInfo()).resolves.toEqual({ errorCode: -28, imageName: '', imagePath: null });
  });

  test('snapshotInfo: image name resolved by the platform; ENOENT means not in a snapshot', async () => {
    let inSnapshot = true;
    const { kernel } = setup(flavour, (call) => {
      if (!inSnapshot) return errno('ENOENT', call);
      call.mem.write(optOf(call).addr + 4n, Buffer.from('blksnap-8-1\0'));
    });
    await expect(kernel.device(DEV).snapshotInfo()).resolves.toEqual({ errorCode: 0, imageName: 'blksnap-8-1', imagePath: '/dev/blksnap-8-1' });
    inSnapshot = false;
    const err = await kernel.device(DEV).snapshotInfo().catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe(`${DEV}: not in a snapshot`);
  });

  test('detach refuses a device in a taken snapshot unless forced', async () => {
    const { kernel, transport } = setup(flavour, (call) => {
      if (call.cmd === 'SNAPSHOTINFO') call.mem.write(optOf(call).addr + 4n, Buffer.from('blksnap-8-1\0'));
    });
    const err = await kernel.device(DEV).detach().catch((e) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect(err.message).toContain('in a snapshot');
    expect(transport.calls.filter((c) => c.request === abi.flavours[flavour].detach)).toHaveLength(0);
    await kernel.device(DEV).detach({ force: true });
    expect(transport.calls.filter((c) => c.request === abi.flavours[flavour].detach)).toHaveLength(1);
  });

  test('detach refuses a device our records put in a live snapshot', async () => {
    const { kernel, transport } = setup(flavour, (call) => {
      if (call.cmd === 'SNAPSHOTINFO') return errno('ENOENT', call);
      if (call.request === abi.IOCTL_BLKSNAP_SNAPSHOT_COLLECT) {
        const ptr = call.arg.readBigUInt64LE(8);
        call.arg.writeUInt32LE(1, 0);
        if (ptr !== 0n) call.mem.write(ptr, ID.bytes);
      }
    });
    kernel.records.write({ id: ID.toString(), pid: 1, pidStartTime: null, host: os.hostname(), startedAt: '', devices: [DEV], images: {}, diffStorage: '/x', diffStorageDevice: null, diffStorageKind: 'directory', takenAt: null, purpose: 'test', keep: false });
    await expect(kernel.device(DEV).detach()).rejects.toThrow(/in snapshot 00112233/);
    expect(transport.calls.filter((c) => c.request === abi.flavours[flavour].detach)).toHaveLength(0);
  });

  test('add after take is refused without sending SNAPSHOTADD', async () => {
    const { kernel, transport } = setup(flavour, (call) => {
      if (call.request === abi.IOCTL_BLKSNAP_SNAPSHOT_CREATE) call.arg.set(ID.bytes, 16);
    });
    const control = kernel.control();
    const id = await control.createSnapshot('/var/tmp', 1000n);
    await kernel.device(DEV).addToSnapshot(id);
    await control.takeSnapshot(id);
    await expect(kernel.device(OTHER).addToSnapshot(id)).rejects.toThrow(/already taken/);
    expect(transport.calls.filter((c) => c.cmd === 'SNAPSHOTADD')).toHaveLength(1);
  });

  test('adding the device that holds the difference storage is refused (also its parent disk)', async () => {
    const { kernel, transport } = setup(flavour, (call) => {
      if (call.request === abi.IOCTL_BLKSNAP_SNAPSHOT_CREATE) call.arg.set(ID.bytes, 16);
    }, { storageDevice: { '/mnt/store': DEV } });
    const id = await kernel.control().createSnapshot('/mnt/store', 1000n);
    await expect(kernel.device(DEV).addToSnapshot(id)).rejects.toThrow(/holds the difference storage/);
    await expect(kernel.device(DISK).addToSnapshot(id)).rejects.toThrow(/holds the difference storage/);
    await kernel.device(OTHER).addToSnapshot(id);
    expect(transport.calls.filter((c) => c.cmd === 'SNAPSHOTADD')).toHaveLength(1);
  });

  test('createSnapshot encodes the path pointer, limit and returns the id; relative paths never sent', async () => {
    const { kernel, transport } = setup(flavour, (call) => {
      expect(call.arg.readBigUInt64LE(0)).toBe(2048n);
      expect(call.mem.read(call.arg.readBigUInt64LE(8), 10)).toEqual(Buffer.from('/var/tmp/\0'));
      call.arg.set(ID.bytes, 16);
    });
    const control = kernel.control();
    await expect(control.createSnapshot('relative/dir', 2048n)).rejects.toThrow(UsageError);
    await expect(control.createSnapshot('', 2048n)).rejects.toThrow(UsageError);
    expect(transport.calls).toHaveLength(0);
    const id = await control.createSnapshot('/var/tmp/', 2048n);
    expect(id.toString()).toBe(ID.toString());
  });

  test.each([
    ['DESTROY', 'ENODEV', NotFoundError, /does not exist/],
    ['TAKE', 'ESRCH', NotFoundError, /does not exist/],
    ['TAKE', 'EALREADY', BusyError, /already taken/],
  ] as const)('%s %s becomes a typed error', async (op, code, cls, text) => {
    const { kernel } = setup(flavour, (call) => errno(code, call));
    const control = kernel.control();
    const p = op === 'DESTROY' ? control.destroySnapshot(ID) : control.takeSnapshot(ID);
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(cls);
    expect(err.message).toMatch(text);
    expect(err.errno).toBe(code);
  });

  test('waitEvent loops short waits until the timeout and resolves null', async () => {
    const units: number[] = [];
    const { kernel } = setup(flavour, async (call) => {
      units.push(call.arg.readUInt32LE(16));
      await new Promise((r) => setTimeout(r, 5));
      return errno(units.length === 2 ? 'EINTR' : 'ENOENT', call);
    });
    await expect(kernel.control().waitEvent(ID, 60)).resolves.toBeNull();
    expect(units.length).toBeGreaterThan(1);
    for (const u of units) {
      expect(u).toBeGreaterThan(0);
      expect(u).toBeLessThanOrEqual(WAIT_EVENT_MAX_UNITS);
    }
  });

  test('waitEvent decodes corrupted and no_space events; ESRCH is NotFoundError', async () => {
    const answers = [
      (a: Buffer) => { a.writeUInt32LE(0, 20); a.writeBigInt64LE(77n, 24); a.writeUInt32LE(7, 32); a.writeUInt32LE(3, 36); a.writeInt32LE(28, 40); },
      (a: Buffer) => { a.writeUInt32LE(1, 20); a.writeBigInt64LE(78n, 24); a.writeBigUInt64LE(262144n, 32); },
    ];
    let n = 0;
    const { kernel } = setup(flavour, async (call) => {
      expect(call.arg.subarray(0, 16)).toEqual(ID.bytes);
      if (n < answers.length) answers[n++](call.arg);
      else errno('ESRCH', call);
    });
    const control = kernel.control();
    await expect(control.waitEvent(ID, 1000)).resolves.toEqual({ code: 'corrupted', timeLabel: 77n, devMajor: 7, devMinor: 3, errCode: 28 });
    await expect(control.waitEvent(ID, 1000)).resolves.toEqual({ code: 'no_space', timeLabel: 78n, requestedSectors: 262144n });
    await expect(control.waitEvent(ID, 1000)).rejects.toThrow(NotFoundError);
  });

  test('waitEvent resolves null as soon as the signal aborts', async () => {
    const { kernel } = setup(flavour, async (call) => {
      await new Promise((r) => setTimeout(r, 50));
      return errno('ENOENT', call);
    });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    // Without the abort this would wait a minute and exceed the test timeout.
    await expect(kernel.control().waitEvent(ID, 60_000, ac.signal)).resolves.toBeNull();
    const pre = new AbortController();
    pre.abort();
    await expect(kernel.control().waitEvent(ID, 60_000, pre.signal)).resolves.toBeNull();
  });
});

describe('upstream filter transport on a kernel without filter support', () => {
  test.each(['ENOTTY', 'EINVAL'])('ATTACH %s with no control device is UnsupportedKernelError', async (code) => {
    const { kernel } = setup('upstream', (call) => errno(code, call), { control: false });
    const err = await kernel.device(DEV).attach().catch((e) => e);
    expect(err).toBeInstanceOf(UnsupportedKernelError);
    expect(err.message).toBe(`this kernel has no block device filter support (BLKFILTER_ATTACH: ${code}) — blksnap needs a kernel with the blksnap patches or the standalone module`);
  });

  test('ATTACH ENOENT (filter not registered) is ModuleMissingError', async () => {
    const { kernel } = setup('upstream', (call) => errno('ENOENT', call));
    await expect(kernel.device(DEV).attach()).rejects.toThrow(ModuleMissingError);
  });

  test('CTL EINVAL with the module present means another filter', async () => {
    const { kernel } = setup('upstream', (call) => errno('EINVAL', call));
    await expect(kernel.device(DEV).cbtInfo()).rejects.toThrow(/another block device filter/);
  });
});

describe('standalone module half loaded', () => {
  test('control device missing but /dev/bdevfilter present: the message names only what is missing', async () => {
    const { kernel, transport } = setup('standalone', () => 0);
    transport.existing.delete('/dev/veeamblksnap');
    const err = await kernel.control().version().catch((e) => e);
    expect(err).toBeInstanceOf(ModuleMissingError);
    expect(err.message).toBe('blksnap kernel module is not loaded (/dev/veeamblksnap does not exist)');
  });

  test('/dev/bdevfilter missing: filter requests say the module is not loaded', async () => {
    const { kernel, transport } = setup('standalone', () => 0);
    transport.existing.delete('/dev/bdevfilter');
    const err = await kernel.device(DEV).attach().catch((e) => e);
    expect(err).toBeInstanceOf(ModuleMissingError);
    expect(err.message).toBe('blksnap kernel module is not loaded (/dev/bdevfilter does not exist)');
  });
});

describe('standalone-only requests', () => {
  test('moduleInfo decodes name and flags; ENOTTY gives null', async () => {
    const { kernel } = setup('standalone', (call) => {
      call.arg.writeBigUInt64LE(0x2n, 0);
      call.arg.write('standalone\0', 8);
    });
    await expect(kernel.control().moduleInfo()).resolves.toEqual({ name: 'standalone', compatibilityFlags: 2n, flagNames: ['setlog'] });
    const up = setup('upstream', (call) => errno('ENOTTY', call));
    await expect(up.kernel.control().moduleInfo()).resolves.toBeNull();
  });

  test('setLog: filepath_size is the byte length; null level disables with a null path; ENOTTY gives false', async () => {
    const sent: { level: number; size: number; path: string | null; tz: number }[] = [];
    const { kernel } = setup('standalone', (call) => {
      const ptr = call.arg.readBigUInt64LE(16);
      const size = call.arg.readUInt32LE(8);
      sent.push({ tz: call.arg.readInt32LE(0), level: call.arg.readInt32LE(4), size, path: ptr === 0n ? null : call.mem.read(ptr, size).toString('utf8') });
    });
    const control = kernel.control();
    await expect(control.setLog({ level: 6, filePath: '/var/log/blksnap-é.log', tzMinutesWest: -60 })).resolves.toBe(true);
    await expect(control.setLog({ level: null, filePath: null, tzMinutesWest: 0 })).resolves.toBe(true);
    await expect(control.setLog({ level: 9, filePath: '/x', tzMinutesWest: 0 })).rejects.toThrow(UsageError);
    expect(sent).toEqual([
      { tz: -60, level: 6, size: Buffer.byteLength('/var/log/blksnap-é.log'), path: '/var/log/blksnap-é.log' },
      { tz: 0, level: -1, size: 0, path: null },
    ]);
    const up = setup('upstream', (call) => errno('ENOTTY', call));
    await expect(up.kernel.control().setLog({ level: 6, filePath: '/x', tzMinutesWest: 0 })).resolves.toBe(false);
  });
});
