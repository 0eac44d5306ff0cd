/**
 * Generic Linux ioctls (not blksnap) that the project issues: device size and
 * logical sector size (<linux/fs.h>), partition add/delete (<linux/blkpg.h>,
 * used by the transport tests because its argument holds a user pointer the
 * real kernel follows), and filesystem freeze/thaw and inode flags
 * (<linux/fs.h>); FS_IOC_FIEMAP lives in ./fiemap.ts and is listed here too.
 * test/unit/abi-gcc.test.ts compares all of them with the system's own uapi
 * headers.
 */
import { cstring, pointer, s32, s64, struct, u32, u64 } from './layout';
import { ioctl } from './ioc';
import type { IoctlDef } from './ioc';
import { FS_IOC_FIEMAP, fiemap, fiemap_extent } from './fiemap';
import type { StructDef } from './layout';

/** A bare `__u64` argument (BLKGETSIZE64 writes a `size_t`, 8 bytes on 64-bit). */
export interface U64Value { value: bigint }
export const u64_value = struct<U64Value>('blk_u64', [['value', u64]], { size: 8 });
/** A bare `int` argument, read as unsigned (sector sizes, inode flag bits). */
export interface IntValue { value: number }
export const int_value = struct<IntValue>('blk_int', [['value', u32]], { size: 4 });

/** BLKGETSIZE64 = _IOR(0x12, 114, size_t): device size in bytes. */
export const BLKGETSIZE64 = ioctl('BLKGETSIZE64', 'read', 0x12, 114, u64_value);
/** BLKSSZGET = _IO(0x12, 104): no size in the number, writes an int (logical block size). */
export const BLKSSZGET = ioctl('BLKSSZGET', 'none', 0x12, 104, int_value, 0);

export const BLKPG_OP = { ADD_PARTITION: 1, DEL_PARTITION: 2, RESIZE_PARTITION: 3 } as const;
export const BLKPG_NAME_LENGTH = 64;

export interface BlkpgPartition { start: bigint; length: bigint; pno: number; devname: string; volname: string }
/** Offsets and sizes in bytes; the kernel ignores the names. */
export const blkpg_partition = struct<BlkpgPartition>('blkpg_partition', [
  ['start', s64],
  ['length', s64],
  ['pno', s32],
  ['devname', cstring(BLKPG_NAME_LENGTH)],
  ['volname', cstring(BLKPG_NAME_LENGTH)],
], { size: 152 });

export interface BlkpgIoctlArg { op: number; flags: number; datalen: number; data: bigint }
export const blkpg_ioctl_arg = struct<BlkpgIoctlArg>('blkpg_ioctl_arg', [
  ['op', s32],
  ['flags', s32],
  ['datalen', s32],
  ['data', pointer('struct blkpg_partition')],
], { size: 24 });

/** BLKPG = _IO(0x12, 105): the kernel reads `op` and `data`, then the partition behind `data`. */
export const BLKPG = ioctl('BLKPG', 'none', 0x12, 105, blkpg_ioctl_arg, 0);

/** FIFREEZE/FITHAW = _IOWR('X', 119/120, int), issued on any fd of the filesystem (its root). */
export const FIFREEZE = ioctl('FIFREEZE', 'readwrite', 'X', 119, int_value);
export const FITHAW = ioctl('FITHAW', 'readwrite', 'X', 120, int_value);

/**
 * FS_IOC_GETFLAGS/SETFLAGS are declared with `long` (8 bytes in the number)
 * but the kernel reads and writes an `int`.
 */
export const FS_IOC_GETFLAGS = ioctl('FS_IOC_GETFLAGS', 'read', 'f', 1, int_value, 8);
export const FS_IOC_SETFLAGS = ioctl('FS_IOC_SETFLAGS', 'write', 'f', 2, int_value, 8);

export const linuxIoctls: readonly IoctlDef[] = [
  BLKGETSIZE64, BLKSSZGET, BLKPG, FIFREEZE, FITHAW, FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IOC_FIEMAP,
];
export const linuxStructs: readonly StructDef<any>[] = [u64_value, int_value, blkpg_partition, blkpg_ioctl_arg, fiemap, fiemap_extent];
