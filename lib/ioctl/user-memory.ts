import { SyscallError } from '../errors';
import type { UserMemory } from './types';

// koffi is loaded on the first pin only: requests without user pointers (and
// start-up on the simulated kernel) do not pay for loading the native module.
let native: typeof import('./native') | undefined;
function address(b: Buffer): bigint {
  native ??= require('./native') as typeof import('./native');
  return native.address(b);
}

interface Region { start: bigint; end: bigint; buf: Buffer }

/**
 * Pinned buffers of one call. Addresses are the buffers' real addresses
 * (koffi.address), so the real kernel can follow them; the simulated kernel
 * follows them through `read`/`write`, which only accept ranges inside a
 * pinned buffer, like copy_from_user faults on an unmapped address.
 */
export class PinnedUserMemory implements UserMemory {
  private readonly regions: Region[] = [];

  pin(buf: Uint8Array): bigint {
    const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (b.length === 0) return 0n;
    const start = address(b);
    this.regions.push({ start, end: start + BigInt(b.length), buf: b });
    return start;
  }

  private find(addr: bigint, length: number, op: string): { buf: Buffer; at: number } {
    const end = addr + BigInt(length);
    for (const r of this.regions) {
      if (addr >= r.start && end <= r.end) return { buf: r.buf, at: Number(addr - r.start) };
    }
    throw new SyscallError('EFAULT', op, `0x${addr.toString(16)}+${length}`);
  }

  read(addr: bigint, length: number): Buffer {
    if (length === 0) return Buffer.alloc(0);
    const { buf, at } = this.find(addr, length, 'copy_from_user');
    return Buffer.from(buf.subarray(at, at + length));
  }

  write(addr: bigint, data: Uint8Array): void {
    if (data.length === 0) return;
    const { buf, at } = this.find(addr, data.length, 'copy_to_user');
    buf.set(data, at);
  }
}
