/**
 * Checks on a restore target: what it is, how big, and whether something is
 * using it (mounted, swap, a holder like LVM/md/dm, a partition of it
 * mounted, or — for an image file — the backing file of a loop device).
 * Writing under a mounted filesystem corrupts it, so any of these refuses.
 */
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { BusyError, UsageError } from '../errors';
import { errnoCode } from './fsutil';

export type TargetKind = 'missing' | 'file' | 'block';

export interface TargetInfo {
  path: string;
  kind: TargetKind;
  /** Bytes: a block device's size, a file's current size, 0 when missing. */
  size: number;
  major: number | null;
  minor: number | null;
}

/** glibc's gnu_dev_major/minor for a Node `rdev`. */
export function devMajorMinor(rdev: number): { major: number; minor: number } {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00) | ((hi & 0xfff) << 20);
  return { major, minor: minor >>> 0 };
}

async function readText(file: string): Promise<string | null> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch {
    return null;
  }
}

export async function inspectTarget(target: string): Promise<TargetInfo> {
  const abs = path.resolve(target);
  let st: fs.Stats;
  try {
    st = await fsp.stat(abs);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      try {
        const dir = await fsp.stat(path.dirname(abs));
        if (!dir.isDirectory()) throw new Error('not a directory');
      } catch {
        throw new UsageError(`restore target ${abs}: its directory ${path.dirname(abs)} does not exist`, { path: abs });
      }
      return { path: abs, kind: 'missing', size: 0, major: null, minor: null };
    }
    throw err;
  }
  if (st.isFile()) return { path: abs, kind: 'file', size: st.size, major: null, minor: null };
  if (st.isBlockDevice()) {
    const { major, minor } = devMajorMinor(st.rdev);
    const sectors = await readText(`/sys/dev/block/${major}:${minor}/size`);
    const size = sectors === null ? 0 : Number(sectors.trim()) * 512;
    return { path: abs, kind: 'block', size, major, minor };
  }
  throw new UsageError(`restore target ${abs} is ${st.isDirectory() ? 'a directory' : 'not a regular file or a block device'}`, { path: abs, hint: 'give --to a new file name, an existing image file, or a block device' });
}

/** Device numbers ("maj:min") with a mounted filesystem (from /proc/self/mountinfo). */
export async function mountedDeviceNumbers(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const text = await readText('/proc/self/mountinfo');
  for (const line of (text ?? '').split('\n')) {
    const f = line.split(' ');
    if (f.length > 4) out.set(f[2], f[4]);
  }
  return out;
}

/** Why a target is in use, or null. */
export async function targetInUse(t: TargetInfo): Promise<string | null> {
  if (t.kind === 'block' && t.major !== null && t.minor !== null) {
    const mounted = await mountedDeviceNumbers();
    const self = `${t.major}:${t.minor}`;
    if (mounted.has(self)) return `it is mounted on ${mounted.get(self)}`;
    const sys = `/sys/dev/block/${self}`;
    try {
      const holders = await fsp.readdir(path.join(sys, 'holders'));
      if (holders.length) return `it is held by ${holders.join(', ')} (LVM, RAID or device-mapper)`;
    } catch {
      /* no sysfs entry */
    }
    // Partitions of a whole disk.
    try {
      for (const name of await fsp.readdir(sys)) {
        const dev = await readText(path.join(sys, name, 'dev'));
        if (dev && (await readText(path.join(sys, name, 'partition'))) !== null) {
          const num = dev.trim();
          if (mounted.has(num)) return `its partition ${name} is mounted on ${mounted.get(num)}`;
        }
      }
    } catch {
      /* no sysfs entry */
    }
    const swaps = await readText('/proc/swaps');
    if (swaps) {
      const real = await fsp.realpath(t.path).catch(() => t.path);
      for (const line of swaps.split('\n').slice(1)) {
        if (line.split(/\s+/)[0] === real) return 'it is in use as swap';
      }
    }
    return null;
  }
  if (t.kind === 'file') {
    const real = await fsp.realpath(t.path).catch(() => t.path);
    let loops: string[] = [];
    try {
      loops = (await fsp.readdir('/sys/block')).filter((n) => n.startsWith('loop'));
    } catch {
      /* no sysfs */
    }
    const mounted = await mountedDeviceNumbers();
    for (const loop of loops) {
      const backing = (await readText(`/sys/block/${loop}/loop/backing_file`))?.trim();
      if (backing === real) {
        const dev = (await readText(`/sys/block/${loop}/dev`))?.trim();
        const where = dev && mounted.get(dev);
        return `it backs /dev/${loop}${where ? `, which is mounted on ${where}` : ''}`;
      }
    }
  }
  return null;
}

export async function refuseIfInUse(t: TargetInfo): Promise<void> {
  const why = await targetInUse(t);
  if (why) {
    throw new BusyError(`restore target ${t.path} is in use: ${why}`, { path: t.path, hint: 'unmount it (or detach the loop device) first; restoring under a mounted filesystem corrupts it' });
  }
}
