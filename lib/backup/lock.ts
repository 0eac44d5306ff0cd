/**
 * One writer per repository: a JSON lock file `REPO/lock` holding who has it
 * (pid, its start time, host, boot id, uid, command, times). It appears
 * atomically with its full content (written to a temp file, then hard-linked
 * into place, which fails with EEXIST when someone holds it).
 *
 * A dead process does not hold it forever: on the same host a lock is stale
 * when its pid is gone (or reused: the start time differs) or the machine
 * has rebooted since (boot id differs); a lock from another host (repository
 * on NFS) is stale when its holder has not refreshed it for STALE_AFTER_MS.
 * Holders refresh every REFRESH_MS. A stale lock is broken with a warning.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as os from 'os';
import * as path from 'path';
import { LockHeldError, RepositoryCorruptedError } from '../errors';
import { isProcessDead, processStartTime } from '../kernel/records';
import { FILE_MODE, errnoCode, fsyncDir, writeFileAtomic } from './fsutil';

export const LOCK_FILE = 'lock';
export const REFRESH_MS = 5 * 60 * 1000;
export const STALE_AFTER_MS = 30 * 60 * 1000;

export interface LockInfo {
  pid: number;
  pidStartTime: string | null;
  host: string;
  bootId: string | null;
  uid: number;
  command: string;
  createdAt: string;
  refreshedAt: string;
  /** Random, so a holder recognises its own lock before removing it. */
  nonce: string;
}

let cachedBootId: string | null | undefined;
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

/** Why a lock is stale, or null when its holder may still be running. */
export function staleReason(info: LockInfo, now = Date.now()): string | null {
  if (info.host === os.hostname()) {
    const myBoot = bootId();
    if (info.bootId && myBoot && info.bootId !== myBoot) return 'the machine has rebooted since it was taken';
    if (isProcessDead(info.pid, info.pidStartTime)) return `process ${info.pid} is no longer running`;
    return null;
  }
  const refreshed = Date.parse(info.refreshedAt);
  if (Number.isFinite(refreshed) && now - refreshed > STALE_AFTER_MS) {
    return `it was last refreshed at ${info.refreshedAt}, more than ${STALE_AFTER_MS / 60000} minutes ago`;
  }
  return null;
}

function parseLock(text: string): LockInfo | null {
  try {
    const v = JSON.parse(text) as Partial<LockInfo>;
    if (typeof v.pid !== 'number' || typeof v.host !== 'string') return null;
    return {
      pid: v.pid,
      pidStartTime: typeof v.pidStartTime === 'string' ? v.pidStartTime : null,
      host: v.host,
      bootId: typeof v.bootId === 'string' ? v.bootId : null,
      uid: typeof v.uid === 'number' ? v.uid : -1,
      command: typeof v.command === 'string' ? v.command : '',
      createdAt: typeof v.createdAt === 'string' ? v.createdAt : '',
      refreshedAt: typeof v.refreshedAt === 'string' ? v.refreshedAt : typeof v.createdAt === 'string' ? v.createdAt : '',
      nonce: typeof v.nonce === 'string' ? v.nonce : '',
    };
  } catch {
    return null;
  }
}

/** The lock as it is on disk: null when nobody holds it; `info` null when the file does not parse. */
export async function readLock(repoDir: string): Promise<{ text: string; info: LockInfo | null; mtimeMs: number } | null> {
  const file = path.join(repoDir, LOCK_FILE);
  try {
    const [text, st] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
    return { text, info: parseLock(text), mtimeMs: st.mtimeMs };
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}

export function describeHolder(info: LockInfo): string {
  return `pid ${info.pid} on host ${info.host}${info.command ? ` (${info.command})` : ''}, since ${info.createdAt}`;
}

export interface LockOptions {
  /** What the holder is doing, shown to whoever finds the lock (e.g. `blksnap backup`). */
  command: string;
  /** Called with a message when a stale lock is broken. */
  warn?: (msg: string) => void;
}

export class RepositoryLock {
  private timer: NodeJS.Timeout | null = null;
  private released = false;

  private constructor(readonly repoDir: string, private info: LockInfo) {}

  get file(): string {
    return path.join(this.repoDir, LOCK_FILE);
  }

  get holder(): LockInfo {
    return this.info;
  }

  /**
   * Takes the lock or throws LockHeldError naming the holder and how to
   * remove a stale lock. Breaks a stale lock (with a warning) and retries.
   */
  static async acquire(repoDir: string, options: LockOptions): Promise<RepositoryLock> {
    const file = path.join(repoDir, LOCK_FILE);
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = new Date().toISOString();
      const info: LockInfo = {
        pid: process.pid,
        pidStartTime: processStartTime(process.pid),
        host: os.hostname(),
        bootId: bootId(),
        uid: process.getuid ? process.getuid() : -1,
        command: options.command,
        createdAt: now,
        refreshedAt: now,
        nonce: crypto.randomBytes(8).toString('hex'),
      };
      if (await linkIntoPlace(file, JSON.stringify(info, null, 2) + '\n')) {
        const lock = new RepositoryLock(repoDir, info);
        lock.startRefresh();
        return lock;
      }
      const current = await readLock(repoDir);
      if (!current) continue; // released between our link and our read
      let reason: string | null;
      if (current.info) {
        reason = staleReason(current.info);
      } else {
        // A lock file we cannot parse was not written by this tool's atomic
        // link; give a writer of another version a minute before calling it stale.
        reason = Date.now() - current.mtimeMs > 60_000 ? 'its content is not a lock this tool can read' : null;
      }
      if (reason === null) {
        const who = current.info ? describeHolder(current.info) : 'an unreadable lock file';
        throw new LockHeldError(`repository ${repoDir} is locked by ${who}`, {
          path: file,
          hint: `wait for it to finish; if no blksnap process is using this repository any more, run \`blksnap cleanup --repo ${repoDir}\` or remove ${file}`,
        });
      }
      if (await breakStaleLock(file, current.text)) {
        options.warn?.(`removed a stale lock of ${current.info ? describeHolder(current.info) : 'an unknown holder'}: ${reason}`);
      }
    }
    throw new LockHeldError(`repository ${repoDir}: could not take the lock (it keeps changing hands)`, { path: file, hint: 'another blksnap process is starting on this repository; try again' });
  }

  private startRefresh(): void {
    this.timer = setInterval(() => {
      void this.refresh().catch(() => undefined);
    }, REFRESH_MS);
    this.timer.unref();
  }

  /** Rewrites `refreshedAt` so holders on other hosts see the lock is alive. */
  async refresh(): Promise<void> {
    if (this.released) return;
    const current = await readLock(this.repoDir);
    if (!current?.info || current.info.nonce !== this.info.nonce) {
      throw new RepositoryCorruptedError(`repository ${this.repoDir}: our lock was removed by someone else`, { path: this.file });
    }
    this.info = { ...this.info, refreshedAt: new Date().toISOString() };
    await writeFileAtomic(this.file, JSON.stringify(this.info, null, 2) + '\n');
  }

  /** Removes the lock if it is still ours. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    const current = await readLock(this.repoDir).catch(() => null);
    if (current?.info?.nonce === this.info.nonce) {
      await fsp.rm(this.file, { force: true });
      await fsyncDir(this.repoDir).catch(() => undefined);
    }
  }

  /** The same, for a process exit path that cannot wait. */
  releaseSync(): void {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    try {
      const info = parseLock(fs.readFileSync(this.file, 'utf8'));
      if (info?.nonce === this.info.nonce) fs.rmSync(this.file, { force: true });
    } catch {
      /* gone already */
    }
  }
}

/** Creates `file` with `content`, atomically and only if it does not exist. */
async function linkIntoPlace(file: string, content: string): Promise<boolean> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const handle = await fsp.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, FILE_MODE);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fsp.link(tmp, file);
    await fsyncDir(dir);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw err;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/**
 * Removes a stale lock only if it is still the one judged stale: it is
 * renamed aside first (atomic), and put back if what was moved turns out to
 * be a newer lock that appeared in between.
 */
async function breakStaleLock(file: string, staleText: string): Promise<boolean> {
  const aside = `${file}.stale-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  try {
    await fsp.rename(file, aside);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
  const moved = await fsp.readFile(aside, 'utf8').catch(() => '');
  if (moved !== staleText) {
    await fsp.link(aside, file).catch(() => undefined);
    await fsp.rm(aside, { force: true });
    return false;
  }
  await fsp.rm(aside, { force: true });
  await fsyncDir(path.dirname(file));
  return true;
}
