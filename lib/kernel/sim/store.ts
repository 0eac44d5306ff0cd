/**
 * The state directory of the simulated kernel and its one lock.
 *
 * Layout (docs/simulated-kernel.md):
 *   state.json            small records (SimState), replaced atomically
 *   lock                  held around each ioctl's read-modify-write: "pid host time"
 *   data/                 large per-object files: CBT maps, content hashes, COW bitmaps
 *   dev/                  snapshot images (the frozen content at TAKE), named as the kernel names them
 *   run/                  left to the snapshot records of the manager (BLKSNAP_RUN_DIR default)
 *
 * Every write is temp + rename, so a reader without the lock (an image
 * reader, a WAIT_EVENT poll) always sees a whole file, and a process killed
 * in the middle leaves the previous state.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LockHeldError } from '../../errors';
import { emptyState, type SimState } from './state';

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the thread (used by the synchronous ioctl path only). */
export function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, Math.max(1, Math.round(ms)));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let tmpCounter = 0;
/** Writes `data` to `file` through a temp file in the same directory and a rename. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}-${++tmpCounter}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

export interface LockOptions {
  /** Give up after this long (a TAKE of a large device holds the lock for seconds). */
  timeoutMs?: number;
}

/**
 * An O_EXCL lock file holding "pid host time". A lock whose pid is dead on
 * this host is stale; it is broken under a second O_EXCL file so that two
 * processes cannot both remove it (one of them would remove the other's
 * fresh lock).
 */
export class DirLock {
  private held = false;
  constructor(private readonly file: string, private readonly host = os.hostname()) {}

  acquire(options: LockOptions = {}): void {
    if (this.held) throw new Error(`simulated kernel: nested lock of ${this.file}`);
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    let wait = 1;
    for (;;) {
      try {
        const fd = fs.openSync(this.file, 'wx');
        fs.writeSync(fd, `${process.pid} ${this.host} ${Date.now()}\n`);
        fs.closeSync(fd);
        this.held = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          fs.mkdirSync(path.dirname(this.file), { recursive: true });
          continue;
        }
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (this.breakIfStale()) continue;
      if (Date.now() > deadline) {
        const holder = this.readHolder();
        throw new LockHeldError(`${this.file}: the simulated kernel is locked by ${holder ? `pid ${holder.pid}` : 'another process'}`, {
          path: this.file,
          hint: 'wait for that process, or remove the lock file if it is not running',
        });
      }
      sleepSync(wait);
      wait = Math.min(wait * 2, 20);
    }
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    try {
      fs.unlinkSync(this.file);
    } catch {
      /* already broken by someone who judged us dead */
    }
  }

  private readHolder(): { pid: number; host: string; time: number; raw: string } | null {
    let raw: string;
    try {
      raw = fs.readFileSync(this.file, 'utf8');
    } catch {
      return null;
    }
    const [pid, host, time] = raw.trim().split(' ');
    return { pid: Number(pid), host: host ?? '', time: Number(time), raw };
  }

  private isStale(h: { pid: number; host: string; time: number } | null): boolean {
    if (!h) return false;
    // A half-written lock file (no pid yet): stale only when it is old.
    if (!Number.isInteger(h.pid) || h.pid <= 0) return Date.now() - safeMtime(this.file) > 5000;
    if (h.host !== this.host) return false;
    return !pidAlive(h.pid);
  }

  private breakIfStale(): boolean {
    const first = this.readHolder();
    if (!this.isStale(first)) return false;
    const breaker = `${this.file}.break`;
    try {
      fs.writeFileSync(breaker, `${process.pid}\n`, { flag: 'wx' });
    } catch {
      // Someone else is breaking it; a breaker left by a dead process expires.
      if (Date.now() - safeMtime(breaker) > 10_000) {
        try { fs.unlinkSync(breaker); } catch { /* raced */ }
      }
      return false;
    }
    try {
      const again = this.readHolder();
      if (again && first && again.raw === first.raw && this.isStale(again)) {
        fs.unlinkSync(this.file);
        return true;
      }
      return false;
    } finally {
      try { fs.unlinkSync(breaker); } catch { /* ignore */ }
    }
  }
}

function safeMtime(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return Date.now();
  }
}

/** One locked read-modify-write of the state. */
export class Transaction {
  private readonly blobCache = new Map<string, Buffer>();
  private readonly dirtyBlobs = new Set<string>();
  private readonly deletedBlobs = new Set<string>();
  private readonly afterCommitHooks: Array<() => void> = [];
  private readonly abortHooks: Array<() => void> = [];
  changed = false;
  /** Devices already compared with their files in this transaction. */
  readonly synced = new Set<string>();

  constructor(readonly store: SimStore, readonly state: SimState) {}

  /** Marks state.json for rewriting. */
  touch(): void {
    this.changed = true;
  }

  blob(name: string): Buffer | null {
    if (this.deletedBlobs.has(name)) return null;
    const cached = this.blobCache.get(name);
    if (cached) return cached;
    try {
      const b = fs.readFileSync(this.store.blobPath(name));
      this.blobCache.set(name, b);
      return b;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** The blob, to be modified in place; call markBlob afterwards. */
  setBlob(name: string, data: Buffer): void {
    this.deletedBlobs.delete(name);
    this.blobCache.set(name, data);
    this.dirtyBlobs.add(name);
  }

  markBlob(name: string): void {
    if (this.blobCache.has(name)) this.dirtyBlobs.add(name);
  }

  deleteBlob(name: string): void {
    this.blobCache.delete(name);
    this.dirtyBlobs.delete(name);
    this.deletedBlobs.add(name);
  }

  afterCommit(fn: () => void): void {
    this.afterCommitHooks.push(fn);
  }

  onAbort(fn: () => void): void {
    this.abortHooks.push(fn);
  }

  commit(): void {
    for (const name of this.dirtyBlobs) writeFileAtomic(this.store.blobPath(name), this.blobCache.get(name)!);
    if (this.changed || this.dirtyBlobs.size > 0 || this.deletedBlobs.size > 0) {
      writeFileAtomic(this.store.statePath, JSON.stringify(this.state));
    }
    for (const name of this.deletedBlobs) {
      try { fs.unlinkSync(this.store.blobPath(name)); } catch { /* gone */ }
    }
    for (const fn of this.afterCommitHooks) {
      try { fn(); } catch { /* best effort cleanup */ }
    }
  }

  abort(): void {
    for (const fn of this.abortHooks) {
      try { fn(); } catch { /* best effort cleanup */ }
    }
  }
}

export class SimStore {
  readonly statePath: string;
  readonly dataDir: string;
  readonly imageDir: string;
  readonly runDir: string;
  private readonly lock: DirLock;

  constructor(readonly dir: string) {
    this.statePath = path.join(dir, 'state.json');
    this.dataDir = path.join(dir, 'data');
    this.imageDir = path.join(dir, 'dev');
    this.runDir = path.join(dir, 'run');
    this.lock = new DirLock(path.join(dir, 'lock'));
  }

  ensureDirs(): void {
    fs.mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.imageDir, { recursive: true, mode: 0o755 });
  }

  blobPath(name: string): string {
    return path.join(this.dataDir, name);
  }

  /**
   * The state as last committed, read without the lock (whole files only,
   * thanks to rename). Not cached: an inode number can be reused by the next
   * rename within one clock tick, so no stat key proves the file unchanged.
   */
  readState(): SimState {
    let text: string;
    try {
      text = fs.readFileSync(this.statePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw err;
    }
    return JSON.parse(text) as SimState;
  }

  /**
   * Runs `fn` under the lock on a private copy of the state and commits what
   * it changed, also when `fn` throws a `KernelAnswer` (an errno is a normal
   * result of an ioctl and the work before it stands); any other exception
   * discards the changes.
   */
  transaction<T>(fn: (tx: Transaction) => T, isResult: (err: unknown) => boolean = () => false): T {
    this.ensureDirs();
    this.lock.acquire();
    try {
      const state = this.readState();
      const tx = new Transaction(this, state);
      let result: T;
      try {
        result = fn(tx);
      } catch (err) {
        if (isResult(err)) tx.commit();
        else tx.abort();
        throw err;
      }
      tx.commit();
      return result;
    } finally {
      this.lock.release();
    }
  }
}
