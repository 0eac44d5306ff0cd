/**
 * Records of the snapshots this tool created: one JSON file per snapshot in
 * the records directory (BLKSNAP_RUN_DIR; default /run/blksnap, on the
 * simulated kernel <simDir>/run). The kernel knows nothing about who created
 * a snapshot or which file holds its difference storage; these records are
 * how `cleanup` finds snapshots left behind by a killed process, how `list`
 * names a snapshot's devices, and how the device guards (no add after take,
 * no detach of a device in a snapshot) work across processes.
 *
 * Writes are atomic (temporary file, fsync, rename, fsync of the directory),
 * so a reader never sees half a record.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface SnapshotRecord {
  /** Canonical snapshot id. */
  id: string;
  pid: number;
  /** Start time of `pid` (field 22 of /proc/PID/stat) so a reused pid is not mistaken for the creator. */
  pidStartTime: string | null;
  host: string;
  startedAt: string;
  /** Canonical device paths added to the snapshot. */
  devices: string[];
  /** Image paths by device path, once taken. */
  images: Record<string, string>;
  /** Absolute path given to SNAPSHOT_CREATE. */
  diffStorage: string;
  /** Canonical path of the device that holds the difference storage, when known. */
  diffStorageDevice: string | null;
  /** Whether the diff storage path is a directory, a regular file or a block device. */
  diffStorageKind: 'directory' | 'file' | 'block' | null;
  /** ISO time of TAKE, or null while not taken. */
  takenAt: string | null;
  /** What created it, e.g. `snapshot create`, `backup`. */
  purpose: string;
  /**
   * Handed to the user on purpose (`snapshot create`): it outlives its
   * creator, and `cleanup` leaves it alone. False while the creator is
   * responsible for destroying it (a backup), so a killed creator's snapshot
   * is destroyed by `cleanup`.
   */
  keep: boolean;
}

const RECORD_SUFFIX = '.json';

export function defaultRecordsDir(kind: 'kernel' | 'sim', simDir?: string): string {
  const env = process.env.BLKSNAP_RUN_DIR;
  if (env) return path.resolve(env);
  if (kind === 'sim') return path.join(simDir ?? '.', 'run');
  return '/run/blksnap';
}

/** Start time of a process in clock ticks since boot, or null where /proc does not say. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null; // field 22 overall; rest starts at field 3
  } catch {
    return null;
  }
}

/** True when `pid` on this host has ended (or was reused by another process). */
export function isProcessDead(pid: number, startTime: string | null): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return true;
    // EPERM: the pid exists but belongs to someone else; treat it as alive
    // unless its start time proves it is a different process.
  }
  if (startTime === null) return false;
  const now = processStartTime(pid);
  return now !== null && now !== startTime;
}

export class SnapshotRecords {
  constructor(readonly dir: string) {}

  private file(id: string): string {
    return path.join(this.dir, `${id}${RECORD_SUFFIX}`);
  }

  /** Creates or replaces the record of `record.id` atomically. */
  write(record: SnapshotRecord): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const final = this.file(record.id);
    const tmp = path.join(this.dir, `.${record.id}.${process.pid}.tmp`);
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(record, null, 2) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, final);
    syncDir(this.dir);
  }

  /** Applies `change` to the stored record (no-op when there is none). */
  update(id: string, change: (r: SnapshotRecord) => void): SnapshotRecord | null {
    const r = this.read(id);
    if (!r) return null;
    change(r);
    this.write(r);
    return r;
  }

  read(id: string): SnapshotRecord | null {
    let text: string;
    try {
      text = fs.readFileSync(this.file(id), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return parseRecord(text);
  }

  /** Every readable record; files that do not parse are skipped (they are not ours to judge). */
  list(): SnapshotRecord[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw err;
    }
    const out: SnapshotRecord[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith(RECORD_SUFFIX) || name.startsWith('.')) continue;
      try {
        const r = parseRecord(fs.readFileSync(path.join(this.dir, name), 'utf8'));
        if (r && `${r.id}${RECORD_SUFFIX}` === name) out.push(r);
      } catch {
        // unreadable or vanished between readdir and read
      }
    }
    return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  remove(id: string): void {
    try {
      fs.unlinkSync(this.file(id));
      syncDir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

function parseRecord(text: string): SnapshotRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object') return null;
  const r = v as Partial<SnapshotRecord>;
  if (typeof r.id !== 'string' || typeof r.pid !== 'number' || typeof r.host !== 'string') return null;
  return {
    id: r.id,
    pid: r.pid,
    pidStartTime: typeof r.pidStartTime === 'string' ? r.pidStartTime : null,
    host: r.host,
    startedAt: typeof r.startedAt === 'string' ? r.startedAt : '',
    devices: Array.isArray(r.devices) ? r.devices.filter((d): d is string => typeof d === 'string') : [],
    images: r.images && typeof r.images === 'object' ? (r.images as Record<string, string>) : {},
    diffStorage: typeof r.diffStorage === 'string' ? r.diffStorage : '',
    diffStorageDevice: typeof r.diffStorageDevice === 'string' ? r.diffStorageDevice : null,
    diffStorageKind: r.diffStorageKind === 'directory' || r.diffStorageKind === 'file' || r.diffStorageKind === 'block' ? r.diffStorageKind : null,
    takenAt: typeof r.takenAt === 'string' ? r.takenAt : null,
    purpose: typeof r.purpose === 'string' ? r.purpose : '',
    keep: r.keep === true,
  };
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on a directory; the rename is still atomic
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export function newRecord(fields: Pick<SnapshotRecord, 'id' | 'devices' | 'diffStorage' | 'purpose'> & Partial<SnapshotRecord>): SnapshotRecord {
  return {
    pid: process.pid,
    pidStartTime: processStartTime(process.pid),
    host: os.hostname(),
    startedAt: new Date().toISOString(),
    images: {},
    diffStorageDevice: null,
    diffStorageKind: null,
    takenAt: null,
    keep: false,
    ...fields,
  };
}
