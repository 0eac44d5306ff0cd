import * as fs from 'fs';
import { constants as osConstants } from 'os';
import type { IoctlDef } from '../../ioctl-defs';
import { SyscallError, errnoName } from '../errors';
import { ioctlOffThread, ioctlSync } from './native';
import { PinnedUserMemory } from './user-memory';
import type { IoctlTransport, OpenOptions, UserMemory } from './types';

export function openFlags(options: OpenOptions): number {
  const c = fs.constants;
  let flags = options.access === 'read' ? c.O_RDONLY : options.access === 'write' ? c.O_WRONLY : c.O_RDWR;
  if (options.exclusive) flags |= c.O_EXCL;
  if (options.direct) flags |= c.O_DIRECT;
  // Node does not export O_CLOEXEC; libuv opens every fd close-on-exec already,
  // so hooks and child tools never inherit a device or control fd.
  return flags;
}

/** Issues ioctls to the running kernel. */
export class KernelTransport implements IoctlTransport {
  readonly kind = 'kernel' as const;
  private readonly paths = new Map<number, string>();

  open(path: string, options: OpenOptions): number {
    let fd: number;
    try {
      fd = fs.openSync(path, openFlags(options));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Only a kernel answer becomes a SyscallError; Node's own argument
      // errors (ERR_INVALID_ARG_VALUE for a path with a NUL byte...) stay as they are.
      if (code === undefined || !isErrnoName(code)) throw err;
      throw new SyscallError(code, 'open', path, openHint(code, options));
    }
    this.paths.set(fd, path);
    return fd;
  }

  close(fd: number): void {
    this.paths.delete(fd);
    fs.closeSync(fd);
  }

  pathOf(fd: number): string | undefined {
    return this.paths.get(fd);
  }

  userMemory(): UserMemory {
    return new PinnedUserMemory();
  }

  ioctl(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): number {
    checkArg(request, arg);
    const { result, errno } = ioctlSync(fd, request.number, arg);
    keepAlive(memory);
    if (result < 0) throw ioctlError(errno, request, this.paths.get(fd));
    return result;
  }

  async ioctlAsync(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): Promise<number> {
    checkArg(request, arg);
    const { result, errno } = await ioctlOffThread(fd, request.number, arg);
    // `arg` and the buffers pinned in `memory` hold the memory the kernel
    // reads and writes on the worker thread: keep both referenced until it is done.
    keepAlive(arg, memory);
    if (result < 0) throw ioctlError(errno, request, this.paths.get(fd));
    return result;
  }
}

function checkArg(request: IoctlDef, arg: Buffer): void {
  // The kernel copies `size` bytes (from the number, or the struct for _IO
  // requests that still take one); a shorter buffer would let it read or
  // write past our allocation.
  const need = Math.max(request.size, request.arg.size);
  if (arg.length < need) throw new RangeError(`${request.name}: argument is ${arg.length} bytes, needs ${need}`);
}

// A reference the optimiser cannot drop: the pinned buffers must outlive the
// native call, not just the statement that started it.
let lastPinned: unknown[] = [];
function keepAlive(...v: unknown[]): void {
  lastPinned = v;
}

function isErrnoName(code: string): boolean {
  return Object.prototype.hasOwnProperty.call(osConstants.errno, code);
}

function openHint(errno: string, options: OpenOptions): string | undefined {
  switch (errno) {
    case 'EACCES': case 'EPERM': return 'blksnap needs root (CAP_SYS_ADMIN) to open devices';
    case 'EBUSY': return options.exclusive ? 'another program holds the device exclusively (mounted, in a snapshot or open with O_EXCL)' : undefined;
    case 'EINVAL': return options.direct ? 'the file system or device does not support O_DIRECT' : undefined;
    default: return undefined;
  }
}

function ioctlError(errno: number, request: IoctlDef, path: string | undefined): SyscallError {
  const name = errnoName(errno);
  // ENOTTY is the kernel's "no such request for this kind of file": a wrong
  // fd type, or a kernel that lacks the feature. The kernel clients word the
  // blksnap-specific cases (no filter support, module missing).
  const hint = name === 'ENOTTY' ? `${path ?? 'this file'} does not answer ${request.name}` : undefined;
  return new SyscallError(name, request.name, path, hint);
}
