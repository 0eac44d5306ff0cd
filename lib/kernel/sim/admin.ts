/**
 * The simulated kernel's administration API: what a test, the `blksnap sim`
 * helper or a newcomer uses to make devices, write through the simulated
 * block layer, tune module parameters and look at the module's state.
 * Nothing here is reachable through ioctls.
 */
import * as fs from 'fs';
import * as path from 'path';
import { NotFoundError, UsageError } from '../../errors';
import { SnapshotId } from '../snapshot-id';
import type { DeviceIdentity } from '../types';
import type { SimKernel } from './kernel';
import {
  capacitySectorsOf, findImage, findSnapshot, liveMap, normaliseParameters, noSpaceEventData, pushEvent, readMap,
  registerDevice, setZeroBaseline, syncWatched, writeThroughDevice, writeThroughImage,
} from './model';
import { BLKSNAP_EVENT_CODE } from '../../../ioctl-defs';
import type {
  DiffStorageRecord, HazardRecord, ImageMode, ImageRecord, ModuleParameters, SetlogRecord,
} from './state';
import { emptyState } from './state';
import type { FlavourName } from '../../../ioctl-defs';

export interface SimTrackerView {
  /** Canonical UUID text. */
  generationId: string;
  previous: number;
  active: number;
  capacityBytes: bigint;
  blockSize: number;
  blockCount: number;
  cbtCorrupted: boolean;
}

export interface SimDeviceView {
  path: string;
  major: number;
  minor: number;
  stableId: string;
  parent: string | null;
  mountpoint: string | null;
  /** Created/added through this API or ever attached (a block device for SNAPSHOT_CREATE). */
  declared: boolean;
  tracker: SimTrackerView | null;
}

export interface SimEventView {
  code: number;
  timeLabel: bigint;
  data: Buffer;
}

export interface SimMemberView {
  device: string;
  /** False after DETACH: copy-on-write has stopped for this member. */
  attached: boolean;
  image: (ImageRecord & { path: string }) | null;
}

export interface SimSnapshotView {
  /** Canonical UUID text. */
  id: string;
  taken: boolean;
  storage: DiffStorageRecord;
  members: SimMemberView[];
  /** Events queued for WAIT_EVENT, oldest first. */
  pendingEvents: SimEventView[];
}

export interface SimStateView {
  simDir: string;
  flavour: FlavourName | null;
  params: ModuleParameters;
  hz: number;
  imageMode: ImageMode;
  devices: SimDeviceView[];
  /** In creation order. */
  snapshots: SimSnapshotView[];
  setlog: SetlogRecord | null;
  /** Requests that would have damaged a real module (§7), e.g. DETACH with another filter name. */
  hazards: HazardRecord[];
  /** True when any hazard was recorded: a real kernel would now be corrupted. */
  realKernelCorrupted: boolean;
}

export type SimInjectedEvent =
  | { code: 'no_space'; requestedSectors: bigint }
  | { code: number; data: Uint8Array };

export interface SimAdmin {
  readonly simDir: string;
  /** Creates a sparse zero-filled device file of `sizeBytes` (it must not exist). */
  createDevice(path: string, sizeBytes: number | bigint): Promise<DeviceIdentity>;
  /** Declares an existing file a device; `parent` = whole disk of this partition, `mountpoint` = where its filesystem "is mounted". */
  addDevice(path: string, options?: { parent?: string; mountpoint?: string }): Promise<DeviceIdentity>;
  /** A write through the simulated block layer (CBT + copy-on-write); on an image path, a write to the snapshot image. */
  writeDevice(path: string, offsetBytes: number | bigint, data: Uint8Array): Promise<void>;
  /** Changes a device's size (the tracker notices at the next TAKE, §4). */
  resizeDevice(path: string, sizeBytes: number | bigint): Promise<void>;
  moduleParameters(): Promise<ModuleParameters>;
  /** Sets module parameters (applied to trackers and snapshots made afterwards, as on a real module). */
  setModuleParameters(params: Partial<ModuleParameters>): Promise<ModuleParameters>;
  /** Kernel tick rate for WAIT_EVENT's jiffies (default 250). */
  setHz(hz: number): Promise<void>;
  /** How TAKE keeps image content: 'copy' (default, exact) or 'cow' (cheap; see ImageMode). */
  setImageMode(mode: ImageMode): Promise<void>;
  state(): Promise<SimStateView>;
  /** The tracker's maps of a device (live = being written, read = what CBTMAP returns). */
  cbtMaps(path: string): Promise<{ live: Buffer; read: Buffer } | null>;
  /** Queues an event for WAIT_EVENT (e.g. the no_space event a full filesystem would cause). */
  queueEvent(snapshotId: string, event: SimInjectedEvent): Promise<void>;
  /** Marks a tracker's map corrupted (CBTMAP then answers EFAULT; the next TAKE restarts tracking). */
  corruptCbt(path: string): Promise<void>;
  /** A module reload / reboot: trackers, snapshots and images are gone; devices stay. */
  reloadModule(): Promise<void>;
  /** Removes all state (devices' files are left alone). */
  reset(): Promise<void>;
}

const uuidText = (hex: string): string => SnapshotId.fromBytes(Buffer.from(hex, 'hex')).toString();

function toNumber(v: number | bigint, what: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`${what}: ${String(v)} is not a valid size or offset`);
  return n;
}

export class SimAdminImpl implements SimAdmin {
  constructor(private readonly kernel: SimKernel) {}

  get simDir(): string {
    return this.kernel.dir;
  }

  private identity(canonical: string): DeviceIdentity {
    const d = this.kernel.store.readState().devices[canonical];
    const size = fs.statSync(canonical).size;
    return { path: d.path, major: d.major, minor: d.minor, size: BigInt(capacitySectorsOf(size) * 512), stableId: d.uuid, parent: d.parent };
  }

  async createDevice(p: string, sizeBytes: number | bigint): Promise<DeviceIdentity> {
    const size = toNumber(sizeBytes, p);
    const abs = path.resolve(p);
    let fd: number;
    try {
      fd = fs.openSync(abs, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${p}: already exists`, { path: p });
      throw err;
    }
    try {
      fs.ftruncateSync(fd, size);
    } finally {
      fs.closeSync(fd);
    }
    const canonical = fs.realpathSync(abs);
    this.kernel.run((tx) => {
      const d = registerDevice(tx, canonical, true);
      setZeroBaseline(tx, d);
    });
    return this.identity(canonical);
  }

  async addDevice(p: string, options: { parent?: string; mountpoint?: string } = {}): Promise<DeviceIdentity> {
    const canonical = this.existingFile(p);
    const parent = options.parent !== undefined ? this.existingFile(options.parent) : null;
    let mountpoint: string | null = null;
    if (options.mountpoint !== undefined) {
      try {
        mountpoint = fs.realpathSync(path.resolve(options.mountpoint));
      } catch {
        throw new NotFoundError(`${options.mountpoint}: no such directory`, { path: options.mountpoint });
      }
      if (!fs.statSync(mountpoint).isDirectory()) throw new UsageError(`${options.mountpoint}: not a directory`, { path: options.mountpoint });
    }
    this.kernel.run((tx) => {
      const d = registerDevice(tx, canonical, true);
      if (options.parent !== undefined) d.parent = parent;
      if (options.mountpoint !== undefined) d.mountpoint = mountpoint;
      tx.touch();
    });
    return this.identity(canonical);
  }

  private existingFile(p: string): string {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      throw new NotFoundError(`${p}: no such device`, { path: p });
    }
    if (!st.isFile()) throw new UsageError(`${p}: not a regular file`, { path: p });
    return fs.realpathSync(path.resolve(p));
  }

  async writeDevice(p: string, offsetBytes: number | bigint, data: Uint8Array): Promise<void> {
    const offset = toNumber(offsetBytes, p);
    const canonical = this.existingFile(p);
    this.kernel.run((tx) => {
      syncWatched(tx);
      if (path.dirname(canonical) === this.kernel.store.imageDir) {
        const found = findImage(tx.state, canonical);
        if (!found) throw new NotFoundError(`${p}: not a snapshot image of this simulated kernel`, { path: p });
        writeThroughImage(tx, found.snap, found.member, offset, data);
        return;
      }
      writeThroughDevice(tx, registerDevice(tx, canonical, false), offset, data);
    });
  }

  async resizeDevice(p: string, sizeBytes: number | bigint): Promise<void> {
    const size = toNumber(sizeBytes, p);
    const canonical = this.existingFile(p);
    this.kernel.run((tx) => {
      syncWatched(tx);
      fs.truncateSync(canonical, size);
    });
  }

  async moduleParameters(): Promise<ModuleParameters> {
    return { ...this.kernel.store.readState().params };
  }

  async setModuleParameters(params: Partial<ModuleParameters>): Promise<ModuleParameters> {
    return this.kernel.run((tx) => {
      for (const k of Object.keys(params)) {
        if (!(k in tx.state.params)) throw new UsageError(`unknown module parameter ${k}`);
      }
      tx.state.params = normaliseParameters({ ...tx.state.params, ...params } as ModuleParameters);
      tx.touch();
      return { ...tx.state.params };
    });
  }

  async setHz(hz: number): Promise<void> {
    if (!Number.isInteger(hz) || hz <= 0) throw new UsageError(`HZ ${hz} is not a positive integer`);
    this.kernel.run((tx) => {
      tx.state.hz = hz;
      tx.touch();
    });
  }

  async setImageMode(mode: ImageMode): Promise<void> {
    if (mode !== 'copy' && mode !== 'cow') throw new UsageError(`image mode "${String(mode)}" is not copy or cow`);
    this.kernel.run((tx) => {
      tx.state.imageMode = mode;
      tx.touch();
    });
  }

  async state(): Promise<SimStateView> {
    const s = this.kernel.store.readState();
    const tracker = (id: string | null): SimTrackerView | null => {
      const t = id ? s.trackers[id] : undefined;
      if (!t) return null;
      return {
        generationId: uuidText(t.generationId),
        previous: t.previous,
        active: t.active,
        capacityBytes: BigInt(t.capacitySectors) * 512n,
        blockSize: 2 ** t.blockShift,
        blockCount: t.blockCount,
        cbtCorrupted: t.cbtCorrupted,
      };
    };
    return {
      simDir: this.kernel.dir,
      flavour: s.flavour,
      params: { ...s.params },
      hz: s.hz,
      imageMode: s.imageMode ?? 'copy',
      devices: Object.values(s.devices).map((d) => ({
        path: d.path, major: d.major, minor: d.minor, stableId: d.uuid, parent: d.parent, mountpoint: d.mountpoint,
        declared: d.declared, tracker: tracker(d.trackerId),
      })),
      snapshots: s.snapshots.map((snap) => ({
        id: uuidText(snap.id),
        taken: snap.taken,
        storage: { ...snap.storage },
        members: snap.members.map((m) => ({
          device: m.device,
          attached: !!s.trackers[m.trackerId]?.attached,
          image: m.image ? { ...m.image, path: m.image.file } : null,
        })),
        pendingEvents: snap.events.map((e) => ({ code: e.code, timeLabel: BigInt(e.timeNs), data: Buffer.from(e.data, 'hex') })),
      })),
      setlog: s.setlog ? { ...s.setlog } : null,
      hazards: s.hazards.map((h) => ({ ...h })),
      realKernelCorrupted: s.hazards.length > 0,
    };
  }

  async cbtMaps(p: string): Promise<{ live: Buffer; read: Buffer } | null> {
    const canonical = this.existingFile(p);
    return this.kernel.run((tx) => {
      syncWatched(tx);
      const d = tx.state.devices[canonical];
      const t = d?.trackerId ? tx.state.trackers[d.trackerId] : undefined;
      if (!t) return null;
      return { live: Buffer.from(liveMap(tx, t)), read: Buffer.from(readMap(tx, t)) };
    });
  }

  async queueEvent(snapshotId: string, event: SimInjectedEvent): Promise<void> {
    const idHex = SnapshotId.parse(snapshotId).bytes.toString('hex');
    this.kernel.run((tx) => {
      const snap = findSnapshot(tx.state, idHex);
      if (!snap) throw new NotFoundError(`snapshot ${snapshotId} not found`);
      if (event.code === 'no_space') pushEvent(snap, BLKSNAP_EVENT_CODE.no_space, noSpaceEventData(event.requestedSectors));
      else pushEvent(snap, event.code, Buffer.from(event.data));
      tx.touch();
    });
  }

  async corruptCbt(p: string): Promise<void> {
    const canonical = this.existingFile(p);
    this.kernel.run((tx) => {
      const d = tx.state.devices[canonical];
      const t = d?.trackerId ? tx.state.trackers[d.trackerId] : undefined;
      if (!t) throw new NotFoundError(`${p}: no tracker attached`, { path: p });
      t.cbtCorrupted = true;
      tx.touch();
    });
  }

  async reloadModule(): Promise<void> {
    this.kernel.run((tx) => {
      for (const snap of tx.state.snapshots) {
        for (const m of snap.members) if (m.image) {
          const file = m.image.file;
          tx.afterCommit(() => fs.rmSync(file, { force: true }));
        }
      }
      for (const name of fs.readdirSync(tx.store.dataDir)) {
        if (name.startsWith('trk-') || name.startsWith('cow-')) tx.deleteBlob(name);
      }
      tx.state.snapshots = [];
      tx.state.trackers = {};
      for (const d of Object.values(tx.state.devices)) d.trackerId = null;
      tx.state.setlog = null;
      tx.state.hazards = [];
      tx.state.flavour = null;
      tx.touch();
    });
  }

  async reset(): Promise<void> {
    this.kernel.run((tx) => {
      for (const name of ['dev', 'data', 'run']) fs.rmSync(path.join(this.kernel.dir, name), { recursive: true, force: true });
      tx.store.ensureDirs();
      Object.assign(tx.state, emptyState());
      tx.touch();
    });
  }
}
