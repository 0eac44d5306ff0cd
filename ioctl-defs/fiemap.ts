/**
 * FS_IOC_FIEMAP (<linux/fiemap.h>, <linux/fs.h>): where a file's bytes lie on
 * its filesystem's block device. Used by `cbt mark-dirty --file` to turn a
 * file into sector ranges of that device.
 *
 * The request is `struct fiemap` immediately followed by `fm_extent_count`
 * `struct fiemap_extent` entries in the same buffer (a flexible array, not a
 * pointer): the kernel fills `fm_mapped_extents` of them.
 */
import { struct, u32, u64 } from './layout';
import { ioctl } from './ioc';

export interface Fiemap {
  fm_start: bigint;
  fm_length: bigint;
  fm_flags: number;
  fm_mapped_extents: number;
  fm_extent_count: number;
  fm_reserved: number;
}
export const fiemap = struct<Fiemap>('fiemap', [
  ['fm_start', u64],
  ['fm_length', u64],
  ['fm_flags', u32],
  ['fm_mapped_extents', u32],
  ['fm_extent_count', u32],
  ['fm_reserved', u32],
], { size: 32 });

export interface FiemapExtent {
  fe_logical: bigint;
  fe_physical: bigint;
  fe_length: bigint;
  fe_reserved64_0: bigint;
  fe_reserved64_1: bigint;
  fe_flags: number;
  fe_reserved_0: number;
  fe_reserved_1: number;
  fe_reserved_2: number;
}
export const fiemap_extent = struct<FiemapExtent>('fiemap_extent', [
  ['fe_logical', u64],
  ['fe_physical', u64],
  ['fe_length', u64],
  ['fe_reserved64_0', u64],
  ['fe_reserved64_1', u64],
  ['fe_flags', u32],
  ['fe_reserved_0', u32],
  ['fe_reserved_1', u32],
  ['fe_reserved_2', u32],
], { size: 56 });

/** FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap): the number carries only the 32-byte header size. */
export const FS_IOC_FIEMAP = ioctl('FS_IOC_FIEMAP', 'readwrite', 'f', 11, fiemap);

/** fm_flags (request). */
export const FIEMAP_FLAG = {
  /** Flush dirty data first, so delayed allocations get real blocks. */
  SYNC: 0x1,
  XATTR: 0x2,
} as const;

/** fe_flags (answer). */
export const FIEMAP_EXTENT = {
  LAST: 0x1,
  UNKNOWN: 0x2,
  DELALLOC: 0x4,
  ENCODED: 0x8,
  DATA_ENCRYPTED: 0x80,
  NOT_ALIGNED: 0x100,
  DATA_INLINE: 0x200,
  DATA_TAIL: 0x400,
  UNWRITTEN: 0x800,
  MERGED: 0x1000,
  SHARED: 0x2000,
} as const;

/** fm_length that covers the whole file (FIEMAP_MAX_OFFSET, ~0ULL). */
export const FIEMAP_MAX_OFFSET = 0xffff_ffff_ffff_ffffn;
