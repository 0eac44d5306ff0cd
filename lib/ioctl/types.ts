/**
 * The contract between the kernel clients (lib/kernel) and whatever executes
 * their ioctls: the real kernel through koffi (./transport.ts) or the
 * simulated kernel (lib/kernel/sim). Both receive the same request numbers
 * and the same argument bytes, and both read the buffers behind user-pointer
 * fields through a `UserMemory`, so a client cannot tell them apart.
 */
import type { IoctlDef } from '../../ioctl-defs';

export type Access = 'read' | 'write' | 'readwrite';

export interface OpenOptions {
  access: Access;
  /** O_EXCL on a block device: fail with EBUSY if anyone holds it exclusively. */
  exclusive?: boolean;
  /** O_DIRECT: bypass the page cache (buffers and offsets must be aligned). */
  direct?: boolean;
}

/**
 * Buffers that a request's user-pointer fields point to. `pin` returns the
 * address to put into the pointer field and keeps the buffer alive until the
 * call that uses it has returned (also for calls that run on another thread).
 * `read`/`write` are copy_from_user/copy_to_user: they fail with EFAULT for an
 * address range that is not inside a pinned buffer.
 */
export interface UserMemory {
  pin(buf: Uint8Array): bigint;
  read(address: bigint, length: number): Buffer;
  write(address: bigint, data: Uint8Array): void;
}

export interface IoctlTransport {
  /** `kernel` for the real one; `sim` for the simulated kernel. */
  readonly kind: 'kernel' | 'sim';
  /** Opens with O_CLOEXEC plus the given flags; throws SyscallError (op `open`). */
  open(path: string, options: OpenOptions): number;
  close(fd: number): void;
  /** The path an fd was opened with (for messages). */
  pathOf(fd: number): string | undefined;
  /** A fresh set of pinned buffers for one call. */
  userMemory(): UserMemory;
  /**
   * Issues the request synchronously. Returns the ioctl's non-negative
   * result; throws SyscallError carrying the errno name, the ioctl's name and
   * the fd's path.
   */
  ioctl(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): number;
  /** The same, run off Node's main thread (for calls that block, like WAIT_EVENT). */
  ioctlAsync(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): Promise<number>;
}
