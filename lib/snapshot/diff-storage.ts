/**
 * Where the difference storage goes. The kernel does not protect against a
 * storage on a device that is in the same snapshot (SNAPSHOTADD answers 0
 * and TAKE fails, §7), nor against two snapshots sharing one regular file
 * (both accepted, §7): these checks are ours.
 */
import * as fs from 'fs';
import * as path from 'path';
import { BusyError, NotFoundError, UsageError } from '../errors';
import { sameStorage } from '../kernel/clients';
import { SnapshotRecords, defaultRecordsDir } from '../kernel/records';
import type { DeviceIdentity, Kernel } from '../kernel/types';

export type DiffStorageKind = 'directory' | 'file' | 'block';

export interface DiffStorageChoice {
  /** Absolute path given to SNAPSHOT_CREATE. */
  path: string;
  kind: DiffStorageKind;
  /** given: by the caller; configured: the configured default directory; automatic: picked from the safe candidates. */
  source: 'given' | 'configured' | 'automatic';
  /** The block device holding it (null for tmpfs and other device-less filesystems). */
  device: DeviceIdentity | null;
  /** One line saying what was chosen and why (printed when the caller did not give a path). */
  reason: string;
}

export interface DiffStorageRequest {
  /** Explicit path (directory, existing regular file or block device). */
  path?: string;
  /** The configured default directory (config `diff_storage_dir`). */
  configuredDir?: string;
  /** The limit, to check free space of automatically chosen directories. */
  limitBytes: bigint;
  /** Directories tried in order when neither path nor configuredDir is given. */
  candidates?: readonly string[];
}

/** Directories tried when nothing is given or configured. */
export const DEFAULT_DIFF_STORAGE_CANDIDATES: readonly string[] = ['/var/lib/blksnap', '/var/tmp', '/tmp'];

export function recordsOf(kernel: Kernel): SnapshotRecords {
  return new SnapshotRecords(kernel.recordsDir ?? defaultRecordsDir(kernel.kind));
}

function kindOf(st: fs.Stats): DiffStorageKind | null {
  if (st.isDirectory()) return 'directory';
  if (st.isFile()) return 'file';
  if (st.isBlockDevice()) return 'block';
  return null;
}

/** The snapshot device that `storage` would live on, or null when it is safe. */
export function conflictingDevice(storage: DeviceIdentity | null, devices: readonly DeviceIdentity[]): DeviceIdentity | null {
  if (!storage) return null;
  return devices.find((d) => sameStorage(storage, d)) ?? null;
}

async function statOrNull(p: string): Promise<fs.Stats | null> {
  return fs.promises.stat(p).catch(() => null);
}

/**
 * Checks one path as difference storage for a snapshot of `devices`:
 * it exists, is a directory, regular file or block device, is not on any of
 * the devices (nor their parent disk or partitions), and is not a regular
 * file that a live snapshot of ours already uses.
 */
export async function checkDiffStorage(kernel: Kernel, devices: readonly DeviceIdentity[], p: string, label: string): Promise<{ kind: DiffStorageKind; device: DeviceIdentity | null; path: string }> {
  const abs = path.resolve(p);
  const st = await statOrNull(abs);
  if (!st) {
    throw new NotFoundError(`${p}: difference storage does not exist (${label})`, {
      path: p,
      hint: 'give an existing directory (recommended: the kernel makes an unnamed file there that disappears with the snapshot)',
    });
  }
  const kind = kindOf(st);
  if (!kind) throw new UsageError(`${p}: cannot be used as difference storage (${label}): not a directory, regular file or block device`, { path: p });
  const device = await kernel.deviceOfPath(abs);
  const conflict = conflictingDevice(device, devices);
  if (conflict) {
    throw new UsageError(`${p}: difference storage would be on ${device?.path}, which is ${device?.path === conflict.path ? '' : 'part of '}a device being snapshotted (${conflict.path})`, {
      path: p,
      hint: 'put the difference storage on a filesystem of another disk (or a tmpfs directory)',
    });
  }
  if (kind === 'file') {
    const real = await fs.promises.realpath(abs);
    const user = await regularFileUser(kernel, real);
    if (user) {
      throw new BusyError(`${p}: difference storage file is already used by snapshot ${user}`, {
        path: p,
        hint: 'give each snapshot its own file, or a directory',
      });
    }
  }
  return { kind, device, path: abs };
}

/** The id of a live snapshot (per COLLECT) whose record names `realFile` as its storage. */
async function regularFileUser(kernel: Kernel, realFile: string): Promise<string | null> {
  const records = recordsOf(kernel).list().filter((r) => r.diffStorage !== '');
  const users: string[] = [];
  for (const r of records) {
    const rp = await fs.promises.realpath(r.diffStorage).catch(() => r.diffStorage);
    if (rp === realFile) users.push(r.id);
  }
  if (users.length === 0) return null;
  const control = kernel.control();
  try {
    const live = new Set((await control.collectSnapshots()).map(String));
    return users.find((u) => live.has(u)) ?? null;
  } finally {
    control.close();
  }
}

function freeBytes(dir: string): bigint | null {
  try {
    const s = fs.statfsSync(dir, { bigint: true });
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/**
 * The given path, else the configured directory, else the first safe
 * candidate directory with room for the limit; else a UsageError listing
 * every option and why it was refused.
 */
export async function chooseDiffStorage(kernel: Kernel, devices: readonly DeviceIdentity[], request: DiffStorageRequest): Promise<DiffStorageChoice> {
  if (request.path !== undefined && request.path !== '') {
    const c = await checkDiffStorage(kernel, devices, request.path, 'given');
    return { ...c, source: 'given', reason: `difference storage: ${c.path} (given)` };
  }
  if (request.configuredDir !== undefined && request.configuredDir !== '') {
    const c = await checkDiffStorage(kernel, devices, request.configuredDir, 'configured diff_storage_dir');
    if (c.kind !== 'directory') throw new UsageError(`${request.configuredDir}: configured diff_storage_dir is not a directory`, { path: request.configuredDir });
    return { ...c, source: 'configured', reason: `difference storage: a temporary file in ${c.path} (configured diff_storage_dir)` };
  }
  const refused: string[] = [];
  for (const dir of request.candidates ?? DEFAULT_DIFF_STORAGE_CANDIDATES) {
    const st = await statOrNull(dir);
    if (!st || !st.isDirectory()) {
      refused.push(`${dir}: does not exist`);
      continue;
    }
    let c: { kind: DiffStorageKind; device: DeviceIdentity | null; path: string };
    try {
      c = await checkDiffStorage(kernel, devices, dir, 'automatic');
    } catch (err) {
      refused.push(`${dir}: ${(err as Error).message.replace(`${dir}: `, '')}`);
      continue;
    }
    const free = freeBytes(c.path);
    if (free !== null && free < request.limitBytes) {
      refused.push(`${dir}: only ${free} bytes free, the limit is ${request.limitBytes}`);
      continue;
    }
    const where = c.device ? `on ${c.device.path}` : 'not on a block device';
    return { ...c, source: 'automatic', reason: `difference storage: a temporary file in ${c.path} (${where}, not on any snapshotted device)` };
  }
  throw new UsageError(`no safe place for the difference storage: ${refused.join('; ')}`, {
    hint: 'give one with --diff-storage DIR (a directory on a disk that is not snapshotted), or set diff_storage_dir in /etc/blksnap/blksnap.conf',
  });
}
