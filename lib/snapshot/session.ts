/**
 * The one operation a user expects from "make me a snapshot": resolve the
 * devices, pick a safe difference storage, attach change tracking where
 * needed, create, add every device, take, and say where the images are.
 * If any step after CREATE fails, the snapshot just created is destroyed
 * before the error is reported, so nothing is left half made.
 *
 * Each snapshot is recorded (./records in lib/kernel) while it lives, so a
 * process killed before it could destroy its snapshot leaves a trace that
 * `cleanupSnapshots` acts on.
 */
import { BlksnapError, NotFoundError, SnapshotOverflowError, UsageError } from '../errors';
import { newRecord } from '../kernel/records';
import type { SnapshotRecords } from '../kernel/records';
import type { SnapshotId } from '../kernel/snapshot-id';
import type { DeviceIdentity, Kernel, SnapshotEvent } from '../kernel/types';
import { chooseDiffStorage, recordsOf } from './diff-storage';
import type { DiffStorageChoice } from './diff-storage';
import { SnapshotWatcher } from './watcher';

export interface SnapshotDevice {
  /** As the caller gave it. */
  arg: string;
  identity: DeviceIdentity;
  /** Change tracking was attached by this session (it was not attached before). */
  newlyAttached: boolean;
  /** Kernel image name and path, once taken. */
  imageName: string | null;
  imagePath: string | null;
}

export interface CreateSnapshotOptions {
  /** Device arguments (paths or /dev/disk/by-* links); resolved and deduplicated. */
  devices: readonly string[];
  /** Explicit difference storage: a directory, an existing regular file or a block device. */
  diffStorage?: string;
  /** Configured default directory (config diff_storage_dir), used when diffStorage is not given. */
  configuredDiffStorageDir?: string;
  /** Directories tried when neither is given (default DEFAULT_DIFF_STORAGE_CANDIDATES). */
  diffStorageCandidates?: readonly string[];
  /** Difference storage limit in bytes (> 0). */
  limitBytes: bigint;
  /** Create and add, but do not take (call `take()` later). */
  noTake?: boolean;
  /** Recorded with the snapshot, e.g. `snapshot create`, `backup`. */
  purpose?: string;
  /**
   * The snapshot is for the user and outlives this process (`snapshot
   * create`): once created (and taken) successfully its record is marked
   * kept, and `cleanup` leaves it alone. Without it, the snapshot is this
   * process's to destroy, and `cleanup` destroys it if the process dies first.
   */
  keep?: boolean;
  /** Start an event watcher right after TAKE. */
  watch?: boolean;
  onEvent?: (event: SnapshotEvent) => void;
  /** How long to wait for each image node (udev). */
  imageTimeoutMs?: number;
}

export class SnapshotSession {
  private isTaken = false;
  private isDestroyed = false;
  private destroying: Promise<void> | null = null;
  watcher: SnapshotWatcher | null = null;

  private constructor(
    private readonly kernel: Kernel,
    private readonly records: SnapshotRecords,
    readonly id: SnapshotId,
    readonly devices: readonly SnapshotDevice[],
    readonly diffStorage: DiffStorageChoice,
    readonly limitSectors: bigint,
    private readonly imageTimeoutMs: number | undefined,
  ) {}

  get taken(): boolean {
    return this.isTaken;
  }

  get destroyed(): boolean {
    return this.isDestroyed;
  }

  /** Devices this session attached (tracking was not running before). */
  get newlyAttached(): string[] {
    return this.devices.filter((d) => d.newlyAttached).map((d) => d.identity.path);
  }

  static async create(kernel: Kernel, options: CreateSnapshotOptions): Promise<SnapshotSession> {
    if (!options.devices || options.devices.length === 0) throw new UsageError('no devices given to snapshot');
    if (typeof options.limitBytes !== 'bigint' || options.limitBytes <= 0n) {
      throw new UsageError(`invalid difference storage limit ${String(options.limitBytes)}: it must be greater than 0`, { hint: 'e.g. --limit 2G' });
    }
    const limitSectors = (options.limitBytes + 511n) / 512n;

    // Everything that can be checked is checked before the kernel is touched.
    const identities: DeviceIdentity[] = [];
    const args: string[] = [];
    for (const arg of options.devices) {
      const id = await kernel.resolveDevice(arg);
      if (identities.some((d) => d.path === id.path)) continue;
      identities.push(id);
      args.push(arg);
    }
    for (const d of identities) {
      const overlap = identities.find((o) => o !== d && (o.parent === d.path || d.parent === o.path));
      if (overlap) {
        throw new UsageError(`${d.path} and ${overlap.path} overlap (a disk and its partition cannot be in one snapshot)`, { path: d.path });
      }
    }
    const diffStorage = await chooseDiffStorage(kernel, identities, {
      path: options.diffStorage,
      configuredDir: options.configuredDiffStorageDir,
      limitBytes: options.limitBytes,
      candidates: options.diffStorageCandidates,
    });

    const control = kernel.control();
    const records = recordsOf(kernel);
    const devices: SnapshotDevice[] = [];
    try {
      await control.version(); // proves the module answers before anything changes

      for (let i = 0; i < identities.length; i++) {
        const r = await kernel.device(identities[i].path).attach();
        devices.push({ arg: args[i], identity: identities[i], newlyAttached: !r.alreadyAttached, imageName: null, imagePath: null });
      }

      const id = await control.createSnapshot(diffStorage.path, limitSectors);
      const session = new SnapshotSession(kernel, records, id, devices, diffStorage, limitSectors, options.imageTimeoutMs);
      try {
        // Recorded at once, so a kill from here on leaves a trace for cleanup.
        records.write(newRecord({
          id: id.toString(),
          devices: [],
          diffStorage: diffStorage.path,
          diffStorageDevice: diffStorage.device?.path ?? null,
          diffStorageKind: diffStorage.kind,
          purpose: options.purpose ?? 'snapshot create',
        }));
        for (const d of devices) await kernel.device(d.identity.path).addToSnapshot(id);
        records.update(id.toString(), (r) => { r.devices = devices.map((d) => d.identity.path); });
        if (!options.noTake) {
          await session.take();
          if (options.watch) session.startWatcher(options.onEvent);
        }
        if (options.keep) session.keep();
      } catch (err) {
        await session.destroy().catch(() => undefined);
        throw err;
      }
      return session;
    } catch (err) {
      // A failed create leaves tracking as it found it: trackers this call
      // started are stopped again (nothing was tracked on them before).
      for (const d of devices) {
        if (d.newlyAttached) await kernel.device(d.identity.path).detach().catch(() => undefined);
      }
      throw err;
    } finally {
      control.close();
    }
  }

  /** TAKE, then the image of every device (waiting for the nodes). */
  async take(): Promise<void> {
    if (this.isDestroyed) throw new NotFoundError(`snapshot ${this.id} was destroyed`);
    if (this.isTaken) return;
    const control = this.kernel.control();
    try {
      await control.takeSnapshot(this.id);
    } finally {
      control.close();
    }
    this.isTaken = true;
    await this.refreshImages();
  }

  /** Reads SNAPSHOTINFO of every device; records image paths. */
  async refreshImages(): Promise<void> {
    for (const d of this.devices) {
      const info = await this.kernel.device(d.identity.path).snapshotInfo();
      if (!info.imageName) {
        throw new BlksnapError(`${d.identity.path}: snapshot ${this.id} is taken but the device has no image`, { path: d.identity.path });
      }
      d.imageName = info.imageName;
      d.imagePath = this.imageTimeoutMs !== undefined ? await this.kernel.imagePath(info.imageName, this.imageTimeoutMs) : info.imagePath;
    }
    const images: Record<string, string> = {};
    for (const d of this.devices) if (d.imagePath) images[d.identity.path] = d.imagePath;
    this.records.update(this.id.toString(), (r) => {
      r.images = images;
      r.takenAt ??= new Date().toISOString();
    });
  }

  /** Hands the snapshot to the user: it outlives this process and `cleanup` leaves it alone. */
  keep(): void {
    this.records.update(this.id.toString(), (r) => { r.keep = true; });
  }

  startWatcher(onEvent?: (event: SnapshotEvent) => void): SnapshotWatcher {
    if (!this.watcher) this.watcher = new SnapshotWatcher(this.kernel, this.id, { onEvent });
    return this.watcher;
  }

  /** error_code of every device's snapshot (0 = healthy). */
  async health(): Promise<{ device: string; errorCode: number }[]> {
    const out: { device: string; errorCode: number }[] = [];
    for (const d of this.devices) {
      const info = await this.kernel.device(d.identity.path).snapshotInfo();
      out.push({ device: d.identity.path, errorCode: info.errorCode });
    }
    return out;
  }

  /**
   * Throws SnapshotOverflowError when a device's error_code is non-zero or
   * the watcher saw an overflow/corruption event: the images cannot be trusted.
   */
  async checkHealth(): Promise<void> {
    const failure = this.watcher?.failure;
    for (const h of await this.health()) {
      if (h.errorCode !== 0) throw overflowError(this.id, h.device, h.errorCode, this.limitSectors);
    }
    if (failure) {
      const code = failure.code === 'corrupted' ? -Math.abs(failure.errCode) : -28;
      throw overflowError(this.id, null, code, this.limitSectors);
    }
  }

  /** Destroys the snapshot (once; later calls wait for the first) and removes its record. */
  destroy(): Promise<void> {
    if (!this.destroying) {
      this.destroying = (async () => {
        const control = this.kernel.control();
        try {
          await control.destroySnapshot(this.id);
        } catch (err) {
          if (!(err instanceof NotFoundError)) {
            this.destroying = null;
            throw err;
          }
        } finally {
          control.close();
        }
        this.isDestroyed = true;
        try {
          this.records.remove(this.id.toString());
        } catch {
          // the snapshot is gone; a leftover record is removed by the next cleanup
        }
        if (this.watcher) await this.watcher.stop();
      })();
    }
    return this.destroying;
  }
}

function overflowError(id: SnapshotId, device: string | null, errorCode: number, limitSectors: bigint): SnapshotOverflowError {
  const overflow = errorCode === -28;
  const what = overflow ? 'overflowed its difference storage' : `is corrupted (error ${errorCode})`;
  return new SnapshotOverflowError(`snapshot ${id}${device ? ` (${device})` : ''} ${what}`, {
    path: device ?? id.toString(),
    hint: overflow
      ? `the limit (${limitSectors * 512n} bytes) was too small for the writes during the snapshot: raise --limit`
      : 'destroy the snapshot and take a new one',
  });
}

/** Shorthand for SnapshotSession.create. */
export function createSnapshotSession(kernel: Kernel, options: CreateSnapshotOptions): Promise<SnapshotSession> {
  return SnapshotSession.create(kernel, options);
}
