/**
 * Typed errors shared by every layer. Each carries what an admin needs to act
 * on it: the errno name the kernel answered, the ioctl or syscall, the device
 * or snapshot it was about, and a hint. The CLI maps `kind` to an exit code
 * in one table (lib/cli/exit-codes.ts); library code never prints.
 */
import { constants as osConstants } from 'os';

/** What went wrong, in the categories an exit code distinguishes. */
export type ErrorKind =
  | 'failure' // anything else
  | 'usage' // bad command line or bad input value
  | 'module_missing' // no blksnap module / no control device
  | 'unsupported_kernel' // kernel without block device filter support
  | 'permission' // not root / EACCES / EPERM
  | 'not_found' // device, snapshot, repository point not found
  | 'busy' // device in another snapshot, storage held, EBUSY
  | 'lock_held' // repository or state lock held by another process
  | 'overflow' // snapshot overflowed its difference storage or is corrupted
  | 'incremental_impossible' // CBT generation/capacity/block size changed
  | 'repository_corrupted' // checksum mismatch, truncated or tampered repository file
  | 'interrupted'; // SIGINT/SIGTERM

export interface ErrorDetails {
  /** errno name, e.g. `ENOENT`. */
  errno?: string;
  /** The ioctl or syscall that failed, e.g. `IOCTL_BLKSNAP_SNAPSHOT_TAKE`, `open`. */
  op?: string;
  /** The device, file or snapshot id the operation was about. */
  path?: string;
  /** One sentence on what to do about it. */
  hint?: string;
  cause?: unknown;
}

// Linux errnos the kernel answers here that Node's table leaves out
// (standalone ATTACH of a path that is not a block device answers ENOTBLK, §7).
const LINUX_ERRNO_EXTRA: Record<string, number> = { ENOTBLK: 15 };

const ERRNO_BY_NUMBER = new Map<number, string>([
  ...Object.entries(LINUX_ERRNO_EXTRA).map(([name, num]): [number, string] => [num, name]),
  ...Object.entries(osConstants.errno).map(([name, num]): [number, string] => [num as number, name]),
]);

/** `ENOENT` for 2; `E<n>` for numbers this platform does not name. */
export function errnoName(num: number): string {
  return ERRNO_BY_NUMBER.get(Math.abs(num)) ?? `E${Math.abs(num)}`;
}

/** 2 for `ENOENT`, 123 for `E123` (the form errnoName gives unnamed numbers); throws for anything else. */
export function errnoNumber(name: string): number {
  const n = (osConstants.errno as Record<string, number>)[name] ?? LINUX_ERRNO_EXTRA[name];
  if (n !== undefined) return n;
  const m = /^E(\d+)$/.exec(name);
  if (m) return Number(m[1]);
  throw new Error(`unknown errno name ${name}`);
}

const STRERROR: Record<string, string> = {
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ESRCH: 'no such process or object',
  EINTR: 'interrupted system call',
  EIO: 'input/output error',
  ENXIO: 'no such device or address',
  EBADF: 'bad file descriptor',
  EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'out of memory',
  EACCES: 'permission denied',
  EFAULT: 'bad address',
  ENOTBLK: 'block device required',
  EBUSY: 'device or resource busy',
  EEXIST: 'file exists',
  ENODEV: 'no such device',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EINVAL: 'invalid argument',
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  ENOTTY: 'inappropriate ioctl for device',
  ENODATA: 'no data available',
  EALREADY: 'operation already in progress',
  EOPNOTSUPP: 'operation not supported',
  ETIMEDOUT: 'timed out',
};

export function strerror(name: string): string {
  return STRERROR[name] ?? name;
}

export class BlksnapError extends Error {
  readonly kind: ErrorKind = 'failure';
  readonly errno?: string;
  readonly op?: string;
  readonly path?: string;
  readonly hint?: string;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = new.target.name;
    this.errno = details.errno;
    this.op = details.op;
    this.path = details.path;
    this.hint = details.hint;
  }

  /** The stable JSON form written by `--json` (errors go to stderr). */
  toJSON(): { kind: ErrorKind; errno: string | null; op: string | null; path: string | null; message: string; hint: string | null } {
    return {
      kind: this.kind,
      errno: this.errno ?? null,
      op: this.op ?? null,
      path: this.path ?? null,
      message: this.message,
      hint: this.hint ?? null,
    };
  }
}

/**
 * A system call or ioctl answered -1. `errno` is always set. Raised by the
 * transport (lib/ioctl) and by the simulated kernel alike; the clients in
 * lib/kernel translate the cases they understand into the subclasses below.
 */
export class SyscallError extends BlksnapError {
  override readonly kind: ErrorKind;
  readonly errnoNumber: number;
  constructor(errno: string, op: string, path: string | undefined, hint?: string, kind?: ErrorKind) {
    super(`${path ? path + ': ' : ''}${op}: ${strerror(errno)} (${errno})`, { errno, op, path, hint });
    this.errnoNumber = errnoNumber(errno);
    this.kind = kind ?? kindOfErrno(errno);
  }
}

/** The default category of a raw errno when no client knows better. */
export function kindOfErrno(errno: string): ErrorKind {
  switch (errno) {
    case 'EPERM': case 'EACCES': return 'permission';
    case 'ENOENT': case 'ENODEV': case 'ENXIO': case 'ESRCH': return 'not_found';
    case 'EBUSY': case 'EALREADY': case 'EEXIST': return 'busy';
    case 'EINTR': return 'interrupted';
    default: return 'failure';
  }
}

export class UsageError extends BlksnapError { override readonly kind = 'usage' as const; }
export class ModuleMissingError extends BlksnapError { override readonly kind = 'module_missing' as const; }
export class UnsupportedKernelError extends BlksnapError { override readonly kind = 'unsupported_kernel' as const; }
export class PermissionError extends BlksnapError { override readonly kind = 'permission' as const; }
export class NotFoundError extends BlksnapError { override readonly kind = 'not_found' as const; }
export class BusyError extends BlksnapError { override readonly kind = 'busy' as const; }
export class LockHeldError extends BlksnapError { override readonly kind = 'lock_held' as const; }
/** The snapshot overflowed its difference storage (error_code -ENOSPC) or is corrupted. */
export class SnapshotOverflowError extends BlksnapError { override readonly kind = 'overflow' as const; }
/** An incremental backup or `cbt changes --since` cannot be honoured (generation, capacity or block size changed). */
export class IncrementalImpossibleError extends BlksnapError { override readonly kind = 'incremental_impossible' as const; }
export class RepositoryCorruptedError extends BlksnapError { override readonly kind = 'repository_corrupted' as const; }
export class InterruptedError extends BlksnapError {
  override readonly kind = 'interrupted' as const;
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals, details: ErrorDetails = {}) {
    super(`interrupted by ${signal}`, details);
    this.signal = signal;
  }
}
/** A read returned fewer bytes than asked (an image that vanished reads EOF, §7). */
export class ShortReadError extends BlksnapError {}

export function isErrno(err: unknown, ...names: string[]): err is SyscallError {
  return err instanceof SyscallError && names.includes(err.errno as string);
}
