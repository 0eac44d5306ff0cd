/**
 * KernelPlatform of the simulated kernel: devices are regular files (any
 * image file is a device), snapshot images are files in <simDir>/dev named as
 * the kernel names them, and image reads behave as the kernel's do (EIO after
 * an overflow, EOF once the snapshot is destroyed).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { FlavourName } from '../../../ioctl-defs';
import { NotFoundError, ShortReadError, SyscallError, UsageError } from '../../errors';
import type { KernelPlatform } from '../platform';
import type { DeviceIdentity, ImageReader } from '../types';
import { readFully } from './fileio';
import type { SimKernel } from './kernel';
import { capacitySectorsOf, cowBlobName, deviceOfPathInState, findImage, registerDevice, statOrNull } from './model';
import { IMAGE_MAJOR, type DeviceRecord, type SimState } from './state';
import { SimTransport } from './transport';

const SECTOR = 512;
const IMAGE_POLL_MS = 20;

/** Reads up to `length` bytes at `position` on the thread pool (fewer only at end of file). */
async function readFullyAsync(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const n = await new Promise<number>((resolve, reject) => {
      fs.read(fd, buf, done, length - done, position + done, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead)));
    });
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** realpath of the longest existing prefix, plus the rest (for paths that do not exist yet). */
function canonicalOf(p: string): string {
  let head = path.resolve(p);
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...tail.reverse());
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return path.resolve(p);
      tail.push(path.basename(head));
      head = parent;
    }
  }
}

export class SimPlatform implements KernelPlatform {
  readonly kind = 'sim' as const;
  readonly transport: SimTransport;
  /** The canonical state directory. */
  readonly simDir: string;

  constructor(readonly kernel: SimKernel, readonly flavour: FlavourName) {
    this.transport = new SimTransport(kernel, flavour);
    this.simDir = kernel.dir;
  }

  private isImageFile(canonical: string): boolean {
    return path.dirname(canonical) === this.kernel.store.imageDir;
  }

  private identity(d: DeviceRecord, sizeBytes: number): DeviceIdentity {
    return { path: d.path, major: d.major, minor: d.minor, size: BigInt(capacitySectorsOf(sizeBytes) * SECTOR), stableId: d.uuid, parent: d.parent };
  }

  private imageIdentity(state: SimState, canonical: string, sizeBytes: number): DeviceIdentity {
    const found = findImage(state, canonical);
    return {
      path: canonical,
      major: IMAGE_MAJOR,
      minor: found ? found.member.image!.minor : 0,
      size: BigInt(capacitySectorsOf(sizeBytes) * SECTOR),
      stableId: null,
      parent: null,
    };
  }

  async resolveDevice(arg: string): Promise<DeviceIdentity> {
    const abs = path.resolve(arg);
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch {
      throw new NotFoundError(`${arg}: no such device`, { path: arg, hint: 'on the simulated kernel a device is an image file; create one with `blksnap sim create-device`' });
    }
    if (st.isDirectory()) throw new UsageError(`${arg}: is a directory, not a device`, { path: arg });
    if (!st.isFile()) throw new UsageError(`${arg}: not a device (the simulated kernel's devices are regular files)`, { path: arg });
    const canonical = fs.realpathSync(abs);
    if (this.isImageFile(canonical)) return this.imageIdentity(this.kernel.store.readState(), canonical, st.size);
    const d = this.kernel.run((tx) => registerDevice(tx, canonical, false));
    return this.identity(d, st.size);
  }

  async deviceOfPath(p: string): Promise<DeviceIdentity | null> {
    const canonical = canonicalOf(p);
    const state = this.kernel.store.readState();
    if (this.isImageFile(canonical)) {
      const st = statOrNull(canonical);
      return st ? this.imageIdentity(state, canonical, Number(st.size)) : null;
    }
    const found = deviceOfPathInState(state, canonical);
    if (!found) return null;
    const d = state.devices[found.path];
    const st = statOrNull(d.path);
    return this.identity(d, st ? Number(st.size) : 0);
  }

  async imagePath(imageName: string, timeoutMs: number): Promise<string> {
    if (imageName === '' || imageName.includes('/') || imageName === '.' || imageName === '..') {
      throw new UsageError(`invalid snapshot image name "${imageName}"`);
    }
    const p = path.join(this.kernel.store.imageDir, imageName);
    const deadline = Date.now() + Math.max(0, timeoutMs);
    for (;;) {
      if (fs.existsSync(p)) return p;
      if (Date.now() >= deadline) {
        throw new NotFoundError(`${imageName}: the snapshot image did not appear in ${this.kernel.store.imageDir} within ${timeoutMs} ms`, { path: p });
      }
      await new Promise((r) => setTimeout(r, Math.min(IMAGE_POLL_MS, Math.max(1, deadline - Date.now()))));
    }
  }

  async openImage(p: string, options: { direct?: boolean }): Promise<ImageReader> {
    let fd: number;
    try {
      fd = fs.openSync(p, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      // As the real platform words it (real-platform.ts openBlockImage).
      if (code === 'ENOENT') throw new NotFoundError(`${p}: no such image`, { errno: code, op: 'open', path: p, cause: err });
      throw new SyscallError(code, 'open', p);
    }
    try {
      const canonical = fs.realpathSync(p);
      const size = BigInt(capacitySectorsOf(fs.fstatSync(fd).size) * SECTOR);
      if (this.isImageFile(canonical)) return new SimImageReader(this.kernel, p, canonical, fd, size, !!options.direct);
      return new FileReader(p, fd, size, !!options.direct);
    } catch (err) {
      fs.closeSync(fd); // removed between open and realpath (a DESTROY): no fd left behind
      throw err;
    }
  }
}

function checkDirect(reader: { direct: boolean; alignment: number; path: string }, length: number, position: bigint): void {
  if (!reader.direct) return;
  const a = BigInt(reader.alignment);
  if (position % a !== 0n || length % reader.alignment !== 0) throw new SyscallError('EINVAL', 'read', reader.path);
}

function shortRead(p: string, got: number, length: number, position: bigint): ShortReadError {
  return new ShortReadError(`${p}: short read: ${got} of ${length} bytes at offset ${position}`, { path: p, op: 'read' });
}

/** A device file read as a block device. */
class FileReader implements ImageReader {
  readonly alignment = SECTOR;
  private fd: number | null;
  constructor(readonly path: string, fd: number, readonly size: bigint, readonly direct: boolean) {
    this.fd = fd;
  }

  async read(buf: Buffer, length: number, position: bigint): Promise<void> {
    if (this.fd === null) throw new SyscallError('EBADF', 'read', this.path);
    checkDirect(this, length, position);
    const avail = position >= this.size ? 0 : Number(this.size - position);
    const got = readFully(this.fd, buf, Math.min(length, avail), Number(position));
    if (got < length) throw shortRead(this.path, got, length, position);
  }

  async close(): Promise<void> {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * A snapshot image. Each read first lets the module see writes other
 * programs made to the original (so an overflow they cause is noticed), then
 * answers as the kernel: EOF once destroyed, EIO once corrupted, the frozen
 * content otherwise; after DETACH copy-on-write has stopped, so chunks that
 * were never copied show the original's current data (§7).
 */
class SimImageReader implements ImageReader {
  readonly alignment = SECTOR;
  private fd: number | null;
  private deviceStat: string | null = null;
  /** Asynchronous reads not finished yet: close() waits for them, so their fd number is never reused under them. */
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly kernel: SimKernel, readonly path: string, private readonly file: string, fd: number, readonly size: bigint, readonly direct: boolean) {
    this.fd = fd;
  }

  private devStatKey(p: string): string | null {
    const st = statOrNull(p);
    return st ? `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}` : null;
  }

  async read(buf: Buffer, length: number, position: bigint): Promise<void> {
    if (this.fd === null) throw new SyscallError('EBADF', 'read', this.path);
    checkDirect(this, length, position);
    let state = this.kernel.store.readState();
    let found = findImage(state, this.file);
    if (found && state.trackers[found.member.trackerId]?.attached) {
      const d = state.devices[found.member.device];
      const key = this.devStatKey(d.path);
      if (key !== this.deviceStat || d.baseline?.racy) {
        this.kernel.runSynced(() => undefined);
        this.deviceStat = key;
        state = this.kernel.store.readState();
        found = findImage(state, this.file);
      }
    }
    // Destroyed (or a new image of the same name): the old node reads EOF (§7).
    if (!found || fs.fstatSync(this.fd).nlink === 0) throw shortRead(this.path, 0, length, position);
    const img = found.member.image!;
    if (img.errorCode !== 0) throw new SyscallError('EIO', 'read', this.path);
    const avail = position >= this.size ? 0 : Number(this.size - position);
    const want = Math.min(length, avail);
    const tracker = state.trackers[found.member.trackerId];
    let got: number;
    if (tracker && tracker.attached && img.mode !== 'cow') {
      // The frozen content: read off the main thread, as the kernel's image
      // reads are, so a caller's hashing overlaps with the next read.
      const fd = this.fd;
      this.inFlight++;
      try {
        got = await readFullyAsync(fd, buf, want, Number(position));
      } finally {
        this.inFlight--;
        if (this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      }
      // DESTROY while the read was in flight: the image is gone, and a reader of it gets EOF (§7).
      if (fs.fstatSync(fd).nlink === 0) throw shortRead(this.path, 0, length, position);
    } else {
      got = this.readDetached(buf, want, Number(position), found.member.device, cowBlobName(found.snap, found.member), img.chunkShift);
    }
    if (got < length) throw shortRead(this.path, got, length, position);
  }

  /** Copied chunks from the image file, the others from the original (cow images, and any image after DETACH). */
  private readDetached(buf: Buffer, want: number, position: number, device: string, cowBlob: string, chunkShift: number): number {
    let bitmap: Buffer | null = null;
    try {
      bitmap = fs.readFileSync(this.kernel.store.blobPath(cowBlob));
    } catch {
      bitmap = null;
    }
    const chunk = 2 ** chunkShift;
    let dev: number;
    try {
      dev = fs.openSync(device, 'r');
    } catch {
      throw new SyscallError('EIO', 'read', this.path); // the original disk is gone
    }
    try {
      let done = 0;
      while (done < want) {
        const pos = position + done;
        const c = Math.floor(pos / chunk);
        const n = Math.min(want - done, (c + 1) * chunk - pos);
        const fromFrozen = bitmap !== null && bitmap[c] === 1;
        const got = readFully(fromFrozen ? this.fd! : dev, buf, n, pos, done);
        done += got;
        if (got < n) break;
      }
      return done;
    } finally {
      fs.closeSync(dev);
    }
  }

  async close(): Promise<void> {
    const fd = this.fd;
    this.fd = null;
    // As close(2) during a read: the read in progress still completes.
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (fd !== null) fs.closeSync(fd);
  }
}
