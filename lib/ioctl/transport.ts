import * as fs from 'fs';
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
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      throw new SyscallError(code, 'open', path);
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
    if (result < 0) throw new SyscallError(errnoName(errno), request.name, this.paths.get(fd));
    return result;
  }

  async ioctlAsync(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): Promise<number> {
    checkArg(request, arg);
    const { result, errno } = await ioctlOffThread(fd, request.number, arg);
    // `memory` (and `arg`) stay referenced until the worker thread is done.
    keepAlive(memory);
    if (result < 0) throw new SyscallError(errnoName(errno), request.name, this.paths.get(fd));
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
let lastPinned: unknown;
function keepAlive(v: unknown): void {
  lastPinned = v;
}
