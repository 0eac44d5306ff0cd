/**
 * KernelTransport against the running kernel (root; CI is root): real ioctls
 * on loop devices over temp files, what a stock kernel answers to the blksnap
 * filter ioctls, open flags, a user pointer the kernel follows (BLKPG), and
 * the asynchronous form running while the event loop keeps going.
 *
 * Observed on this machine's stock kernel (6.18, no blksnap): BLKFILTER_* on
 * a loop device answer EINVAL (the loop driver's answer to any request it
 * does not know), on a character device (/dev/null) ENOTTY.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {
  BDEVFILTER_ATTACH,
  BLKFILTER_ATTACH,
  BLKFILTER_CTL,
  BLKFILTER_DETACH,
  BLKGETSIZE64,
  BLKPG,
  BLKPG_OP,
  BLKSSZGET,
  BLKSNAP_FILTER_NAME,
  FIFREEZE,
  FITHAW,
  FS_IOC_GETFLAGS,
  FS_IOC_SETFLAGS,
  IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT,
  IOCTL_BLKSNAP_VERSION,
  bdevfilter_name,
  blkfilter_attach,
  blkfilter_ctl,
  blkfilter_detach,
  blkpg_ioctl_arg,
  blkpg_partition,
  blksnap_snapshot_event,
  blksnap_version,
  int_value,
  u64_value,
  type IoctlDef,
} from '../../ioctl-defs';
import { KernelTransport, type OpenOptions, type UserMemory } from '../../lib/ioctl';
import { SyscallError } from '../../lib/errors';
import { describeAsRoot } from '../helpers/root';
import { cleanupAll, createLoopDevice, mountExt4, type LoopDevice } from '../helpers/loop';

const MiB = 1024 * 1024;
const transport = new KernelTransport();
const openFds = new Set<number>();

function open(p: string, options: OpenOptions): number {
  const fd = transport.open(p, options);
  openFds.add(fd);
  return fd;
}
function close(fd: number): void {
  openFds.delete(fd);
  transport.close(fd);
}

function deviceSize(fd: number): bigint {
  const arg = u64_value.encode({});
  transport.ioctl(fd, BLKGETSIZE64, arg, transport.userMemory());
  return u64_value.decode(arg).value;
}

function sectorSize(fd: number): number {
  const arg = int_value.encode({});
  transport.ioctl(fd, BLKSSZGET, arg, transport.userMemory());
  return int_value.decode(arg).value;
}

/** The SyscallError a call throws (fails the test if it does not throw one). */
function syscallErrorOf(fn: () => unknown): SyscallError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SyscallError) return err;
    throw err;
  }
  throw new Error('expected a SyscallError, the call succeeded');
}

async function asyncSyscallErrorOf(p: Promise<unknown>): Promise<SyscallError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SyscallError) return err;
    throw err;
  }
  throw new Error('expected a SyscallError, the call succeeded');
}

const filterRequests: Array<[IoctlDef, () => Buffer]> = [
  [BLKFILTER_ATTACH, () => blkfilter_attach.encode({ name: BLKSNAP_FILTER_NAME })],
  [BLKFILTER_DETACH, () => blkfilter_detach.encode({ name: BLKSNAP_FILTER_NAME })],
  [BLKFILTER_CTL, () => blkfilter_ctl.encode({ name: BLKSNAP_FILTER_NAME, cmd: 0 })],
];

afterEach(() => {
  for (const fd of [...openFds]) close(fd);
});

describeAsRoot('KernelTransport on real devices', () => {
  afterAll(() => cleanupAll());

  describe('device size and logical sector size', () => {
    let small: LoopDevice;
    let big4k: LoopDevice;
    beforeAll(() => {
      small = createLoopDevice({ sizeBytes: 24 * MiB + 12 * 1024 });
      big4k = createLoopDevice({ sizeBytes: 16 * MiB, sectorSize: 4096 });
    });
    afterAll(() => {
      small?.cleanup();
      big4k?.cleanup();
    });

    it('BLKGETSIZE64 answers the backing file size in bytes', () => {
      expect(deviceSize(open(small.path, { access: 'read' }))).toBe(BigInt(24 * MiB + 12 * 1024));
      expect(deviceSize(open(big4k.path, { access: 'read' }))).toBe(BigInt(16 * MiB));
    });

    it('BLKSSZGET (an _IO request that writes an int) answers the logical sector size', () => {
      expect(sectorSize(open(small.path, { access: 'read' }))).toBe(512);
      expect(sectorSize(open(big4k.path, { access: 'read' }))).toBe(4096);
    });

    it('ioctlAsync gives the same answers', async () => {
      const fd = open(big4k.path, { access: 'read' });
      const size = u64_value.encode({});
      const sector = int_value.encode({});
      await expect(transport.ioctlAsync(fd, BLKGETSIZE64, size, transport.userMemory())).resolves.toBe(0);
      await expect(transport.ioctlAsync(fd, BLKSSZGET, sector, transport.userMemory())).resolves.toBe(0);
      expect(u64_value.decode(size).value).toBe(BigInt(16 * MiB));
      expect(int_value.decode(sector).value).toBe(4096);
    });

    it('refuses an argument buffer shorter than the request before the kernel sees it', () => {
      const fd = open(small.path, { access: 'read' });
      expect(() => transport.ioctl(fd, BLKGETSIZE64, Buffer.alloc(4), transport.userMemory())).toThrow(/BLKGETSIZE64: argument is 4 bytes, needs 8/);
      // FS_IOC_GETFLAGS carries 8 (long) in its number though the kernel writes an int.
      expect(() => transport.ioctl(fd, FS_IOC_GETFLAGS, Buffer.alloc(4), transport.userMemory())).toThrow(/needs 8/);
    });
  });

  describe('blksnap filter ioctls on this stock kernel', () => {
    let loop: LoopDevice;
    beforeAll(() => { loop = createLoopDevice({ sizeBytes: 8 * MiB }); });
    afterAll(() => loop?.cleanup());

    it.each(filterRequests.map(([def, arg]) => [def.name, def, arg] as const))(
      '%s on a loop device: EINVAL from the loop driver, with errno, ioctl name and path',
      (_name, def, arg) => {
        const fd = open(loop.path, { access: 'read' });
        const err = syscallErrorOf(() => transport.ioctl(fd, def, arg(), transport.userMemory()));
        expect({ errno: err.errno, op: err.op, path: err.path, kind: err.kind }).toEqual({ errno: 'EINVAL', op: def.name, path: loop.path, kind: 'failure' });
        expect(err.errnoNumber).toBe(22);
        expect(err.message).toBe(`${loop.path}: ${def.name}: invalid argument (EINVAL)`);
      },
    );

    it.each(filterRequests.map(([def, arg]) => [def.name, def, arg] as const))(
      '%s on a character device (/dev/null): ENOTTY with a hint',
      (_name, def, arg) => {
        const fd = open('/dev/null', { access: 'read' });
        const err = syscallErrorOf(() => transport.ioctl(fd, def, arg(), transport.userMemory()));
        expect({ errno: err.errno, op: err.op, path: err.path }).toEqual({ errno: 'ENOTTY', op: def.name, path: '/dev/null' });
        expect(err.hint).toBe(`/dev/null does not answer ${def.name}`);
      },
    );

    it('standalone and control requests on /dev/null: ENOTTY', () => {
      const fd = open('/dev/null', { access: 'readwrite' });
      const devpath = Buffer.from('/dev/null\0');
      const memory = transport.userMemory();
      const attach = bdevfilter_name.encode({ devpath: memory.pin(devpath), name: BLKSNAP_FILTER_NAME });
      expect(syscallErrorOf(() => transport.ioctl(fd, BDEVFILTER_ATTACH, attach, memory)).errno).toBe('ENOTTY');
      expect(syscallErrorOf(() => transport.ioctl(fd, IOCTL_BLKSNAP_VERSION, blksnap_version.encode({}), transport.userMemory())).errno).toBe('ENOTTY');
    });

    it('the async form reports errno the same way, and concurrent calls keep their own errno', async () => {
      const loopFd = open(loop.path, { access: 'read' });
      const nullFd = open('/dev/null', { access: 'read' });
      const calls: Array<Promise<SyscallError>> = [];
      for (let i = 0; i < 8; i++) {
        const [fd, path] = i % 2 === 0 ? [loopFd, loop.path] : [nullFd, '/dev/null'];
        calls.push(asyncSyscallErrorOf(transport.ioctlAsync(fd, BLKFILTER_ATTACH, blkfilter_attach.encode({ name: 'blksnap' }), transport.userMemory()))
          .then((err) => { expect(err.path).toBe(path); return err; }));
      }
      const errs = await Promise.all(calls);
      expect(errs.map((e) => e.errno)).toEqual(['EINVAL', 'ENOTTY', 'EINVAL', 'ENOTTY', 'EINVAL', 'ENOTTY', 'EINVAL', 'ENOTTY']);
      const wait = blksnap_snapshot_event.encode({ timeout_ms: 1 });
      const err = await asyncSyscallErrorOf(transport.ioctlAsync(nullFd, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, wait, transport.userMemory()));
      expect({ errno: err.errno, op: err.op }).toEqual({ errno: 'ENOTTY', op: 'IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT' });
    });
  });

  describe('open', () => {
    let loop: LoopDevice;
    beforeAll(() => { loop = createLoopDevice({ sizeBytes: 8 * MiB }); });
    afterAll(() => loop?.cleanup());

    it('a missing path: SyscallError ENOENT, op open, kind not_found', () => {
      const missing = path.join(path.dirname(loop.backingFile), 'no-such-device');
      const err = syscallErrorOf(() => open(missing, { access: 'read' }));
      expect({ errno: err.errno, op: err.op, path: err.path, kind: err.kind }).toEqual({ errno: 'ENOENT', op: 'open', path: missing, kind: 'not_found' });
    });

    it('a path Node itself refuses is not reported as a kernel error', () => {
      expect(() => open('/dev/null\0x', { access: 'read' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    });

    it('the flags reach the kernel: access mode, O_DIRECT and close-on-exec', () => {
      // <asm-generic/fcntl.h>: O_CLOEXEC 02000000 on x86_64 and arm64 (Node does not export it).
      const O_CLOEXEC = 0o2000000;
      const flagsOf = (fd: number): number => {
        const line = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n').find((l) => l.startsWith('flags:'))!;
        return parseInt(line.split(/\s+/)[1], 8);
      };
      const ro = flagsOf(open(loop.path, { access: 'read' }));
      const rw = flagsOf(open(loop.path, { access: 'readwrite', direct: true }));
      const wo = flagsOf(open(loop.path, { access: 'write' }));
      expect([ro & 3, rw & 3, wo & 3]).toEqual([fs.constants.O_RDONLY, fs.constants.O_RDWR, fs.constants.O_WRONLY]);
      expect([ro & fs.constants.O_DIRECT, rw & fs.constants.O_DIRECT]).toEqual([0, fs.constants.O_DIRECT]);
      expect([ro & O_CLOEXEC, rw & O_CLOEXEC, wo & O_CLOEXEC]).toEqual([O_CLOEXEC, O_CLOEXEC, O_CLOEXEC]);
    });

    it('an O_DIRECT fd answers ioctls', () => {
      expect(deviceSize(open(loop.path, { access: 'read', direct: true }))).toBe(BigInt(8 * MiB));
    });

    it('O_EXCL: a second exclusive open is EBUSY; shared opens still work; released on close', () => {
      const first = open(loop.path, { access: 'read', exclusive: true });
      const err = syscallErrorOf(() => open(loop.path, { access: 'read', exclusive: true }));
      expect({ errno: err.errno, op: err.op, path: err.path, kind: err.kind }).toEqual({ errno: 'EBUSY', op: 'open', path: loop.path, kind: 'busy' });
      expect(err.hint).toMatch(/exclusively/);
      const shared = open(loop.path, { access: 'read' });
      expect(deviceSize(shared)).toBe(BigInt(8 * MiB));
      close(first);
      const again = open(loop.path, { access: 'readwrite', exclusive: true });
      expect(transport.pathOf(again)).toBe(loop.path);
    });
  });

  describe('a user pointer inside the argument is followed by the kernel (BLKPG)', () => {
    let loop: LoopDevice;
    beforeAll(() => { loop = createLoopDevice({ sizeBytes: 64 * MiB, partscan: true }); });
    afterAll(() => loop?.cleanup());

    const partitionPath = (n: number): string => `${loop.path}p${n}`;
    const sysfsStart = (n: number): number =>
      Number(fs.readFileSync(`/sys/block/${path.basename(loop.path)}/${path.basename(partitionPath(n))}/start`, 'utf8'));

    function blkpg(fd: number, op: number, partition: Parameters<typeof blkpg_partition.encode>[0] | null): void {
      const memory: UserMemory = transport.userMemory();
      const data = partition ? memory.pin(blkpg_partition.encode(partition)) : 0n;
      const arg = blkpg_ioctl_arg.encode({ op, flags: 0, datalen: blkpg_partition.size, data });
      transport.ioctl(fd, BLKPG, arg, memory);
    }

    /** DEL is refused (EBUSY) while anything (udev probing a new node) has the partition open. */
    async function deletePartition(fd: number, pno: number): Promise<void> {
      for (let attempt = 0; ; attempt++) {
        try {
          blkpg(fd, BLKPG_OP.DEL_PARTITION, { pno });
          return;
        } catch (err) {
          if (!(err instanceof SyscallError && err.errno === 'EBUSY') || attempt >= 50) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }

    it('ADD_PARTITION creates partitions with the start and length written in the pointed-to struct', async () => {
      const fd = open(loop.path, { access: 'read' });
      blkpg(fd, BLKPG_OP.ADD_PARTITION, { start: BigInt(1 * MiB), length: BigInt(8 * MiB), pno: 1 });
      blkpg(fd, BLKPG_OP.ADD_PARTITION, { start: BigInt(16 * MiB), length: BigInt(3 * MiB), pno: 2 });
      expect(sysfsStart(1)).toBe((1 * MiB) / 512);
      expect(sysfsStart(2)).toBe((16 * MiB) / 512);
      const p1 = open(partitionPath(1), { access: 'read' });
      const p2 = open(partitionPath(2), { access: 'read' });
      expect(deviceSize(p1)).toBe(BigInt(8 * MiB));
      expect(deviceSize(p2)).toBe(BigInt(3 * MiB));
      close(p1);
      close(p2);
      await deletePartition(fd, 1);
      await deletePartition(fd, 2);
      expect(fs.existsSync(`/sys/block/${path.basename(loop.path)}/${path.basename(partitionPath(1))}`)).toBe(false);
    });

    it('a NULL pointer: EFAULT (the kernel tried to follow it)', () => {
      const fd = open(loop.path, { access: 'read' });
      const err = syscallErrorOf(() => blkpg(fd, BLKPG_OP.ADD_PARTITION, null));
      expect({ errno: err.errno, op: err.op }).toEqual({ errno: 'EFAULT', op: 'BLKPG' });
    });

    it('values the kernel refuses after reading them: pno 0 → EINVAL, length past the end → EINVAL', () => {
      const fd = open(loop.path, { access: 'read' });
      expect(syscallErrorOf(() => blkpg(fd, BLKPG_OP.ADD_PARTITION, { start: 0n, length: BigInt(MiB), pno: 0 })).errno).toBe('EINVAL');
      expect(syscallErrorOf(() => blkpg(fd, BLKPG_OP.ADD_PARTITION, { start: BigInt(MiB), length: BigInt(64 * MiB), pno: 3 })).errno).toBe('EINVAL');
      expect(fs.existsSync(partitionPath(3))).toBe(false);
    });
  });

  describe('ioctlAsync runs off the main thread', () => {
    // A call that really blocks, and that we release ourselves: on a frozen
    // file system every writer waits in sb_start_write() until FITHAW, and
    // FS_IOC_SETFLAGS is a writer. So the async SETFLAGS stays inside the
    // kernel for exactly as long as the test keeps the file system frozen.
    let loop: LoopDevice;
    let mountpoint: string;
    let cleanupMount: () => void;
    beforeAll(() => {
      loop = createLoopDevice({ sizeBytes: 64 * MiB });
      const m = mountExt4(loop);
      mountpoint = m.mountpoint;
      cleanupMount = () => m.cleanup();
    });
    afterAll(() => {
      cleanupMount?.();
      loop?.cleanup();
    });

    const THAW_WATCHDOG_SECONDS = 40;

    /** ioctl's syscall number, as /proc/<pid>/task/<tid>/syscall shows it. */
    const IOCTL_SYSCALL: Record<string, number> = { x64: 16, arm64: 29 };

    /** Threads of this process currently blocked in ioctl(fd, request, ...). */
    function threadsBlockedIn(fd: number, request: number): number[] {
      const want = [String(IOCTL_SYSCALL[process.arch]), `0x${fd.toString(16)}`, `0x${request.toString(16)}`];
      return fs.readdirSync('/proc/self/task').map(Number).filter((tid) => {
        let line: string;
        try { line = fs.readFileSync(`/proc/self/task/${tid}/syscall`, 'utf8'); } catch { return false; }
        const f = line.trim().split(/\s+/);
        return f[0] === want[0] && f[1] === want[1] && f[2] === want[2];
      });
    }

    it('a timer fires while a blocking ioctl is in progress, and the main thread can issue ioctls meanwhile', async () => {
      expect(IOCTL_SYSCALL[process.arch]).toBeDefined();
      const file = path.join(mountpoint, 'flags-target');
      fs.writeFileSync(file, 'x');
      const rootFd = open(mountpoint, { access: 'read' });
      const fileFd = open(file, { access: 'read' });
      const memory = transport.userMemory();
      const flags = Buffer.alloc(FS_IOC_GETFLAGS.size);
      transport.ioctl(fileFd, FS_IOC_GETFLAGS, flags, memory);

      // If the "async" call ever ran on the main thread, that thread would
      // sleep in the kernel until FITHAW, which it could then never send: a
      // separate process thaws after a while so such a bug fails the test
      // instead of hanging it. Killed below when not needed.
      const watchdog = spawn('sh', ['-c', `sleep ${THAW_WATCHDOG_SECONDS}; exec fsfreeze --unfreeze "$0"`, mountpoint], { stdio: 'ignore', detached: true });
      transport.ioctl(rootFd, FIFREEZE, int_value.encode({}), memory);
      let frozen = true;
      try {
        let settled = false;
        const pending = transport.ioctlAsync(fileFd, FS_IOC_SETFLAGS, flags, memory);
        pending.then(() => { settled = true; }, () => { settled = true; });

        // Timers keep firing until a worker thread is seen inside the ioctl.
        let timerRuns = 0;
        let blocked: number[] = [];
        while (blocked.length === 0) {
          await new Promise((r) => setTimeout(r, 20));
          timerRuns++;
          if (settled) throw new Error('the call finished before a timer saw it blocked: it did not run off the main thread');
          blocked = threadsBlockedIn(fileFd, FS_IOC_SETFLAGS.number);
          if (timerRuns > 1000) throw new Error('the async FS_IOC_SETFLAGS never showed up as blocked');
        }
        expect(timerRuns).toBeGreaterThan(0);
        expect(blocked).toHaveLength(1);
        expect(blocked[0]).not.toBe(process.pid); // not the main thread
        expect(settled).toBe(false);

        // The main thread is free: it answers other ioctls while the worker waits.
        expect(deviceSize(open(loop.path, { access: 'read' }))).toBe(BigInt(64 * MiB));
        await new Promise((r) => setTimeout(r, 50));
        expect(settled).toBe(false);
        expect(threadsBlockedIn(fileFd, FS_IOC_SETFLAGS.number)).toEqual(blocked);

        transport.ioctl(rootFd, FITHAW, int_value.encode({}), memory);
        frozen = false;
        await expect(pending).resolves.toBe(0);
        expect(threadsBlockedIn(fileFd, FS_IOC_SETFLAGS.number)).toEqual([]);
      } finally {
        // Its own process group (detached): the shell and its sleep go together.
        if (watchdog.exitCode === null && watchdog.signalCode === null) process.kill(-watchdog.pid!, 'SIGKILL');
        if (frozen) {
          try { transport.ioctl(rootFd, FITHAW, int_value.encode({}), memory); } catch { /* the watchdog thawed it */ }
        }
      }
    }, 60_000);

    it('a mounted device cannot be opened exclusively: EBUSY', () => {
      const err = syscallErrorOf(() => open(loop.path, { access: 'read', exclusive: true }));
      expect({ errno: err.errno, op: err.op, kind: err.kind }).toEqual({ errno: 'EBUSY', op: 'open', kind: 'busy' });
    });
  });
});
