/**
 * The typed kernel interface every domain module and the CLI use. One
 * implementation (./clients.ts) speaks both real flavours and, through the
 * same transport contract, the simulated kernel (./sim). Semantics follow
 * blksnap-abi.md; "§7" refers to its section on what the real module does.
 */
import type { FlavourName } from '../../ioctl-defs';
import type { SnapshotId } from './snapshot-id';

/** Which kernel the process talks to. `sim` emulates one of the two flavours. */
export type KernelSelection = 'auto' | 'upstream' | 'standalone' | 'sim';

export interface KernelOptions {
  kernel?: KernelSelection;
  /** sim only: state directory (default: $BLKSNAP_SIM_DIR, else $XDG_RUNTIME_DIR/blksnap-sim, else /tmp/blksnap-sim-$UID). */
  simDir?: string;
  /** sim only: which flavour the simulated module behaves as (default upstream). */
  simFlavour?: FlavourName;
}

export interface ModuleVersion {
  major: number;
  minor: number;
  revision: number;
  build: number;
  /** `major.minor.revision.build` */
  text: string;
}

/** IOCTL_BLKSNAP_MOD (standalone only). */
export interface ModuleInfo {
  name: string;
  compatibilityFlags: bigint;
  /** Names of the set bits: `debug_sector_state`, `setlog`, or `bit<N>`. */
  flagNames: string[];
}

export type SnapshotEvent =
  | { code: 'corrupted'; timeLabel: bigint; devMajor: number; devMinor: number; /** as the kernel sent it (+28 for overflow, §7) */ errCode: number }
  | { code: 'no_space'; timeLabel: bigint; requestedSectors: bigint }
  | { code: 'unknown'; timeLabel: bigint; rawCode: number; data: Buffer };

export interface CbtInfo {
  /** Device capacity in bytes. */
  capacity: bigint;
  /** Tracking block size in bytes (a power of two). */
  blockSize: number;
  blockCount: number;
  /** Canonical UUID text. */
  generationId: string;
  /** The tracker's `previous` snapshot number. */
  changesNumber: number;
}

export interface SectorRange {
  /** In 512-byte sectors. */
  offset: bigint;
  count: bigint;
}

export interface SnapshotInfo {
  /** 0, or a negative errno (-28 = overflowed its difference storage). */
  errorCode: number;
  /** The image disk name from the kernel, '' when the snapshot is not taken. */
  imageName: string;
  /** Where this kernel exposes that image (`/dev/NAME` on real kernels); null when not taken. */
  imagePath: string | null;
}

export interface ControlClient {
  version(): Promise<ModuleVersion>;
  /** IOCTL_BLKSNAP_MOD; null where the kernel has no such request (upstream: ENOTTY). */
  moduleInfo(): Promise<ModuleInfo | null>;
  /**
   * IOCTL_BLKSNAP_SETLOG. `level` null (or negative) disables the module's log.
   * Returns false where the kernel has no such request (ENOTTY).
   */
  setLog(options: { level: number | null; filePath: string | null; tzMinutesWest: number }): Promise<boolean>;
  /** `diffStoragePath` must be absolute; `limitSectors` in 512-byte sectors. */
  createSnapshot(diffStoragePath: string, limitSectors: bigint): Promise<SnapshotId>;
  destroySnapshot(id: SnapshotId): Promise<void>;
  takeSnapshot(id: SnapshotId): Promise<void>;
  /** Ids of every snapshot the module holds, in creation order. */
  collectSnapshots(): Promise<SnapshotId[]>;
  /**
   * Waits up to `timeoutMs` for one event. Resolves null when none arrived
   * (ENOENT). Internally loops short waits (the kernel counts jiffies, §7),
   * runs off the main thread and stops early when `signal` aborts (then
   * resolves null). Rejects with NotFoundError when the snapshot is gone.
   */
  waitEvent(id: SnapshotId, timeoutMs: number, signal?: AbortSignal): Promise<SnapshotEvent | null>;
  close(): void;
}

export interface AttachResult {
  /** The filter was attached before this call (EALREADY). */
  alreadyAttached: boolean;
}

export interface DeviceClient {
  /** Canonical device path (`/dev/NAME`, or an image file on the simulated kernel). */
  readonly path: string;
  attach(): Promise<AttachResult>;
  /** Refuses a device that is in a snapshot (§7) unless `force`. */
  detach(options?: { force?: boolean }): Promise<void>;
  cbtInfo(): Promise<CbtInfo>;
  /** The whole read map (block_count bytes), fetched in bounded pieces. */
  readCbtMap(info?: CbtInfo): Promise<Uint8Array>;
  /** Validates every range (count > 0, inside the device) before sending anything. */
  markDirty(ranges: SectorRange[]): Promise<void>;
  /** Refuses to add after TAKE (§7) and a device holding the snapshot's difference storage. */
  addToSnapshot(id: SnapshotId): Promise<void>;
  /**
   * SNAPSHOTINFO with a zeroed buffer. NotFoundError when no filter is
   * attached (so the device is in no snapshot); an attached device that is in
   * no snapshot, or in one not yet taken, answers errorCode 0 and imageName ''.
   */
  snapshotInfo(): Promise<SnapshotInfo>;
}

/** Sequential reader of a snapshot image (or any block device). */
export interface ImageReader {
  readonly path: string;
  readonly size: bigint;
  /** True when opened O_DIRECT: buffers, offsets and lengths must be multiples of `alignment`. */
  readonly direct: boolean;
  readonly alignment: number;
  /**
   * Reads exactly `length` bytes at `position` into `buf` at 0. A short read
   * is a ShortReadError (an image removed under the reader reads EOF, §7);
   * an overflowed snapshot's image fails with SyscallError EIO.
   */
  read(buf: Buffer, length: number, position: bigint): Promise<void>;
  close(): Promise<void>;
}

/** Identity of a block device (or a simulated device file). */
export interface DeviceIdentity {
  /** Canonical path. */
  path: string;
  major: number;
  minor: number;
  /** Size in bytes. */
  size: bigint;
  /** A stable id where one exists (e.g. /dev/disk/by-id name, or the sim's device uuid). */
  stableId: string | null;
  /** Whole disk containing this partition, or null for a whole disk. */
  parent: string | null;
}

export interface Kernel {
  /** `sim` for the simulated kernel. */
  readonly kind: 'kernel' | 'sim';
  readonly flavour: FlavourName;
  readonly controlDevicePath: string;
  /**
   * Directory of this tool's snapshot records ($BLKSNAP_RUN_DIR, default
   * /run/blksnap; sim: <simDir>/run). Optional so test doubles need not set it.
   */
  readonly recordsDir?: string;
  control(): ControlClient;
  /** `path` must already be canonical (see resolveDevice). */
  device(path: string): DeviceClient;
  /**
   * Canonical path of a device argument: follows symlinks (e.g. /dev/disk/by-id),
   * checks it is a block device (or, on the sim, a device file it knows / an
   * image file); UsageError/NotFoundError naming the argument otherwise.
   */
  resolveDevice(arg: string): Promise<DeviceIdentity>;
  /** The device holding the filesystem `path` lives on (for diff storage placement checks). */
  deviceOfPath(path: string): Promise<DeviceIdentity | null>;
  /** Where the image `imageName` appears; waits up to `timeoutMs` for it (udev), then fails clearly. */
  imagePath(imageName: string, timeoutMs?: number): Promise<string>;
  openImage(path: string, options?: { direct?: boolean }): Promise<ImageReader>;
}
