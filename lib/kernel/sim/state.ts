/**
 * The persistent state of the simulated kernel (state.json in the state
 * directory). Small records only: CBT maps, per-unit hashes, copy-on-write
 * bitmaps and frozen images live in their own files (see store.ts).
 *
 * Numbers that the kernel keeps in sectors are kept in sectors here too, as
 * JS numbers (exact up to 2^53 sectors, far beyond any simulated device).
 */
import type { FlavourName } from '../../../ioctl-defs';

/** Module parameters (blksnap-abi.md §6), as under /sys/module/blksnap/parameters. */
export interface ModuleParameters {
  tracking_block_minimum_shift: number;
  tracking_block_maximum_count: number;
  tracking_block_maximum_shift: number;
  chunk_minimum_shift: number;
  chunk_maximum_count_shift: number;
  chunk_maximum_shift: number;
  chunk_maximum_in_queue: number;
  /** In sectors. */
  diff_storage_minimum: number;
}

export const DEFAULT_PARAMETERS: Readonly<ModuleParameters> = Object.freeze({
  tracking_block_minimum_shift: 16,
  tracking_block_maximum_count: 2097152,
  tracking_block_maximum_shift: 26,
  chunk_minimum_shift: 18,
  chunk_maximum_count_shift: 40,
  chunk_maximum_shift: 26,
  chunk_maximum_in_queue: 256,
  diff_storage_minimum: 2097152,
});

/** Debian kernels run with HZ=250; WAIT_EVENT's timeout is really in jiffies (§7). */
export const DEFAULT_HZ = 250;

/** What the sim last saw of a device file, and the content hashes it computed then. */
export interface ScanBaseline {
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  /** The file was modified so close to the scan that a later write could keep the same mtime. */
  racy: boolean;
  /** log2 of the hashed unit (min of tracking block and chunk sizes). */
  unitShift: number;
}

export interface DeviceRecord {
  /** Canonical path (realpath). */
  path: string;
  /** Per-device uuid, the stable id, also names its data files. */
  uuid: string;
  major: number;
  minor: number;
  /** Created or added by the admin API, or ever attached: a "block device" (not a plain file) for CREATE. */
  declared: boolean;
  parent: string | null;
  mountpoint: string | null;
  /** The tracker attached to it now (the filter), or null. */
  trackerId: string | null;
  baseline: ScanBaseline | null;
}

export interface TrackerRecord {
  id: string;
  device: string;
  /** standalone: the path ATTACH was given; the module reopens it at TAKE (§7). */
  attachPath: string;
  /** False once DETACH removed it from the device (a snapshot may still hold it). */
  attached: boolean;
  capacitySectors: number;
  blockShift: number;
  blockCount: number;
  /** 32 hex digits, the uuid bytes in order. */
  generationId: string;
  previous: number;
  active: number;
  cbtCorrupted: boolean;
}

export type DiffStorageKind = 'block_device' | 'file' | 'directory';

export interface DiffStorageRecord {
  kind: DiffStorageKind;
  path: string;
  /** Device the storage lives on (block device itself, or the device mounted where the file is). */
  devMajor: number | null;
  devMinor: number | null;
  limitSectors: number;
  /** What the storage holds now (file size / device size), in sectors. */
  capacitySectors: number;
  requestedSectors: number;
  filledSectors: number;
  overflow: boolean;
}

/**
 * How an image keeps the content of TAKE.
 * copy: a sparse copy of the device made at TAKE (exact whoever writes later).
 * cow: chunks are copied on first write the sim sees, as the kernel does; a
 *   write by another program to a chunk not yet copied is found too late (its
 *   old data is gone) and corrupts the image with -EIO. Cheap for big devices.
 */
export type ImageMode = 'copy' | 'cow';

export interface ImageRecord {
  /** The disk name SNAPSHOTINFO reports. */
  name: string;
  mode: ImageMode;
  /** Absolute path of the frozen image file. */
  file: string;
  major: number;
  minor: number;
  sizeBytes: number;
  chunkShift: number;
  chunkCount: number;
  copiedChunks: number;
  /** 0, or the negative errno the diff area was corrupted with. */
  errorCode: number;
}

export interface MemberRecord {
  device: string;
  trackerId: string;
  /** null when not taken, or when the device was added after TAKE (member without an image, §7). */
  image: ImageRecord | null;
}

export interface EventRecord {
  code: number;
  /** ktime in ns, decimal. */
  timeNs: string;
  /** Payload, hex. */
  data: string;
}

export interface SnapshotRecord {
  /** 32 hex digits. */
  id: string;
  createdAtNs: string;
  taken: boolean;
  storage: DiffStorageRecord;
  members: MemberRecord[];
  events: EventRecord[];
}

export interface SetlogRecord {
  level: number;
  tzMinutesWest: number;
  filePath: string | null;
  enabled: boolean;
}

/** Something our clients did that would have damaged a real kernel (§7). */
export interface HazardRecord {
  op: string;
  path: string;
  detail: string;
  timeNs: string;
}

export interface SimState {
  format: 1;
  /** The flavour the simulated module runs as; fixed while it holds trackers or snapshots. */
  flavour: FlavourName | null;
  params: ModuleParameters;
  hz: number;
  /** Default image mode for TAKE ($BLKSNAP_SIM_IMAGES of the taking process wins). */
  imageMode: ImageMode;
  nextMinor: number;
  devices: Record<string, DeviceRecord>;
  trackers: Record<string, TrackerRecord>;
  /** In creation order (COLLECT answers in this order). */
  snapshots: SnapshotRecord[];
  setlog: SetlogRecord | null;
  hazards: HazardRecord[];
}

export function emptyState(): SimState {
  return {
    format: 1,
    flavour: null,
    params: { ...DEFAULT_PARAMETERS },
    hz: DEFAULT_HZ,
    imageMode: 'copy',
    nextMinor: 0,
    devices: {},
    trackers: {},
    snapshots: [],
    setlog: null,
    hazards: [],
  };
}

/** Fake major of simulated devices (that of loop devices) and of snapshot images (a dynamic major). */
export const DEVICE_MAJOR = 7;
export const IMAGE_MAJOR = 252;
