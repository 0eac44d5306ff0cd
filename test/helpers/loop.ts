/**
 * Loop devices (and ext4 mounts on them) for tests that need a real block
 * device. Everything created here is tracked and removed again:
 *  - `cleanup()` on each object (call it from afterAll/afterEach; idempotent),
 *  - `cleanupAll()` for everything this process created (all test files
 *    jest ran in it),
 *  - a safety net on process exit and on SIGINT/SIGTERM that does the same,
 *    so a failing or interrupted test does not leave devices behind.
 * Other users may be creating loop devices at the same time: only devices
 * whose backing file is ours are ever detached.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vm from 'vm';

export interface LoopOptions {
  /** Size of the backing file (sparse); default 64 MiB. */
  sizeBytes?: number;
  /** Logical sector size (`losetup --sector-size`); default: the kernel's (512). */
  sectorSize?: number;
  /** Allow partitions (`losetup --partscan`); needed for BLKPG. */
  partscan?: boolean;
}

export interface LoopDevice {
  /** `/dev/loopN`. */
  readonly path: string;
  readonly backingFile: string;
  readonly sizeBytes: number;
  /** Detaches the device and removes the backing file. Idempotent. */
  cleanup(): void;
}

export interface Ext4Mount {
  readonly device: string;
  readonly mountpoint: string;
  /** Thaws (if frozen), unmounts and removes the mountpoint. Idempotent. */
  cleanup(): void;
}

interface Resource { cleanup(): void }
interface Registry {
  /** Mounts before loop devices: cleanup runs mounts first. */
  readonly mounts: Set<Resource>;
  readonly loops: Set<Resource>;
  safetyNet: boolean;
}

/**
 * The process object whose events really fire. Jest gives each test file a
 * copy of `process` with events of its own that never see 'exit' or a
 * signal; the main context's `process` is the real one (the same object
 * outside jest).
 */
function realProcess(): NodeJS.Process {
  try {
    return vm.runInThisContext('process') as NodeJS.Process;
  } catch {
    return process;
  }
}

const REGISTRY = Symbol.for('blksnap.test.helpers.loop');
/** One registry and one set of listeners per OS process, shared by every test file jest runs in it. */
function registry(): Registry {
  const p = realProcess() as unknown as Record<symbol, Registry | undefined>;
  return (p[REGISTRY] ??= { mounts: new Set(), loops: new Set(), safetyNet: false });
}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; status?: number };
    if (e.code === 'ENOENT') throw new Error(`${cmd} not found: the real-device tests need util-linux and e2fsprogs`);
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${e.status}): ${(e.stderr ?? '').trim()}`);
  }
}

/** The backing file of /dev/loopN as the kernel reports it, or null when not attached. */
function backingFileOf(loopPath: string): string | null {
  try {
    return fs.readFileSync(`/sys/block/${path.basename(loopPath)}/loop/backing_file`, 'utf8').trim();
  } catch {
    return null;
  }
}

function installSafetyNet(): void {
  const reg = registry();
  if (reg.safetyNet) return;
  reg.safetyNet = true;
  const real = realProcess();
  real.on('exit', () => cleanupAll(false));
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAll(false);
      real.removeListener(signal, onSignal);
      // Die of the same signal, as if we had not been listening.
      real.kill(real.pid, signal);
    };
    real.on(signal, onSignal);
  }
}

/** Removes everything this process created. Throws the first error unless `throwErrors` is false (exit handlers). */
export function cleanupAll(throwErrors = true): void {
  const errors: unknown[] = [];
  const reg = registry();
  for (const set of [reg.mounts, reg.loops]) {
    for (const r of [...set]) {
      try { r.cleanup(); } catch (err) { errors.push(err); }
    }
  }
  if (throwErrors && errors.length > 0) throw errors[0];
}

export function createLoopDevice(options: LoopOptions = {}): LoopDevice {
  installSafetyNet();
  const sizeBytes = options.sizeBytes ?? 64 * 1024 * 1024;
  // The kernel reports the backing file by its real path (checked before detaching).
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-test-loop-')));
  const backingFile = path.join(dir, 'disk.img');
  let devPath: string;
  try {
    fs.writeFileSync(backingFile, '');
    fs.truncateSync(backingFile, sizeBytes);
    const args = ['--find', '--show'];
    if (options.sectorSize !== undefined) args.push('--sector-size', String(options.sectorSize));
    if (options.partscan) args.push('--partscan');
    args.push(backingFile);
    devPath = run('losetup', args).trim();
    if (!/^\/dev\/loop\d+$/.test(devPath)) throw new Error(`losetup printed ${JSON.stringify(devPath)}`);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  let done = false;
  const resource: LoopDevice = {
    path: devPath,
    backingFile,
    sizeBytes,
    cleanup() {
      if (done) return;
      done = true;
      registry().loops.delete(resource);
      let error: unknown;
      // The number may have been reused by someone else if the device was
      // detached behind our back: only detach it while it is still ours.
      if (backingFileOf(devPath) === backingFile) {
        try { run('losetup', ['--detach', devPath]); } catch (err) { error = err; }
      }
      fs.rmSync(dir, { recursive: true, force: true });
      if (error) throw error;
    },
  };
  registry().loops.add(resource);
  return resource;
}

/** Makes an ext4 file system on the device and mounts it on a fresh temporary directory. */
export function mountExt4(loop: LoopDevice): Ext4Mount {
  installSafetyNet();
  run('mkfs.ext4', ['-q', '-F', loop.path]);
  const mountpoint = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-test-mnt-'));
  try {
    run('mount', ['-t', 'ext4', loop.path, mountpoint]);
  } catch (err) {
    fs.rmSync(mountpoint, { recursive: true, force: true });
    throw err;
  }
  let done = false;
  const resource: Ext4Mount = {
    device: loop.path,
    mountpoint,
    cleanup() {
      if (done) return;
      done = true;
      registry().mounts.delete(resource);
      // A test may have frozen it; a frozen file system blocks writers (and
      // the unmount's sync). "Not frozen" is an expected failure here.
      try { run('fsfreeze', ['--unfreeze', mountpoint]); } catch { /* not frozen */ }
      let error: unknown;
      try {
        run('umount', [mountpoint]);
      } catch (err) {
        error = err;
        try { run('umount', ['--lazy', mountpoint]); } catch { /* reported below */ }
      }
      try { fs.rmdirSync(mountpoint); } catch { /* still mounted: reported below */ }
      if (error) throw error;
    },
  };
  registry().mounts.add(resource);
  return resource;
}

/** Loop devices currently attached to `file` (for tests of the cleanup itself). */
export function loopDevicesOf(file: string): string[] {
  return run('losetup', ['--list', '--noheadings', '--output', 'NAME', '--associated', file])
    .split('\n').map((l) => l.trim()).filter(Boolean);
}
