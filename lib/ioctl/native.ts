/**
 * The one file that loads koffi. Everything native the project does goes
 * through the three functions below.
 */
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

// glibc declares ioctl variadic; koffi cannot run variadic functions on its
// worker threads, so it is declared with a fixed third pointer argument. On
// x86_64 and aarch64 Linux a variadic callee reads integer/pointer arguments
// from the same registers, so the call is the same.
const ioctlFn = libc.func('int ioctl(int fd, unsigned long request, void *arg)');

/** Result and errno of one ioctl. errno is only meaningful when result is -1. */
export interface NativeResult { result: number; errno: number }

export function ioctlSync(fd: number, request: number, arg: Buffer): NativeResult {
  const result = ioctlFn(fd, request, arg) as number;
  return { result, errno: result < 0 ? koffi.errno() : 0 };
}

/** Runs on a libuv worker thread; koffi restores the worker's errno for the callback. */
export function ioctlOffThread(fd: number, request: number, arg: Buffer): Promise<NativeResult> {
  return new Promise((resolve, reject) => {
    ioctlFn.async(fd, request, arg, (err: unknown, result: number) => {
      if (err) reject(err);
      else resolve({ result, errno: result < 0 ? koffi.errno() : 0 });
    });
  });
}

/** The address of a buffer's first byte, for user-pointer fields. */
export function address(buf: Buffer): bigint {
  return koffi.address(buf);
}
