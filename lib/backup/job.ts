/**
 * One backup run (blksnap-abi.md §5): take the repository lock, clean up
 * what killed runs left, snapshot every device coherently (hooks and
 * fsfreeze around the TAKE only), then per device: CBTINFO, choose full or
 * incremental, read the CBT map, copy the changed tracking blocks into a new
 * point, and — only when every copy is done and SNAPSHOTINFO error_code and
 * the event watcher say the snapshot stayed healthy — commit the points.
 * The snapshot is destroyed, filesystems thawed, temp files removed and the
 * lock released on every path: success, failure, or SIGINT/SIGTERM (the
 * caller aborts `signal`).
 */
import * as fsp from 'fs/promises';
import {
  BlksnapError, IncrementalImpossibleError, InterruptedError, LockHeldError, NotFoundError, SnapshotOverflowError, UsageError,
} from '../errors';
import { scanChangedRuns } from '../cbt';
import type { CbtInfo, DeviceIdentity, Kernel, SnapshotEvent } from '../kernel/types';
import { cleanupSnapshots } from '../snapshot/cleanup';
import { conflictingDevice } from '../snapshot/diff-storage';
import { SnapshotSession } from '../snapshot/session';
import { copyBlocks, runsBytes } from './copy';
import type { CopyStats } from './copy';
import type { DeviceRef, Manifest } from './format';
import { Repository, deviceKey } from './repository';
import type { PointWriter } from './repository';
import { freezeFilesystems, runHook } from './hooks';
import type { FrozenSet } from './hooks';

export type BackupMode = 'auto' | 'full' | 'incremental';

export type BackupEvent =
  | { type: 'warning'; message: string }
  | { type: 'info'; message: string }
  | { type: 'cleanup'; destroyedSnapshots: string[]; removedTemps: string[] }
  | { type: 'snapshot'; id: string; diffStorage: string; diffStorageReason: string; devices: { device: string; image: string | null }[] }
  | { type: 'decision'; device: string; mode: 'full' | 'incremental'; reason: string; point: number; parent: number | null; bytesToCopy: number; blocksToCopy: number }
  | { type: 'progress'; device: string; bytesRead: number; bytesTotal: number }
  | { type: 'device-done'; device: string; stats: CopyStats }
  | { type: 'kernel-event'; event: SnapshotEvent };

export interface BackupOptions {
  kernel: Kernel;
  repository: string;
  devices: readonly string[];
  mode?: BackupMode;
  diffStorage?: string;
  configuredDiffStorageDir?: string;
  limitBytes: bigint;
  preHook?: string | null;
  postHook?: string | null;
  freeze?: readonly string[];
  signal?: AbortSignal;
  onEvent?: (e: BackupEvent) => void;
  /** Written into each manifest (`blksnap-manager 0.1.0`). */
  tool: string;
  chunkSize?: number;
  depth?: number;
  /** Read the images with O_DIRECT where the reader supports it (default true). */
  direct?: boolean;
}

export interface DeviceResult {
  device: string;
  key: string;
  mode: 'full' | 'incremental';
  reason: string;
  point: number;
  parent: number | null;
  generationId: string;
  changesNumber: number;
  sinceChangesNumber: number | null;
  blockSize: number;
  capacity: number;
  changedBlocks: number;
  zeroBlocks: number;
  bytesRead: number;
  bytesWritten: number;
  durationMs: number;
}

export interface BackupSummary {
  repository: string;
  snapshotId: string;
  startedAt: string;
  durationMs: number;
  bytesRead: number;
  bytesWritten: number;
  changedBlocks: number;
  devices: DeviceResult[];
}

interface Decision {
  mode: 'full' | 'incremental';
  reason: string;
  parent: Manifest | null;
}

/**
 * Full or incremental for one device, given the tracker's state after TAKE
 * and the repository's newest point.
 */
export async function decideMode(repo: Repository, key: string, cbt: CbtInfo, mode: BackupMode, devicePath: string): Promise<Decision> {
  if (mode === 'full') return { mode: 'full', reason: 'full backup requested (--mode full)', parent: null };
  const impossible = (reason: string): Decision => {
    if (mode === 'incremental') {
      throw new IncrementalImpossibleError(`${devicePath}: an incremental backup is impossible: ${reason}`, {
        path: devicePath,
        hint: 'run with --mode auto (or --mode full) to make a full backup',
      });
    }
    return { mode: 'full', reason: `full backup: ${reason}`, parent: null };
  };
  const last = await repo.lastPoint(key);
  if (!last) return impossible('no previous backup of this device in the repository');
  if (!last.manifest) return impossible(`the newest point (${last.point}) is unreadable: ${last.error?.message}`);
  try {
    await repo.chain(key, last.point);
  } catch (err) {
    if (!(err instanceof BlksnapError)) throw err;
    return impossible(`the newest point's chain is damaged: ${err.message}`);
  }
  const m = last.manifest;
  const mismatch = trackerMismatch(m, cbt);
  if (mismatch) return impossible(mismatch);
  if (cbt.changesNumber <= m.changesNumber) {
    return impossible(`the tracker's changes number (${cbt.changesNumber}) is not past the last backup's (${m.changesNumber})`);
  }
  return { mode: 'incremental', reason: `incremental since point ${m.point} (changes number ${m.changesNumber})`, parent: m };
}

/** Why the tracker no longer continues the one that made point `m` (blksnap-abi.md §4), or null. */
function trackerMismatch(m: Manifest, cbt: CbtInfo): string | null {
  if (m.generationId !== cbt.generationId) return 'change tracker generation changed (tracker was reset or the machine rebooted)';
  if (m.blockSize !== cbt.blockSize) return `tracking block size changed (from ${m.blockSize} to ${cbt.blockSize} bytes)`;
  if (m.capacity !== Number(cbt.capacity)) return `device capacity changed (from ${m.capacity} to ${cbt.capacity} bytes)`;
  return null;
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new InterruptedError('SIGINT');
}

/** Throws the abort reason when the run was interrupted. */
function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}

function overflowError(limitBytes: bigint, detail: string): SnapshotOverflowError {
  return new SnapshotOverflowError(`backup failed, nothing was committed: the difference storage overflowed (${detail})`, {
    hint: `the snapshot's difference storage filled up with writes made during the backup; raise --limit above ${limitBytes} bytes (to at least the data written to the devices while a backup runs, with margin), or back up at a quieter time`,
  });
}

interface DeviceWork {
  identity: DeviceIdentity;
  ref: DeviceRef;
  imagePath: string;
  cbt: CbtInfo;
  decision: Decision;
  writer: PointWriter;
  stats: CopyStats | null;
  started: number;
  runs: Uint32Array;
}

export async function runBackup(options: BackupOptions): Promise<BackupSummary> {
  const started = Date.now();
  const startedAt = new Date().toISOString();
  const { kernel, signal } = options;
  const emit = (e: BackupEvent) => options.onEvent?.(e);
  const mode = options.mode ?? 'auto';
  if (options.devices.length === 0) throw new UsageError('no devices to back up', { hint: 'give one or more block devices, e.g. blksnap backup /dev/sda1 --repo /backup' });

  const repo = await Repository.open(options.repository, { create: true, warn: (message) => emit({ type: 'warning', message }) });
  const lock = await repo.lock({ command: `blksnap backup ${options.devices.join(' ')}`, warn: (message) => emit({ type: 'warning', message }) });
  let session: SnapshotSession | null = null;
  const work: DeviceWork[] = [];
  let succeeded = false;
  try {
    // What killed runs left: temp points of this repository, snapshots whose creator is gone.
    // A failed first backup of another process discards the repository it created, under the lock:
    // one that opened it just before must not write into what is left.
    await Repository.open(repo.dir);
    const removedTemps = await repo.removeStaleTemps();
    const cleaned = await cleanupSnapshots(kernel);
    if (removedTemps.length || cleaned.destroyed.length) emit({ type: 'cleanup', destroyedSnapshots: cleaned.destroyed, removedTemps });
    checkAbort(signal);

    // An explicit incremental of a device the repository has never seen cannot work: say so before touching the kernel.
    const identities: DeviceIdentity[] = [];
    for (const arg of options.devices) {
      const id = await kernel.resolveDevice(arg);
      if (!identities.some((d) => d.path === id.path)) identities.push(id);
    }
    // A repository on a device being backed up works, but its own writes fill the
    // difference storage during the copy and every point contains the earlier ones.
    const repoDevice = conflictingDevice(await kernel.deviceOfPath(repo.dir), identities);
    if (repoDevice) {
      emit({ type: 'warning', message: `the repository ${repo.dir} is on ${repoDevice.path}, which is being backed up: its writes fill the difference storage and each backup contains the earlier ones; keep the repository on another device` });
    }
    if (mode === 'incremental') {
      for (const id of identities) {
        const key = deviceKey(id);
        const last = await repo.lastPoint(key);
        if (!last) {
          throw new IncrementalImpossibleError(`${id.path}: an incremental backup is impossible: no previous backup of this device in the repository`, { path: id.path, hint: 'run with --mode auto (or --mode full) to make a full backup' });
        }
        // A TAKE never brings a generation back: a tracker that already differs, or none at all (after a
        // reboot or a detach: attaching would start a new generation), refuses here, before attach, hooks,
        // fsfreeze and a snapshot. Other CBTINFO errors are left to the check after the TAKE.
        let mismatch: string | null = null;
        if (last.manifest) {
          const now = await kernel.device(id.path).cbtInfo().catch((err) => (err instanceof NotFoundError ? 'no tracker' as const : null));
          if (now === 'no tracker') mismatch = 'change tracker generation changed (tracker was reset or the machine rebooted)';
          else if (now) mismatch = trackerMismatch(last.manifest, now);
        }
        if (mismatch) {
          throw new IncrementalImpossibleError(`${id.path}: an incremental backup is impossible: ${mismatch}`, { path: id.path, hint: 'run with --mode auto (or --mode full) to make a full backup' });
        }
      }
    }
    await checkFreezeTargets(options.freeze ?? [], [repo.dir, options.diffStorage ?? options.configuredDiffStorageDir ?? null]);

    session = await SnapshotSession.create(kernel, {
      devices: identities.map((d) => d.path),
      diffStorage: options.diffStorage,
      configuredDiffStorageDir: options.configuredDiffStorageDir,
      limitBytes: options.limitBytes,
      noTake: true,
      purpose: 'backup',
    });
    checkAbort(signal);
    const takenAt = await takeWithHooks(session, options, repo.dir);
    session.startWatcher((event) => emit({ type: 'kernel-event', event }));
    emit({
      type: 'snapshot',
      id: session.id.toString(),
      diffStorage: session.diffStorage.path,
      diffStorageReason: session.diffStorage.reason,
      devices: session.devices.map((d) => ({ device: d.identity.path, image: d.imagePath })),
    });
    checkAbort(signal);

    // Decide and prepare every device before copying (all decisions are printed first).
    for (const d of session.devices) {
      const client = kernel.device(d.identity.path);
      const cbt = await client.cbtInfo();
      const ref: DeviceRef = { path: d.identity.path, stableId: d.identity.stableId, key: deviceKey(d.identity) };
      const decision = await decideMode(repo, ref.key, cbt, mode, d.identity.path);
      const capacity = Number(cbt.capacity);
      let runs: Uint32Array;
      if (decision.mode === 'full') {
        // Every tracking block; the map is not needed.
        runs = Uint32Array.from(cbt.blockCount > 0 ? [0, cbt.blockCount] : []);
      } else {
        const map = await client.readCbtMap(cbt);
        runs = scanChangedRuns(map, (decision.parent as Manifest).changesNumber, cbt.blockCount);
      }
      if (!d.imagePath) throw new BlksnapError(`${d.identity.path}: the snapshot has no image path`, { path: d.identity.path });
      const writer = await repo.beginPoint(ref);
      work.push({ identity: d.identity, ref, imagePath: d.imagePath, cbt, decision, writer, stats: null, started: 0, runs });
      let blocks = 0;
      for (let i = 1; i < runs.length; i += 2) blocks += runs[i];
      emit({
        type: 'decision',
        device: d.identity.path,
        mode: decision.mode,
        reason: decision.reason,
        point: writer.point,
        parent: decision.parent?.point ?? null,
        bytesToCopy: runsBytes(runs, cbt.blockSize, capacity),
        blocksToCopy: blocks,
      });
      checkAbort(signal);
    }

    for (const w of work) {
      w.started = Date.now();
      emit({ type: 'progress', device: w.identity.path, bytesRead: 0, bytesTotal: runsBytes(w.runs, w.cbt.blockSize, Number(w.cbt.capacity)) });
      const reader = await kernel.openImage(w.imagePath, { direct: options.direct !== false });
      try {
        w.stats = await copyBlocks({
          reader,
          sink: w.writer,
          runs: w.runs,
          blockSize: w.cbt.blockSize,
          capacity: Number(w.cbt.capacity),
          chunkSize: options.chunkSize,
          depth: options.depth,
          signal,
          onProgress: (p) => emit({ type: 'progress', device: w.identity.path, bytesRead: p.bytesRead, bytesTotal: p.bytesTotal }),
        });
      } catch (err) {
        // A read that failed because the snapshot overflowed is an overflow, not an I/O error.
        await throwIfUnhealthy(session, options.limitBytes);
        throw err;
      } finally {
        await reader.close();
      }
      emit({ type: 'device-done', device: w.identity.path, stats: w.stats });
      checkAbort(signal);
    }

    // The copies are only good if the snapshot stayed intact until they ended.
    await throwIfUnhealthy(session, options.limitBytes);
    checkAbort(signal);

    const results: DeviceResult[] = [];
    const prepared: Manifest[] = [];
    for (const w of work) {
      const m = w.decision.parent;
      prepared.push(await w.writer.finish({
        kind: w.decision.mode,
        parent: m ? m.point : null,
        reason: w.decision.reason,
        capacity: Number(w.cbt.capacity),
        blockSize: w.cbt.blockSize,
        blockCount: w.cbt.blockCount,
        generationId: w.cbt.generationId,
        changesNumber: w.cbt.changesNumber,
        sinceChangesNumber: m ? m.changesNumber : null,
        snapshotId: session.id.toString(),
        startedAt,
        takenAt,
        tool: options.tool,
      }));
    }
    checkAbort(signal);
    // Publish only while the lock is still ours: if someone removed or broke it
    // during the copy, another writer may be numbering points in this repository.
    await lock.refresh().catch((err) => {
      throw new LockHeldError(`backup failed, nothing was committed: the lock of repository ${repo.dir} was removed while the backup ran`, {
        path: repo.dir,
        hint: 'make sure only one backup writes to a repository at a time (a `cleanup --repo` during a running backup removes its lock)',
        cause: err,
      });
    });
    for (let i = 0; i < work.length; i++) {
      const w = work[i];
      await w.writer.publish();
      const stats = w.stats as CopyStats;
      results.push({
        device: w.identity.path,
        key: w.ref.key,
        mode: w.decision.mode,
        reason: w.decision.reason,
        point: w.writer.point,
        parent: w.decision.parent?.point ?? null,
        generationId: w.cbt.generationId,
        changesNumber: w.cbt.changesNumber,
        sinceChangesNumber: w.decision.parent?.changesNumber ?? null,
        blockSize: w.cbt.blockSize,
        capacity: Number(w.cbt.capacity),
        changedBlocks: stats.blocks,
        zeroBlocks: stats.zeroBlocks,
        bytesRead: stats.bytesRead,
        bytesWritten: stats.bytesWritten,
        durationMs: Date.now() - w.started,
      });
    }
    succeeded = true;
    return {
      repository: repo.dir,
      snapshotId: session.id.toString(),
      startedAt,
      durationMs: Date.now() - started,
      bytesRead: results.reduce((a, r) => a + r.bytesRead, 0),
      bytesWritten: results.reduce((a, r) => a + r.bytesWritten, 0),
      changedBlocks: results.reduce((a, r) => a + r.changedBlocks, 0),
      devices: results,
    };
  } finally {
    for (const w of work) await w.writer.abort().catch(() => undefined);
    if (session) {
      await session.destroy().catch((err) => emit({ type: 'warning', message: `could not destroy snapshot ${session?.id}: ${err instanceof Error ? err.message : err}` }));
    }
    // A failed first backup leaves no empty repository behind (no side effects on error).
    const discarded = succeeded ? null : await repo.discardIfCreated().catch(() => null);
    await lock.release().catch(() => undefined);
    await discarded?.afterUnlock().catch(() => undefined);
  }
}

/** SNAPSHOTINFO error_code of every device, and the watcher's events. */
async function throwIfUnhealthy(session: SnapshotSession, limitBytes: bigint): Promise<void> {
  const failure = session.watcher?.failure ?? null;
  let health: { device: string; errorCode: number }[] = [];
  try {
    health = await session.health();
  } catch (err) {
    if (!failure) throw err;
  }
  const bad = health.find((h) => h.errorCode !== 0);
  if (bad) {
    const detail = bad.errorCode === -28 ? `${bad.device}: error_code -ENOSPC` : `${bad.device}: snapshot corrupted, error_code ${bad.errorCode}`;
    throw overflowError(limitBytes, detail);
  }
  if (failure) {
    const detail = failure.code === 'corrupted' ? `kernel event "corrupted", err_code ${failure.errCode}` : failure.code === 'no_space' ? `kernel event "no_space", ${failure.requestedSectors} sectors requested` : 'kernel event';
    throw overflowError(limitBytes, detail);
  }
}

/**
 * Pre-hook, freeze, TAKE, thaw, post-hook. Thaw and the post-hook run even
 * when the take (or the pre-hook, or a freeze) fails, so no application is
 * left quiesced and no filesystem frozen.
 */
async function takeWithHooks(session: SnapshotSession, options: BackupOptions, repoDir: string): Promise<string> {
  const env = {
    BLKSNAP_SNAPSHOT_ID: session.id.toString(),
    BLKSNAP_DEVICES: session.devices.map((d) => d.identity.path).join(' '),
    BLKSNAP_REPOSITORY: repoDir,
  };
  let preRan = false;
  let takenAt = '';
  let frozen: FrozenSet | null = null;
  let failure: unknown = null;
  try {
    if (options.preHook) {
      preRan = true;
      await runHook('pre-hook', options.preHook, { ...env, BLKSNAP_HOOK: 'pre' }, options.signal);
    }
    checkAbort(options.signal);
    frozen = await freezeFilesystems(options.freeze ?? []);
    await session.take();
    takenAt = new Date().toISOString();
  } catch (err) {
    failure = err;
  }
  if (frozen) {
    try {
      await frozen.thaw();
    } catch (err) {
      failure ??= err;
    }
  }
  if (options.postHook && (preRan || !options.preHook)) {
    try {
      // Interruptible, unless the interruption came first: then it still runs to undo what the pre-hook did.
      const signal = options.signal?.aborted ? undefined : options.signal;
      await runHook('post-hook', options.postHook, { ...env, BLKSNAP_HOOK: 'post', BLKSNAP_TAKE_RESULT: failure ? 'failed' : 'ok' }, signal);
    } catch (err) {
      failure ??= err;
    }
  }
  if (failure) throw failure;
  return takenAt;
}

/** Refuses to freeze the filesystem that holds the repository or the difference storage (its writes would hang). */
async function checkFreezeTargets(mountpoints: readonly string[], mustStayWritable: (string | null)[]): Promise<void> {
  if (mountpoints.length === 0) return;
  const devs = new Map<number, string>();
  for (const p of mustStayWritable) {
    if (!p) continue;
    const st = await fsp.stat(p).catch(() => null);
    if (st) devs.set(st.dev, p);
  }
  for (const mp of mountpoints) {
    const st = await fsp.stat(mp).catch(() => null);
    if (!st || !st.isDirectory()) throw new UsageError(`--freeze ${mp}: not a mounted directory`, { path: mp });
    const clash = devs.get(st.dev);
    if (clash) {
      throw new UsageError(`--freeze ${mp}: ${clash} is on that filesystem; freezing it would hang the backup`, { path: mp, hint: 'put the repository and the difference storage on another filesystem' });
    }
  }
}
