/**
 * ioctl request numbers, built the way the kernel's <asm-generic/ioctl.h>
 * `_IOC(dir, type, nr, size)` does on x86_64/arm64:
 * bits 0-7 nr, 8-15 type, 16-29 size, 30-31 direction (1 write, 2 read).
 */
import type { StructDef } from './layout';

export type IocDirection = 'none' | 'write' | 'read' | 'readwrite';

const IOC_NRBITS = 8;
const IOC_TYPEBITS = 8;
const IOC_SIZEBITS = 14;
const IOC_NRSHIFT = 0;
const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_DIR_BITS: Record<IocDirection, number> = { none: 0, write: 1, read: 2, readwrite: 3 };

export function ioc(dir: IocDirection, type: number, nr: number, size: number): number {
  if (nr < 0 || nr >= 1 << IOC_NRBITS) throw new RangeError(`ioctl nr ${nr} out of range`);
  if (type < 0 || type >= 1 << IOC_TYPEBITS) throw new RangeError(`ioctl type ${type} out of range`);
  if (size < 0 || size >= 1 << IOC_SIZEBITS) throw new RangeError(`ioctl size ${size} out of range`);
  // `>>> 0` keeps the result an unsigned 32-bit number (the direction bits are the sign bit).
  return ((IOC_DIR_BITS[dir] << IOC_DIRSHIFT) | (size << IOC_SIZESHIFT) | (type << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT)) >>> 0;
}

export interface IoctlDef {
  /** The kernel's name, e.g. `IOCTL_BLKSNAP_SNAPSHOT_CREATE`. */
  readonly name: string;
  readonly dir: IocDirection;
  readonly type: number;
  readonly nr: number;
  readonly size: number;
  readonly number: number;
  /** The argument's layout. */
  readonly arg: StructDef<any>;
}

/**
 * `sizeInNumber` is for requests whose number does not carry the argument's
 * size: the old block ioctls declared with `_IO()` (size 0) that still read or
 * write an argument, and FS_IOC_*FLAGS (declared with `long`, pass an `int`).
 */
export function ioctl(name: string, dir: IocDirection, type: number | string, nr: number, arg: StructDef<any>, sizeInNumber = arg.size): IoctlDef {
  const t = typeof type === 'string' ? type.charCodeAt(0) : type;
  return { name, dir, type: t, nr, size: sizeInNumber, number: ioc(dir, t, nr, sizeInNumber), arg };
}

export const hex = (n: number): string => '0x' + n.toString(16).padStart(8, '0');
