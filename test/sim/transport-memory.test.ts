/**
 * PinnedUserMemory: the addresses put into user-pointer fields are the real
 * addresses of the buffers (the kernel reads them there: checked through
 * /proc/self/mem, i.e. by the kernel's own view of this process's memory),
 * and read/write behave like copy_from_user/copy_to_user for the simulated
 * kernel (EFAULT outside a pinned buffer). No root needed.
 */
import * as fs from 'fs';
import { KernelTransport, PinnedUserMemory } from '../../lib/ioctl';
import { SyscallError } from '../../lib/errors';

/** `length` bytes at `address` of this process, as the kernel reads them. */
function readOwnMemory(address: bigint, length: number): Buffer {
  const fd = fs.openSync('/proc/self/mem', 'r');
  try {
    const out = Buffer.alloc(length);
    const n = fs.readSync(fd, out, 0, length, address);
    expect(n).toBe(length);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

function efaultOf(fn: () => unknown): SyscallError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SyscallError) return err;
    throw err;
  }
  throw new Error('expected EFAULT, the access succeeded');
}

describe('pin() returns the buffer\'s real address', () => {
  it('for a Buffer of its own', () => {
    const buf = Buffer.alloc(64);
    buf.write('pinned for the kernel', 3);
    const addr = new PinnedUserMemory().pin(buf);
    expect(readOwnMemory(addr, 64).equals(buf)).toBe(true);
  });

  it('for a small Buffer carved out of Node\'s shared pool (non-zero byteOffset)', () => {
    Buffer.from('x'); // so the next pool slice cannot start at offset 0 of a fresh pool
    const buf = Buffer.from('/dev/loop7\0');
    expect(buf.byteOffset).toBeGreaterThan(0); // premise: a pool slice
    const addr = new PinnedUserMemory().pin(buf);
    expect(readOwnMemory(addr, buf.length).toString('latin1')).toBe('/dev/loop7\0');
  });

  it('for a Uint8Array view into the middle of an ArrayBuffer', () => {
    const backing = new Uint8Array(256).map((_, i) => i);
    const view = new Uint8Array(backing.buffer, 100, 16);
    const addr = new PinnedUserMemory().pin(view);
    expect([...readOwnMemory(addr, 16)]).toEqual([...view]);
  });

  it('the same memory, not a copy: later changes show at the address', () => {
    const buf = Buffer.alloc(8);
    const addr = new PinnedUserMemory().pin(buf);
    buf.writeBigUInt64LE(0x1122334455667788n);
    expect(readOwnMemory(addr, 8).readBigUInt64LE()).toBe(0x1122334455667788n);
  });

  it('an empty buffer pins as NULL', () => {
    expect(new PinnedUserMemory().pin(Buffer.alloc(0))).toBe(0n);
  });

  it('KernelTransport hands out a fresh memory per call', () => {
    const t = new KernelTransport();
    const a = t.userMemory();
    const b = t.userMemory();
    const addr = a.pin(Buffer.from('abc'));
    expect(a.read(addr, 3).toString()).toBe('abc');
    expect(efaultOf(() => b.read(addr, 3)).errno).toBe('EFAULT');
  });
});

describe('read/write: copy_from_user / copy_to_user semantics', () => {
  const setup = () => {
    const memory = new PinnedUserMemory();
    const one = Buffer.from('0123456789');
    const two = Buffer.alloc(4);
    return { memory, one, two, a1: memory.pin(one), a2: memory.pin(two) };
  };

  it('reads a whole buffer and any range inside it, as a copy', () => {
    const { memory, one, a1 } = setup();
    expect(memory.read(a1, 10).toString()).toBe('0123456789');
    const part = memory.read(a1 + 3n, 4);
    expect(part.toString()).toBe('3456');
    part[0] = 0x41;
    expect(one.toString()).toBe('0123456789');
  });

  it('writes into the caller\'s buffer', () => {
    const { memory, one, two, a1, a2 } = setup();
    memory.write(a2, Buffer.from([1, 2, 3, 4]));
    memory.write(a1 + 8n, Buffer.from('xy'));
    expect([...two]).toEqual([1, 2, 3, 4]);
    expect(one.toString()).toBe('01234567xy');
  });

  it.each([
    ['one byte past the end', (a1: bigint) => [a1 + 10n, 1]],
    ['a range straddling the end', (a1: bigint) => [a1 + 8n, 3]],
    ['one byte before the start', (a1: bigint) => [a1 - 1n, 2]],
    ['NULL', () => [0n, 1]],
  ] as Array<[string, (a1: bigint) => [bigint, number]]>)('EFAULT for %s', (_label, range) => {
    const { memory, one, a1 } = setup();
    const [addr, length] = range(a1);
    const r = efaultOf(() => memory.read(addr, length));
    expect({ errno: r.errno, op: r.op, path: r.path }).toEqual({ errno: 'EFAULT', op: 'copy_from_user', path: `0x${addr.toString(16)}+${length}` });
    const w = efaultOf(() => memory.write(addr, Buffer.alloc(length, 0x5a)));
    expect({ errno: w.errno, op: w.op }).toEqual({ errno: 'EFAULT', op: 'copy_to_user' });
    expect(one.toString()).toBe('0123456789'); // nothing written on a fault
  });

  it('a range spanning two pinned buffers faults even if they happen to be adjacent', () => {
    const memory = new PinnedUserMemory();
    const backing = Buffer.alloc(16);
    const a = memory.pin(backing.subarray(0, 8));
    const b = memory.pin(backing.subarray(8, 16));
    expect(b).toBe(a + 8n);
    expect(efaultOf(() => memory.read(a + 4n, 8)).errno).toBe('EFAULT');
  });

  it('zero-length accesses never fault', () => {
    const memory = new PinnedUserMemory();
    expect(memory.read(0n, 0).length).toBe(0);
    expect(() => memory.write(0xdeadn, Buffer.alloc(0))).not.toThrow();
  });
});
