/**
 * The running kernel below the clients: ioctls through koffi
 * (lib/ioctl/transport.ts), device identity from sysfs, image nodes from
 * devtmpfs/udev. Loaded only when a real flavour is selected, so commands on
 * the simulated kernel never load koffi.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { FlavourName } from '../../ioctl-defs/index';
import { BLKGETSIZE64, BLKSSZGET, int_value, u64_value } from '../../ioctl-defs/linux';
import { NotFoundError, ShortReadError, SyscallError, UsageError, isErrno } from '../errors';
import { KernelTransport } from '../ioctl/transport';
import type { IoctlTransport } from '../ioctl/types';
import type { KernelPlatform } from './platform';
import type { DeviceIdentity, ImageReader } from './types';

const SYS_DEV_BLOCK = '/sys/dev/block';
const BY_ID = '/dev/disk/by-id';
const IMAGE_POLL_MS = 50;

/**
 * glibc's major()/minor() for a 64-bit dev_t. Its masks are 32-bit
 * (`~0xfff` is 0xfffff000 there): with an unbounded bigint `~` the high
 * bits of the major would leak into the minor.
 */
export function devMajor(dev: bigint): number {
  return Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n));
}
export function devMinor(dev: bigint): number {
  return Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n));
}

function readSys(p: string): string | null {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return null;
  }
}

function ueventField(sysDir: string, key: string): string | null {
  const text = readSys(path.join(sysDir, 'uevent'));
  if (!text) return null;
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && line.slice(0, eq) === key) return line.slice(eq + 1);
  }
  return null;
}

function stableIdOf(canonical: string): string | null {
  let names: string[];
  try {
    names = fs.readdirSync(BY_ID).sort();
  } catch {
    return null;
  }
  // Prefer names that describe the hardware over wwn-/nvme-eui aliases.
  const ranked = [...names.filter((n) => !/^(wwn-|nvme-eui\.)/.test(n)), ...names.filter((n) => /^(wwn-|nvme-eui\.)/.test(n))];
  for (const name of ranked) {
    try {
      if (fs.realpathSync(path.join(BY_ID, name)) === canonical) return name;
    } catch {
      // dangling link
    }
  }
  return null;
}

/** Identity of block device MAJ:MIN from sysfs; `arg` is only used in messages. */
export function identityOf(major: number, minor: number, arg: string): DeviceIdentity {
  const sysDir = path.join(SYS_DEV_BLOCK, `${major}:${minor}`);
  const devName = ueventField(sysDir, 'DEVNAME');
  if (!devName) {
    throw new NotFoundError(`${arg}: block device ${major}:${minor} is not known to the kernel (no ${sysDir})`, { path: arg, op: 'sysfs' });
  }
  const canonical = `/dev/${devName}`;
  const sectors = readSys(path.join(sysDir, 'size'));
  let parent: string | null = null;
  if (fs.existsSync(path.join(sysDir, 'partition'))) {
    try {
      parent = `/dev/${path.basename(path.dirname(fs.realpathSync(sysDir)))}`;
    } catch {
      parent = null;
    }
  }
  return {
    path: canonical,
    major,
    minor,
    size: sectors !== null && /^\d+$/.test(sectors) ? BigInt(sectors) * 512n : 0n,
    stableId: stableIdOf(canonical),
    parent,
  };
}

export async function resolveBlockDevice(arg: string): Promise<DeviceIdentity> {
  if (typeof arg !== 'string' || arg.trim() === '') throw new UsageError('a device path is required');
  let real: string;
  try {
    real = await fs.promises.realpath(arg);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new NotFoundError(`${arg}: no such device`, { errno: code, op: 'realpath', path: arg, hint: 'check the device name (see `lsblk`)' });
    }
    throw new SyscallError(code, 'realpath', arg);
  }
  let st: fs.BigIntStats;
  try {
    st = await fs.promises.stat(real, { bigint: true });
  } catch (err) {
    throw new SyscallError((err as NodeJS.ErrnoException).code ?? 'EIO', 'stat', arg);
  }
  if (!st.isBlockDevice()) {
    const what = st.isDirectory() ? 'a directory'
      : st.isFile() ? 'a regular file'
      : st.isCharacterDevice() ? 'a character device'
      : 'not a device';
    throw new UsageError(`${arg}: is ${what}, not a block device`, {
      errno: 'ENOTBLK',
      path: arg,
      hint: st.isFile() ? 'image files are devices only on the simulated kernel (--kernel sim); for a real file use a loop device (losetup)' : 'give a block device such as /dev/sdb1 (see `lsblk`)',
    });
  }
  const identity = identityOf(devMajor(st.rdev), devMinor(st.rdev), arg);
  // A node outside /dev (or a second node for the same device) still maps
  // to the kernel's name: the standalone module reopens the path it was
  // given, so only /dev/NAME is safe to pass on (§7).
  if (identity.path !== real) {
    const canonicalStat = await fs.promises.stat(identity.path, { bigint: true }).catch(() => null);
    if (!canonicalStat || !canonicalStat.isBlockDevice() || canonicalStat.rdev !== st.rdev) {
      throw new NotFoundError(`${arg}: its canonical node ${identity.path} is missing`, { path: arg, hint: 'is devtmpfs mounted on /dev?' });
    }
  }
  return identity;
}

interface MountEntry { majmin: string; mountPoint: string; source: string }

function mountInfo(): MountEntry[] {
  const text = readSys('/proc/self/mountinfo');
  if (!text) return [];
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const left = line.slice(0, dash).split(' ');
    const right = line.slice(dash + 3).split(' ');
    out.push({ majmin: left[2], mountPoint: left[4].replace(/\\040/g, ' '), source: right[1] ?? '' });
  }
  return out;
}

/** The device the filesystem object `p` (or its nearest existing ancestor) lives on. */
export async function blockDeviceOfPath(p: string): Promise<DeviceIdentity | null> {
  let cur = path.resolve(p);
  let st: fs.BigIntStats | null = null;
  for (;;) {
    st = await fs.promises.stat(cur, { bigint: true }).catch(() => null);
    if (st) break;
    const up = path.dirname(cur);
    if (up === cur) return null;
    cur = up;
  }
  if (st.isBlockDevice()) return resolveBlockDevice(cur);
  const major = devMajor(st.dev);
  const minor = devMinor(st.dev);
  if (fs.existsSync(path.join(SYS_DEV_BLOCK, `${major}:${minor}`))) return identityOf(major, minor, p);
  // btrfs and other filesystems report an anonymous st_dev; the mount's
  // source names the block device behind it.
  const mount = mountInfo().find((m) => m.majmin === `${major}:${minor}`);
  if (mount && mount.source.startsWith('/dev/')) {
    return resolveBlockDevice(mount.source).catch(() => null);
  }
  return null; // tmpfs, overlay, network filesystems: no local block device
}

function findUdevadm(): string | null {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const p = path.join(dir, 'udevadm');
    if (fs.existsSync(p)) return p;
  }
  return null;
}

const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._:+-]*$/;

export async function waitForImageNode(imageName: string, timeoutMs: number): Promise<string> {
  if (!IMAGE_NAME.test(imageName)) {
    throw new UsageError(`unexpected image name "${imageName}" from the kernel`, { op: 'SNAPSHOTINFO' });
  }
  const nodePath = `/dev/${imageName}`;
  const deadline = Date.now() + Math.max(0, timeoutMs);
  const isNode = (): boolean => {
    try {
      return fs.statSync(nodePath).isBlockDevice();
    } catch {
      return false;
    }
  };
  if (isNode()) return nodePath;
  const udevadm = findUdevadm();
  if (udevadm) {
    const seconds = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const execa = require('execa') as typeof import('execa');
      await execa(udevadm, ['settle', `--timeout=${seconds}`], { reject: false, timeout: (seconds + 1) * 1000 });
    } catch {
      // settle is only a shortcut; the poll below decides
    }
  }
  while (!isNode()) {
    if (Date.now() >= deadline) {
      throw new NotFoundError(`image ${nodePath} did not appear within ${timeoutMs} ms`, {
        path: nodePath,
        op: 'imagePath',
        hint: udevadm ? 'check udev (`udevadm settle`, `journalctl -u systemd-udevd`)' : 'udevadm is not installed: is devtmpfs mounted on /dev?',
      });
    }
    await new Promise((r) => setTimeout(r, IMAGE_POLL_MS));
  }
  return nodePath;
}

/** A reader that reads exactly what it is asked for; O_DIRECT with aligned bounce buffers where the device allows it. */
class BlockImageReader implements ImageReader {
  /** Aligned bounce buffers not in use; each read in flight holds its own. */
  private readonly idleBounces: Buffer[] = [];

  constructor(
    private readonly transport: IoctlTransport,
    private fd: number,
    readonly path: string,
    readonly size: bigint,
    readonly direct: boolean,
    readonly alignment: number,
  ) {}

  /**
   * A buffer of at least `size` bytes whose address is a multiple of
   * `alignment` (O_DIRECT needs it), owned by the caller until it gives it
   * back: concurrent reads must never share one.
   */
  private takeBounce(size: number): Buffer {
    const i = this.idleBounces.findIndex((b) => b.length >= size);
    if (i >= 0) return this.idleBounces.splice(i, 1)[0];
    const raw = Buffer.allocUnsafeSlow(size + this.alignment);
    const addr = this.transport.userMemory().pin(raw);
    const skip = Number((BigInt(this.alignment) - (addr % BigInt(this.alignment))) % BigInt(this.alignment));
    return raw.subarray(skip, skip + size);
  }

  private isAligned(buf: Buffer, length: number, position: bigint): boolean {
    const a = BigInt(this.alignment);
    if (position % a !== 0n || length % this.alignment !== 0) return false;
    return this.transport.userMemory().pin(buf) % a === 0n;
  }

  async read(buf: Buffer, length: number, position: bigint): Promise<void> {
    if (this.fd < 0) throw new UsageError(`${this.path}: reader is closed`);
    if (!Number.isInteger(length) || length < 0 || length > buf.length) throw new RangeError(`${this.path}: cannot read ${length} bytes into a ${buf.length}-byte buffer`);
    if (length === 0) return;
    if (position < 0n || position + BigInt(length) > this.size) {
      throw new ShortReadError(`${this.path}: read of ${length} bytes at ${position} is past the end (${this.size} bytes)`, { path: this.path, op: 'read' });
    }
    if (!this.direct || this.isAligned(buf, length, position)) {
      await this.readExactly(buf, length, position);
      return;
    }
    const a = BigInt(this.alignment);
    const start = (position / a) * a;
    const end = ((position + BigInt(length) + a - 1n) / a) * a;
    const span = Number(end - start);
    const bounce = this.takeBounce(span);
    try {
      await this.readExactly(bounce, span, start);
      const skip = Number(position - start);
      bounce.copy(buf, 0, skip, skip + length);
    } finally {
      this.idleBounces.push(bounce);
    }
  }

  private async readExactly(buf: Buffer, length: number, position: bigint): Promise<void> {
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = await new Promise<number>((resolve, reject) =>
          fs.read(this.fd, buf, done, length - done, position + BigInt(done), (err, bytes) => (err ? reject(err) : resolve(bytes))));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
        if (code === 'EINTR') continue;
        throw new SyscallError(code, 'read', this.path, code === 'EIO' ? 'a snapshot image fails with EIO after its difference storage overflowed' : undefined);
      }
      // The image of a destroyed snapshot reads EOF through a still-open fd (§7).
      if (n === 0 || (this.direct && n % this.alignment !== 0 && done + n < length)) {
        throw new ShortReadError(`${this.path}: short read: ${done + n} of ${length} bytes at ${position} (the image may have been destroyed)`, { path: this.path, op: 'read' });
      }
      done += n;
    }
  }

  async close(): Promise<void> {
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      this.transport.close(fd);
    }
  }
}

export async function openBlockImage(transport: IoctlTransport, p: string, options: { direct?: boolean }): Promise<ImageReader> {
  const wantDirect = options.direct !== false;
  let fd: number;
  let direct = wantDirect;
  try {
    fd = transport.open(p, { access: 'read', direct: wantDirect });
  } catch (err) {
    // Some filesystems and drivers refuse O_DIRECT: fall back to the page cache.
    if (wantDirect && isErrno(err, 'EINVAL', 'EOPNOTSUPP')) {
      fd = transport.open(p, { access: 'read' });
      direct = false;
    } else if (isErrno(err, 'ENOENT')) {
      throw new NotFoundError(`${p}: no such image`, { errno: 'ENOENT', op: 'open', path: p, cause: err });
    } else {
      throw err;
    }
  }
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    let size = st.size;
    let alignment = 1;
    if (st.isBlockDevice()) {
      const mem = transport.userMemory();
      const sizeArg = u64_value.encode({});
      transport.ioctl(fd, BLKGETSIZE64, sizeArg, mem);
      size = u64_value.decode(sizeArg).value;
      const sszArg = int_value.encode({});
      transport.ioctl(fd, BLKSSZGET, sszArg, mem);
      alignment = int_value.decode(sszArg).value || 512;
    } else if (direct) {
      alignment = 4096; // regular files under O_DIRECT: the filesystem block size is at most a page here
    }
    return new BlockImageReader(transport, fd, p, size, direct, direct ? alignment : 1);
  } catch (err) {
    transport.close(fd);
    throw err;
  }
}

export class RealPlatform implements KernelPlatform {
  readonly kind = 'kernel' as const;
  readonly transport: IoctlTransport;

  constructor(readonly flavour: FlavourName, transport?: IoctlTransport) {
    this.transport = transport ?? new KernelTransport();
  }

  resolveDevice(arg: string): Promise<DeviceIdentity> {
    return resolveBlockDevice(arg);
  }

  deviceOfPath(p: string): Promise<DeviceIdentity | null> {
    return blockDeviceOfPath(p);
  }

  imagePath(imageName: string, timeoutMs: number): Promise<string> {
    return waitForImageNode(imageName, timeoutMs);
  }

  openImage(p: string, options: { direct?: boolean }): Promise<ImageReader> {
    return openBlockImage(this.transport, p, options);
  }
}

export function createRealPlatform(flavour: FlavourName): KernelPlatform {
  return new RealPlatform(flavour);
}
