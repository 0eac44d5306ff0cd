/**
 * Turns the errno a kernel (or the simulated kernel) answered into the typed
 * error an admin can act on. The meaning of an errno depends on the request:
 * ENOENT from ATTACH means the filter is not registered, from SNAPSHOTINFO
 * that the device is in no snapshot (blksnap-abi.md §2, §3, §7).
 */
import {
  BlksnapError,
  BusyError,
  IncrementalImpossibleError,
  ModuleMissingError,
  NotFoundError,
  PermissionError,
  SyscallError,
  UnsupportedKernelError,
  UsageError,
  strerror,
} from '../errors';
import type { ErrorDetails } from '../errors';

type ErrorClass = new (message: string, details?: ErrorDetails) => BlksnapError;

/** Builds a typed error that keeps the errno, the request name and the cause. */
export function typed(cls: ErrorClass, message: string, err: SyscallError, path: string | undefined, hint?: string): BlksnapError {
  return new cls(message, { errno: err.errno, op: err.op, path, hint, cause: err });
}

export const ROOT_HINT = 'blksnap talks to the kernel module: run it as root (sudo)';
export const MODULE_HINT = 'load the module (`modprobe blksnap` on a patched kernel, `modprobe veeamblksnap` for the standalone module), or use `--kernel sim` to try blksnap on image files';
export const UNSUPPORTED_HINT = 'use a kernel with the blksnap patches (CONFIG_BLKSNAP) or install the standalone veeamblksnap module; `--kernel sim` runs on image files';

/** Generic cases every request shares; returns null when the errno needs the caller's context. */
export function commonError(err: SyscallError, path: string | undefined): BlksnapError | null {
  switch (err.errno) {
    case 'EPERM':
    case 'EACCES':
      return typed(PermissionError, `${path ? path + ': ' : ''}${err.op}: ${strerror(err.errno)}`, err, path, ROOT_HINT);
    default:
      return null;
  }
}

export function moduleMissing(paths: string[], err?: SyscallError): ModuleMissingError {
  const what = paths.length === 1 ? `${paths[0]} does not exist` : `none of ${paths.join(', ')} exists`;
  return new ModuleMissingError(`blksnap kernel module is not loaded (${what})`, {
    errno: err?.errno ?? 'ENOENT',
    op: err?.op ?? 'open',
    path: paths[0],
    hint: MODULE_HINT,
    cause: err,
  });
}

export function unsupportedKernel(err: SyscallError, path: string | undefined): UnsupportedKernelError {
  return new UnsupportedKernelError(
    `this kernel has no block device filter support (${err.op}: ${err.errno}) — blksnap needs a kernel with the blksnap patches or the standalone module`,
    { errno: err.errno, op: err.op, path, hint: UNSUPPORTED_HINT, cause: err },
  );
}

/** Errors of opening a device or control node. */
export function openError(err: SyscallError, path: string, what: 'device' | 'control' | 'filter'): BlksnapError {
  const common = commonError(err, path);
  if (common) return common;
  switch (err.errno) {
    case 'ENOENT':
    case 'ENXIO':
    case 'ENODEV':
      if (what === 'device') return typed(NotFoundError, `${path}: no such device`, err, path, 'check the device name (see `lsblk`)');
      return moduleMissing([path], err);
    case 'EBUSY':
      return typed(BusyError, `${path}: device is busy (held exclusively by another user)`, err, path);
    default:
      return err;
  }
}

export const ctlNotAttachedHint = (path: string): string => `start change tracking first: blksnap attach ${path}`;

export { BlksnapError, BusyError, IncrementalImpossibleError, NotFoundError, SyscallError, UsageError };
