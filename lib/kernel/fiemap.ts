/**
 * Where a file's data lies on its block device (FS_IOC_FIEMAP), for
 * `cbt mark-dirty --file`: after something wrote a file through a snapshot
 * image, marking that file's sectors dirty keeps the next incremental exact.
 *
 * Physical offsets are relative to the block device the filesystem is on
 * (a partition, when the filesystem is on a partition), so the ranges must be
 * used with that device: `fileSectorRanges` checks it.
 */
import * as fs from 'fs';
import { FIEMAP_EXTENT, FIEMAP_FLAG, FIEMAP_MAX_OFFSET, FS_IOC_FIEMAP, fiemap, fiemap_extent } from '../../ioctl-defs/fiemap';
import { BlksnapError, SyscallError, UsageError, isErrno } from '../errors';
import type { IoctlTransport } from '../ioctl/types';
import type { DeviceIdentity, Kernel, SectorRange } from './types';

export interface FileExtent {
  /** Offset in the file, bytes. */
  logical: bigint;
  /** Offset on the filesystem's block device, bytes. */
  physical: bigint;
  length: bigint;
  flags: number;
}

/** Extents asked for per FIEMAP request. */
const EXTENTS_PER_CALL = 256;

/** Extents whose bytes are not (or not only) at `physical` on the device. */
const UNMAPPABLE = FIEMAP_EXTENT.UNKNOWN | FIEMAP_EXTENT.DELALLOC | FIEMAP_EXTENT.ENCODED |
  FIEMAP_EXTENT.DATA_ENCRYPTED | FIEMAP_EXTENT.NOT_ALIGNED | FIEMAP_EXTENT.DATA_INLINE | FIEMAP_EXTENT.DATA_TAIL;

function defaultTransport(): IoctlTransport {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { KernelTransport } = require('../ioctl/transport') as typeof import('../ioctl/transport');
  return new KernelTransport();
}

/**
 * The file's extents in file order. Holes have no extent. Dirty data is
 * flushed first (FIEMAP_FLAG_SYNC) so delayed allocations have real blocks.
 * Fails for extents whose data is not stored plainly at a device offset
 * (inline, encoded/compressed, encrypted, tail-packed, unknown).
 */
export function fileExtents(path: string, transport: IoctlTransport = defaultTransport()): FileExtent[] {
  const fd = transport.open(path, { access: 'read' });
  const out: FileExtent[] = [];
  try {
    let start = 0n;
    for (;;) {
      const arg = Buffer.alloc(fiemap.size + EXTENTS_PER_CALL * fiemap_extent.size);
      fiemap.encodeInto(arg, {
        fm_start: start,
        fm_length: FIEMAP_MAX_OFFSET - start,
        fm_flags: FIEMAP_FLAG.SYNC,
        fm_extent_count: EXTENTS_PER_CALL,
      });
      try {
        transport.ioctl(fd, FS_IOC_FIEMAP, arg, transport.userMemory());
      } catch (err) {
        if (isErrno(err, 'EOPNOTSUPP', 'ENOTTY')) {
          throw new UsageError(`${path}: this filesystem cannot report where the file's blocks are (FIEMAP unsupported)`, { errno: (err as SyscallError).errno, op: FS_IOC_FIEMAP.name, path, cause: err });
        }
        throw err;
      }
      const mapped = fiemap.decode(arg).fm_mapped_extents;
      if (mapped === 0) break;
      let last = false;
      for (let i = 0; i < mapped; i++) {
        const e = fiemap_extent.decode(arg, fiemap.size + i * fiemap_extent.size);
        if (e.fe_flags & UNMAPPABLE) {
          throw new BlksnapError(`${path}: extent at file offset ${e.fe_logical} has no plain location on the device (flags 0x${e.fe_flags.toString(16)})`, {
            op: FS_IOC_FIEMAP.name,
            path,
            hint: 'mark the whole device or a sector range instead (--range)',
          });
        }
        out.push({ logical: e.fe_logical, physical: e.fe_physical, length: e.fe_length, flags: e.fe_flags });
        if (e.fe_flags & FIEMAP_EXTENT.LAST) last = true;
        start = e.fe_logical + e.fe_length;
      }
      if (last) break;
    }
  } finally {
    transport.close(fd);
  }
  return out;
}

/** Byte extents → 512-byte sector ranges (rounded outwards), adjacent ones merged. */
export function extentsToSectorRanges(extents: readonly Pick<FileExtent, 'physical' | 'length'>[]): SectorRange[] {
  const sorted = [...extents].filter((e) => e.length > 0n).sort((a, b) => (a.physical < b.physical ? -1 : a.physical > b.physical ? 1 : 0));
  const out: SectorRange[] = [];
  for (const e of sorted) {
    const first = e.physical / 512n;
    const end = (e.physical + e.length + 511n) / 512n;
    const prev = out[out.length - 1];
    if (prev && first <= prev.offset + prev.count) {
      const prevEnd = prev.offset + prev.count;
      if (end > prevEnd) prev.count = end - prev.offset;
    } else {
      out.push({ offset: first, count: end - first });
    }
  }
  return out;
}

/**
 * The sector ranges `path` occupies on `device`. Refuses a file that lives
 * on another device (its offsets would mark unrelated blocks).
 * `fileDevice` is where the file lives (Kernel.deviceOfPath(path)).
 */
export function fileSectorRanges(path: string, device: DeviceIdentity, fileDevice: DeviceIdentity | null, transport?: IoctlTransport): SectorRange[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (err) {
    throw new SyscallError((err as NodeJS.ErrnoException).code ?? 'EIO', 'stat', path);
  }
  if (!st.isFile()) throw new UsageError(`${path}: not a regular file`, { path });
  if (!fileDevice || fileDevice.major !== device.major || fileDevice.minor !== device.minor) {
    throw new UsageError(`${path}: the file is not on ${device.path}${fileDevice ? ` (it is on ${fileDevice.path})` : ''}`, {
      path,
      hint: 'give the device that holds the file\'s filesystem (see `findmnt -T FILE`)',
    });
  }
  return extentsToSectorRanges(fileExtents(path, transport));
}

/**
 * `cbt mark-dirty --file`: the sector ranges `filePath` occupies on
 * `deviceArg`, checked to be that device's filesystem. Real kernels only:
 * a simulated device is an image file with no filesystem the host could map.
 */
export async function fileDirtyRanges(kernel: Kernel, filePath: string, deviceArg: string): Promise<SectorRange[]> {
  if (kernel.kind === 'sim') {
    throw new UsageError(`${filePath}: --file needs a real kernel (a simulated device is an image file with no filesystem to map)`, {
      path: filePath,
      hint: 'give sector ranges with --range START:COUNT',
    });
  }
  const device = await kernel.resolveDevice(deviceArg);
  const fileDevice = await kernel.deviceOfPath(filePath);
  return fileSectorRanges(filePath, device, fileDevice);
}
