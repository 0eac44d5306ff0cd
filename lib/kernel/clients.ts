/**
 * The typed kernel clients, written once against KernelPlatform: the same
 * code speaks to the upstream and the standalone module and, through the
 * same transport contract, to the simulated kernel. Every request is encoded
 * with the ioctl-defs structs, every pointed-to buffer is pinned through
 * `transport.userMemory()`, and every errno is turned into a typed error
 * naming the request, the device and what to do (./errno-map.ts).
 *
 * The guards for what the real module gets wrong (blksnap-abi.md §7) live
 * here, so no caller can skip them: the filter name is the constant
 * "blksnap" with no parameter to change it; CBTDIRTY ranges are checked
 * before anything is sent; SNAPSHOTINFO buffers are zeroed; COLLECT asks for
 * the count first and asks again on ENODATA; adding after TAKE, adding the
 * device that holds the difference storage and detaching a device that is in
 * a snapshot are refused.
 */
import * as abi from '../../ioctl-defs';
import type { FlavourAbi, IoctlDef } from '../../ioctl-defs';
import {
  BlksnapError,
  BusyError,
  IncrementalImpossibleError,
  NotFoundError,
  SyscallError,
  UsageError,
  isErrno,
  errnoNumber,
} from '../errors';
import type { IoctlTransport, UserMemory } from '../ioctl/types';
import {
  commonError,
  ctlNotAttachedHint,
  moduleMissing,
  openError,
  typed,
  unsupportedKernel,
} from './errno-map';
import type { KernelPlatform } from './platform';
import { SnapshotRecords } from './records';
import type { SnapshotRecord } from './records';
import { SnapshotId } from './snapshot-id';
import type {
  AttachResult,
  CbtInfo,
  ControlClient,
  DeviceClient,
  DeviceIdentity,
  ImageReader,
  Kernel,
  ModuleInfo,
  ModuleVersion,
  SectorRange,
  SnapshotEvent,
  SnapshotInfo,
} from './types';

/** The one filter name the module registers. Not configurable on purpose (§7: another name in DETACH corrupts the module). */
const FILTER_NAME = abi.BLKSNAP_FILTER_NAME;

/** Bytes of change map fetched per CBTMAP request (the kernel copies it with one copy_to_user). */
export const CBTMAP_PIECE_BYTES = 1 << 20;
/**
 * Ranges per CBTDIRTY request. One: in several published versions of the
 * module's CBTDIRTY handler the loop over `dirty_sectors` does not advance,
 * so a multi-range request marks the first range `count` times and silently
 * skips the rest. blksnap-abi.md does not cover it and the real module could
 * not be checked here; one range per request is correct on every version.
 */
export const CBTDIRTY_BATCH = 1;
/** The largest wait per WAIT_EVENT request; the kernel counts it in jiffies (§7), so it is kept short and looped. */
export const WAIT_EVENT_MAX_UNITS = 200;
/** How often COLLECT is repeated when the number of snapshots keeps changing between its two calls. */
const COLLECT_ATTEMPTS = 16;
/** Default wait for an image node after TAKE (udev may create it a moment later). */
export const DEFAULT_IMAGE_TIMEOUT_MS = 10_000;

export interface ClientKernelOptions {
  /** Directory of this tool's snapshot records (see ./records.ts). */
  recordsDir: string;
}

/** What this process learnt about snapshots, shared by every client on the same records directory. */
interface KnownSnapshot {
  diffStorage: string;
  taken: boolean;
  /** Devices this process added. */
  members: Set<string>;
}
const knownSnapshots = new Map<string, Map<string, KnownSnapshot>>();

function knowledge(recordsDir: string): Map<string, KnownSnapshot> {
  let m = knownSnapshots.get(recordsDir);
  if (!m) knownSnapshots.set(recordsDir, (m = new Map()));
  return m;
}

const ctlName = (req: IoctlDef, cmd: abi.BlksnapCtlName): string => `${req.name}(${cmd})`;

function withOp(err: SyscallError, op: string, path: string | undefined): SyscallError {
  // Re-label the transport's error so messages say which filter command failed.
  if (err.op === op && err.path === path) return err;
  const e = new SyscallError(err.errno as string, op, path, err.hint, err.kind);
  (e as { cause?: unknown }).cause = err;
  return e;
}

/** True when storage on device `storage` would live on `device` (same disk, its parent, or one of its partitions). */
export function sameStorage(storage: DeviceIdentity, device: DeviceIdentity): boolean {
  if (storage.major === device.major && storage.minor === device.minor && storage.major !== 0) return true;
  if (storage.path === device.path) return true;
  if (device.parent !== null && storage.path === device.parent) return true;
  if (storage.parent !== null && storage.parent === device.path) return true;
  return false;
}

export class ClientKernel implements Kernel {
  readonly kind: 'kernel' | 'sim';
  readonly flavour: abi.FlavourName;
  readonly controlDevicePath: string;
  readonly recordsDir: string;
  readonly abi: FlavourAbi;
  readonly transport: IoctlTransport;
  readonly records: SnapshotRecords;

  constructor(readonly platform: KernelPlatform, options: ClientKernelOptions) {
    this.kind = platform.kind;
    this.flavour = platform.flavour;
    this.abi = abi.flavours[platform.flavour];
    this.controlDevicePath = this.abi.controlDevice;
    this.transport = platform.transport;
    this.recordsDir = options.recordsDir;
    this.records = new SnapshotRecords(options.recordsDir);
  }

  control(): ControlClient {
    return new BlksnapControl(this);
  }

  device(path: string): DeviceClient {
    if (typeof path !== 'string' || path === '') throw new UsageError('a device path is required');
    return new BlksnapDevice(this, path);
  }

  resolveDevice(arg: string): Promise<DeviceIdentity> {
    return this.platform.resolveDevice(arg);
  }

  deviceOfPath(path: string): Promise<DeviceIdentity | null> {
    return this.platform.deviceOfPath(path);
  }

  imagePath(imageName: string, timeoutMs = DEFAULT_IMAGE_TIMEOUT_MS): Promise<string> {
    return this.platform.imagePath(imageName, timeoutMs);
  }

  openImage(path: string, options: { direct?: boolean } = {}): Promise<ImageReader> {
    return this.platform.openImage(path, options);
  }

  /** Whether the control device node exists (distinguishes "no module" from "no filter support"). */
  controlDeviceExists(): boolean {
    return this.nodeExists(this.controlDevicePath);
  }

  /** @internal asks the transport, so the simulated kernel answers for its own nodes. */
  nodeExists(path: string): boolean {
    try {
      const fd = this.transport.open(path, { access: 'read' });
      this.transport.close(fd);
      return true;
    } catch (err) {
      return !isErrno(err, 'ENOENT', 'ENXIO', 'ENODEV');
    }
  }

  /** @internal what this process or the records know about snapshot `id`. */
  snapshotFacts(id: SnapshotId): { known: KnownSnapshot | undefined; record: SnapshotRecord | null } {
    const key = id.toString();
    return { known: knowledge(this.recordsDir).get(key), record: this.records.read(key) };
  }

  /** @internal ids of snapshots this process knows `devicePath` was added to. */
  knownMemberships(devicePath: string): string[] {
    return [...knowledge(this.recordsDir).entries()].filter(([, k]) => k.members.has(devicePath)).map(([id]) => id);
  }

  /** @internal */
  noteCreated(id: SnapshotId, diffStorage: string): void {
    knowledge(this.recordsDir).set(id.toString(), { diffStorage, taken: false, members: new Set() });
  }

  /** @internal */
  noteTaken(id: SnapshotId): void {
    const key = id.toString();
    const k = knowledge(this.recordsDir).get(key);
    if (k) k.taken = true;
    else knowledge(this.recordsDir).set(key, { diffStorage: '', taken: true, members: new Set() });
    safely(() => this.records.update(key, (r) => { r.takenAt ??= new Date().toISOString(); }));
  }

  /** @internal */
  noteDestroyed(id: SnapshotId): void {
    const key = id.toString();
    knowledge(this.recordsDir).delete(key);
    safely(() => this.records.remove(key));
  }

  /** @internal */
  noteAdded(id: SnapshotId, devicePath: string): void {
    knowledge(this.recordsDir).get(id.toString())?.members.add(devicePath);
    safely(() => this.records.update(id.toString(), (r) => { if (!r.devices.includes(devicePath)) r.devices.push(devicePath); }));
  }
}

/** Record keeping must never turn a successful kernel operation into a failure. */
function safely(fn: () => unknown): void {
  try {
    fn();
  } catch {
    // the records directory is advisory; the kernel is the truth
  }
}

class BlksnapControl implements ControlClient {
  private fd: number | null = null;

  constructor(private readonly k: ClientKernel) {}

  private get transport(): IoctlTransport {
    return this.k.transport;
  }

  private open(): number {
    if (this.fd !== null) return this.fd;
    const path = this.k.controlDevicePath;
    try {
      this.fd = this.transport.open(path, { access: 'readwrite' });
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      if (isErrno(err, 'ENOENT', 'ENXIO', 'ENODEV')) {
        const filter = this.k.abi.filterDevice;
        throw moduleMissing(filter && !this.k.nodeExists(filter) ? [path, filter] : [path], err);
      }
      throw openError(err, path, 'control');
    }
    return this.fd;
  }

  private call(req: IoctlDef, arg: Buffer, mem: UserMemory = this.transport.userMemory()): number {
    const fd = this.open();
    return this.transport.ioctl(fd, req, arg, mem);
  }

  private failure(err: unknown, subject?: string): unknown {
    if (!(err instanceof SyscallError)) return err;
    return commonError(err, subject ?? this.k.controlDevicePath) ?? err;
  }

  async version(): Promise<ModuleVersion> {
    const arg = abi.blksnap_version.encode({});
    try {
      this.call(abi.IOCTL_BLKSNAP_VERSION, arg);
    } catch (err) {
      throw this.failure(err);
    }
    const v = abi.blksnap_version.decode(arg);
    return { ...v, text: `${v.major}.${v.minor}.${v.revision}.${v.build}` };
  }

  async moduleInfo(): Promise<ModuleInfo | null> {
    const arg = abi.blksnap_mod.encode({});
    try {
      this.call(abi.IOCTL_BLKSNAP_MOD, arg);
    } catch (err) {
      if (isErrno(err, 'ENOTTY')) return null;
      throw this.failure(err);
    }
    const m = abi.blksnap_mod.decode(arg);
    const flagNames: string[] = [];
    const byBit = new Map<number, string>(Object.entries(abi.BLKSNAP_COMPAT_FLAGS).map(([n, bit]) => [bit, n]));
    for (let bit = 0; bit < 64; bit++) {
      if ((m.compatibility_flags >> BigInt(bit)) & 1n) flagNames.push(byBit.get(bit) ?? `bit${bit}`);
    }
    return { name: m.name, compatibilityFlags: m.compatibility_flags, flagNames };
  }

  async setLog(options: { level: number | null; filePath: string | null; tzMinutesWest: number }): Promise<boolean> {
    const { level, filePath, tzMinutesWest } = options;
    if (!Number.isInteger(tzMinutesWest) || Math.abs(tzMinutesWest) > 24 * 60) {
      throw new UsageError(`invalid time zone offset ${tzMinutesWest} (minutes west of UTC)`);
    }
    const disable = level === null || level < 0 || filePath === null;
    if (!disable && (!Number.isInteger(level) || (level as number) > 7)) {
      throw new UsageError(`invalid log level ${level}`, { hint: 'levels are 0-7: 3 errors, 4 warnings, 6 info, 7 debug' });
    }
    const mem = this.transport.userMemory();
    let arg: Buffer;
    if (disable) {
      // A negative level with a null path turns the module's log off (§3).
      arg = abi.blksnap_setlog.encode({ tz_minuteswest: tzMinutesWest, level: -1, filepath_size: 0, filepath: 0n });
    } else {
      if (filePath === '' || !filePath.startsWith('/')) {
        throw new UsageError(`log file path must be absolute: "${filePath}"`);
      }
      const bytes = Buffer.from(filePath, 'utf8');
      const pathz = Buffer.concat([bytes, Buffer.alloc(1)]);
      arg = abi.blksnap_setlog.encode({
        tz_minuteswest: tzMinutesWest,
        level: level as number,
        filepath_size: bytes.length,
        filepath: mem.pin(pathz),
      });
    }
    try {
      this.call(abi.IOCTL_BLKSNAP_SETLOG, arg, mem);
    } catch (err) {
      if (isErrno(err, 'ENOTTY')) return false;
      throw this.failure(err, filePath ?? undefined);
    }
    return true;
  }

  async createSnapshot(diffStoragePath: string, limitSectors: bigint): Promise<SnapshotId> {
    if (typeof diffStoragePath !== 'string' || !diffStoragePath.startsWith('/')) {
      // The module resolves "" and relative paths against its caller's cwd (§7).
      throw new UsageError(`difference storage path must be absolute: "${diffStoragePath}"`);
    }
    if (typeof limitSectors !== 'bigint' || limitSectors < 0n || limitSectors > 0xffff_ffff_ffff_ffffn) {
      throw new UsageError(`invalid difference storage limit ${String(limitSectors)} (sectors)`);
    }
    const mem = this.transport.userMemory();
    const pathz = Buffer.concat([Buffer.from(diffStoragePath, 'utf8'), Buffer.alloc(1)]);
    const arg = abi.blksnap_snapshot_create.encode({
      diff_storage_limit_sect: limitSectors,
      diff_storage_filename: mem.pin(pathz),
    });
    try {
      this.call(abi.IOCTL_BLKSNAP_SNAPSHOT_CREATE, arg, mem);
    } catch (err) {
      throw this.createFailure(err, diffStoragePath);
    }
    const id = SnapshotId.fromBytes(abi.blksnap_snapshot_create.decode(arg).id.b);
    this.k.noteCreated(id, diffStoragePath);
    return id;
  }

  private createFailure(err: unknown, p: string): unknown {
    if (!(err instanceof SyscallError)) return err;
    const common = commonError(err, p);
    if (common) return common;
    switch (err.errno) {
      case 'ENOENT':
        return typed(NotFoundError, `${p}: difference storage does not exist`, err, p, 'give an existing directory (recommended), an existing regular file or an unused block device');
      case 'EBUSY':
        return typed(BusyError, `${p}: difference storage is in use (held exclusively by another snapshot or process)`, err, p);
      case 'ENOSPC':
        return typed(BlksnapError, `${p}: difference storage does not fit the limit (an existing file larger than the limit, or a device or filesystem too small)`, err, p, 'use an empty file or a directory, or change --limit');
      case 'EINVAL':
      case 'ENOTDIR':
      case 'EISDIR':
        return typed(UsageError, `${p}: cannot be used as difference storage (${err.errno})`, err, p, 'give a directory (recommended), an existing regular file or an unused block device');
      default:
        return err;
    }
  }

  private idRequest(id: SnapshotId): Buffer {
    return abi.blksnap_uuid.encode({ b: id.bytes });
  }

  async destroySnapshot(id: SnapshotId): Promise<void> {
    try {
      this.call(abi.IOCTL_BLKSNAP_SNAPSHOT_DESTROY, this.idRequest(id));
    } catch (err) {
      if (isErrno(err, 'ENODEV')) {
        this.k.noteDestroyed(id);
        throw typed(NotFoundError, `snapshot ${id} does not exist`, err, id.toString(), 'list snapshots with `blksnap snapshot list`');
      }
      throw this.failure(err, id.toString());
    }
    this.k.noteDestroyed(id);
  }

  async takeSnapshot(id: SnapshotId): Promise<void> {
    try {
      this.call(abi.IOCTL_BLKSNAP_SNAPSHOT_TAKE, this.idRequest(id));
    } catch (err) {
      if (err instanceof SyscallError) {
        const s = id.toString();
        switch (err.errno) {
          case 'ESRCH':
            throw typed(NotFoundError, `snapshot ${s} does not exist`, err, s, 'list snapshots with `blksnap snapshot list`');
          case 'EALREADY':
            this.k.noteTaken(id);
            throw typed(BusyError, `snapshot ${s} is already taken`, err, s);
          case 'ENODEV':
            throw typed(BlksnapError, `snapshot ${s} has no devices to take`, err, s, 'add devices first (a device that holds the difference storage is not a member)');
        }
      }
      throw this.failure(err, id.toString());
    }
    this.k.noteTaken(id);
  }

  async collectSnapshots(): Promise<SnapshotId[]> {
    const req = abi.IOCTL_BLKSNAP_SNAPSHOT_COLLECT;
    for (let attempt = 0; attempt < COLLECT_ATTEMPTS; attempt++) {
      // First call with ids 0: the kernel only reports how many there are.
      const probe = abi.blksnap_snapshot_collect.encode({ count: 0, ids: 0n });
      try {
        this.call(req, probe);
      } catch (err) {
        throw this.failure(err);
      }
      const count = abi.blksnap_snapshot_collect.decode(probe).count;
      if (count === 0) return [];
      const mem = this.transport.userMemory();
      const ids = Buffer.alloc(count * abi.blksnap_uuid.size);
      const arg = abi.blksnap_snapshot_collect.encode({ count, ids: mem.pin(ids) });
      try {
        this.call(req, arg, mem);
      } catch (err) {
        // More snapshots than a moment ago. The real module leaves `count`
        // unchanged here (§7), so the only safe move is to ask again.
        if (isErrno(err, 'ENODATA')) continue;
        throw this.failure(err);
      }
      const got = abi.blksnap_snapshot_collect.decode(arg).count;
      const n = Math.min(got, count);
      return abi.decodeArray(abi.blksnap_uuid, ids, n).map((u) => SnapshotId.fromBytes(u.b));
    }
    throw new BusyError(`${req.name}: the number of snapshots kept changing; try again`, { op: req.name, path: this.k.controlDevicePath });
  }

  async waitEvent(id: SnapshotId, timeoutMs: number, signal?: AbortSignal): Promise<SnapshotEvent | null> {
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new UsageError(`invalid timeout ${timeoutMs} ms`);
    const req = abi.IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT;
    const deadline = Date.now() + timeoutMs;
    // The kernel takes timeout_ms as jiffies (§7): one unit lasts 1-10 ms
    // depending on HZ. Assume the slowest tick (HZ 100) so no wait overshoots
    // the caller's deadline, then learn the real length from waits that ran
    // to their timeout. A shorter wait than needed only costs another loop.
    let msPerUnit = 10;
    let first = true;
    for (;;) {
      if (signal?.aborted) return null;
      const remaining = deadline - Date.now();
      if (remaining <= 0 && !first) return null;
      first = false;
      const units = Math.max(1, Math.min(WAIT_EVENT_MAX_UNITS, Math.round(remaining / msPerUnit)));
      const arg = abi.blksnap_snapshot_event.encode({ id: { b: id.bytes }, timeout_ms: units });
      const started = Date.now();
      let outcome: 'event' | 'aborted';
      try {
        outcome = await raceAbort(this.transport.ioctlAsync(this.open(), req, arg, this.transport.userMemory()), signal);
      } catch (err) {
        if (isErrno(err, 'ENOENT')) {
          const elapsed = Date.now() - started;
          if (units >= 20 && elapsed > 0) msPerUnit = Math.max(1, elapsed / units);
          continue;
        }
        if (isErrno(err, 'EINTR')) continue;
        if (isErrno(err, 'ESRCH')) {
          throw typed(NotFoundError, `snapshot ${id} does not exist (destroyed)`, err, id.toString());
        }
        throw this.failure(err, id.toString());
      }
      if (outcome === 'aborted') return null;
      return decodeEvent(abi.blksnap_snapshot_event.decode(arg));
    }
  }

  close(): void {
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      this.transport.close(fd);
    }
  }
}

/** Resolves 'aborted' as soon as `signal` aborts; the ioctl itself runs on to its own timeout. */
function raceAbort(p: Promise<number>, signal?: AbortSignal): Promise<'event' | 'aborted'> {
  const done = p.then(() => 'event' as const);
  if (!signal) return done;
  if (signal.aborted) {
    done.catch(() => undefined);
    return Promise.resolve('aborted');
  }
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      done.catch(() => undefined);
      resolve('aborted');
    };
    signal.addEventListener('abort', onAbort, { once: true });
    done.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

export function decodeEvent(ev: abi.BlksnapSnapshotEvent): SnapshotEvent {
  switch (ev.code) {
    case abi.BLKSNAP_EVENT_CODE.corrupted: {
      const d = abi.blksnap_event_corrupted.decode(ev.data);
      return { code: 'corrupted', timeLabel: ev.time_label, devMajor: d.dev_id_mj, devMinor: d.dev_id_mn, errCode: d.err_code };
    }
    case abi.BLKSNAP_EVENT_CODE.no_space: {
      const d = abi.blksnap_event_no_space.decode(ev.data);
      return { code: 'no_space', timeLabel: ev.time_label, requestedSectors: d.requested_nr_sect };
    }
    default:
      return { code: 'unknown', timeLabel: ev.time_label, rawCode: ev.code, data: Buffer.from(ev.data) };
  }
}

/** True when an event means the snapshot overflowed its difference storage (§7: a code-0 event with +ENOSPC). */
export function isOverflowEvent(ev: SnapshotEvent): boolean {
  if (ev.code === 'no_space') return true;
  return ev.code === 'corrupted' && Math.abs(ev.errCode) === errnoNumber('ENOSPC');
}

class BlksnapDevice implements DeviceClient {
  private identity: Promise<DeviceIdentity> | null = null;

  constructor(private readonly k: ClientKernel, readonly path: string) {}

  private get transport(): IoctlTransport {
    return this.k.transport;
  }

  /** The canonical identity; the standalone module reopens the attach path later, so only canonical paths are sent (§7). */
  resolve(): Promise<DeviceIdentity> {
    if (!this.identity) {
      this.identity = this.k.platform.resolveDevice(this.path);
      this.identity.catch(() => { this.identity = null; });
    }
    return this.identity;
  }

  /**
   * Runs one filter request. upstream: on an fd of the device itself;
   * standalone: on /dev/bdevfilter with the device path behind `devpath`.
   * `build` fills the request, pinning what it points to in `mem`.
   */
  private async filterCall(req: IoctlDef, devicePath: string, build: (mem: UserMemory, devpath: bigint) => Buffer): Promise<void> {
    const t = this.transport;
    const mem = t.userMemory();
    const standalone = this.k.abi.filterDevice !== null;
    const openPath = standalone ? (this.k.abi.filterDevice as string) : devicePath;
    let fd: number;
    try {
      fd = t.open(openPath, { access: standalone ? 'readwrite' : 'read' });
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      if (standalone && isErrno(err, 'ENOENT', 'ENXIO', 'ENODEV')) throw moduleMissing([openPath], err);
      throw openError(err, openPath, standalone ? 'filter' : 'device');
    }
    try {
      const devpath = standalone ? mem.pin(Buffer.concat([Buffer.from(devicePath, 'utf8'), Buffer.alloc(1)])) : 0n;
      t.ioctl(fd, req, build(mem, devpath), mem);
    } catch (err) {
      // Name the device, not /dev/bdevfilter, in what the admin reads.
      if (err instanceof SyscallError && err.path !== devicePath) throw withOp(err, err.op as string, devicePath);
      throw err;
    } finally {
      t.close(fd);
    }
  }

  /** Errors every filter request shares; null when the caller must decide. */
  private filterFailure(err: unknown, devicePath: string): BlksnapError | null {
    if (!(err instanceof SyscallError)) return null;
    const common = commonError(err, devicePath);
    if (common) return common;
    const standalone = this.k.abi.filterDevice !== null;
    // A kernel without the filter mechanism answers ENOTTY; this VM's loop
    // driver answers EINVAL to unknown block ioctls. Where there is no
    // blksnap control device either, that is a kernel without filter support.
    if (!standalone && (err.errno === 'ENOTTY' || err.errno === 'EINVAL') && !this.k.controlDeviceExists()) {
      return unsupportedKernel(err, devicePath);
    }
    if (err.errno === 'ENODEV') return typed(NotFoundError, `${devicePath}: device is gone`, err, devicePath);
    if (standalone && err.errno === 'ENOTBLK') return typed(UsageError, `${devicePath}: not a block device`, err, devicePath);
    if (!standalone && err.errno === 'ENOTTY') return typed(UsageError, `${devicePath}: not a block device`, err, devicePath);
    return null;
  }

  async attach(): Promise<AttachResult> {
    const dev = (await this.resolve()).path;
    const req = this.k.abi.attach;
    try {
      await this.filterCall(req, dev, (_mem, devpath) =>
        this.k.abi.filterDevice !== null
          ? abi.bdevfilter_name.encode({ devpath, name: FILTER_NAME })
          : abi.blkfilter_attach.encode({ name: FILTER_NAME, opt: 0n, optlen: 0 }));
    } catch (err) {
      if (isErrno(err, 'EALREADY')) return { alreadyAttached: true };
      const known = this.filterFailure(err, dev);
      if (known) throw known;
      if (err instanceof SyscallError) {
        switch (err.errno) {
          case 'ENOENT':
            if (this.k.abi.filterDevice === null) throw moduleMissing([this.k.controlDevicePath], err);
            throw typed(NotFoundError, `${dev}: no such device`, err, dev);
          case 'EBUSY':
            throw typed(BusyError, `${dev}: another block device filter is attached`, err, dev);
        }
      }
      throw err;
    }
    return { alreadyAttached: false };
  }

  async detach(options: { force?: boolean } = {}): Promise<void> {
    const dev = (await this.resolve()).path;
    if (!options.force) await this.refuseIfInSnapshot(dev);
    const req = this.k.abi.detach;
    try {
      await this.filterCall(req, dev, (_mem, devpath) =>
        this.k.abi.filterDevice !== null
          ? abi.bdevfilter_name.encode({ devpath, name: FILTER_NAME })
          : abi.blkfilter_detach.encode({ name: FILTER_NAME }));
    } catch (err) {
      const known = this.filterFailure(err, dev);
      if (known) throw known;
      if (err instanceof SyscallError) {
        switch (err.errno) {
          case 'ENOENT':
            throw typed(NotFoundError, `${dev}: change tracking is not attached`, err, dev);
          case 'EINVAL':
            throw typed(BusyError, `${dev}: another block device filter is attached`, err, dev);
        }
      }
      throw err;
    }
  }

  /**
   * DETACH of a device in a taken snapshot succeeds on the real module and
   * silently stops copy-on-write, so the image shows new data (§7).
   * SNAPSHOTINFO shows an image (or an error code) only once the snapshot is
   * taken; membership of a snapshot not yet taken is known from this
   * process and from the records.
   */
  private async refuseIfInSnapshot(dev: string): Promise<void> {
    let info: abi.BlksnapSnapshotinfo | null = null;
    try {
      info = await this.rawSnapshotInfo(dev);
    } catch (err) {
      if (!isErrno(err, 'ENOENT', 'ESRCH')) {
        const known = this.filterFailure(err, dev);
        // Without filter support there is nothing to detach; let DETACH report it.
        if (!(known && known.kind === 'unsupported_kernel')) throw known ?? err;
      }
    }
    if (info && (info.image !== '' || info.error_code !== 0)) {
      throw new BusyError(`${dev}: device is in a snapshot${info.image ? ` (image ${info.image})` : ''}; detaching it would silently stop copy-on-write`, {
        op: 'detach',
        path: dev,
        hint: 'destroy the snapshot first (`blksnap snapshot list`), or pass --force',
      });
    }
    const live = await this.liveSnapshotsWith(dev);
    if (live.length > 0) {
      throw new BusyError(`${dev}: device is in snapshot ${live[0]}; detaching it would silently stop copy-on-write`, {
        op: 'detach',
        path: dev,
        hint: `destroy the snapshot first (\`blksnap snapshot destroy ${live[0]}\`), or pass --force`,
      });
    }
  }

  /** Snapshots the module still holds that this process or our records put `dev` in. */
  private async liveSnapshotsWith(dev: string): Promise<string[]> {
    const ids = new Set([...this.k.knownMemberships(dev), ...this.k.records.list().filter((r) => r.devices.includes(dev)).map((r) => r.id)]);
    if (ids.size === 0) return [];
    let live: Set<string>;
    const control = this.k.control();
    try {
      live = new Set((await control.collectSnapshots()).map(String));
    } catch {
      return [...ids]; // cannot tell: trust what we know
    } finally {
      control.close();
    }
    return [...ids].filter((id) => live.has(id));
  }

  private async ctl(cmd: abi.BlksnapCtlName, opt: Buffer, dev: string, pinExtra?: (mem: UserMemory) => void): Promise<void> {
    const req = this.k.abi.ctl;
    const standalone = this.k.abi.filterDevice !== null;
    try {
      await this.filterCall(req, dev, (mem, devpath) => {
        pinExtra?.(mem);
        const optAddr = mem.pin(opt);
        return standalone
          ? abi.bdevfilter_ctl.encode({ devpath, name: FILTER_NAME, cmd: abi.BLKSNAP_CTL[cmd], optlen: opt.length, opt: optAddr })
          : abi.blkfilter_ctl.encode({ name: FILTER_NAME, cmd: abi.BLKSNAP_CTL[cmd], optlen: opt.length, opt: optAddr });
      });
    } catch (err) {
      if (err instanceof SyscallError && err.op === req.name) throw withOp(err, ctlName(req, cmd), dev);
      throw err;
    }
  }

  /** Shared translation of CTL errors (ENOENT means "not in a snapshot" for SNAPSHOTINFO). */
  private ctlFailure(err: unknown, dev: string, cmd: abi.BlksnapCtlName): unknown {
    const known = this.filterFailure(err, dev);
    if (known) return known;
    if (!(err instanceof SyscallError)) return err;
    switch (err.errno) {
      case 'ENOENT':
        // No filter on the device, so certainly in no snapshot.
        if (cmd === 'SNAPSHOTINFO') return typed(NotFoundError, `${dev}: not in a snapshot`, err, dev, 'create one with `blksnap snapshot create`');
        return typed(NotFoundError, `${dev}: change tracking is not attached`, err, dev, ctlNotAttachedHint(dev));
      case 'ESRCH':
        if (cmd === 'SNAPSHOTADD') return err; // caller words it with the id
        return typed(NotFoundError, `${dev}: no change tracker yet`, err, dev, ctlNotAttachedHint(dev));
      case 'EINVAL':
        if (this.k.abi.filterDevice === null) return typed(BusyError, `${dev}: another block device filter is attached`, err, dev);
        return err;
      default:
        return err;
    }
  }

  async cbtInfo(): Promise<CbtInfo> {
    const dev = (await this.resolve()).path;
    const opt = abi.blksnap_cbtinfo.encode({});
    try {
      await this.ctl('CBTINFO', opt, dev);
    } catch (err) {
      throw this.ctlFailure(err, dev, 'CBTINFO');
    }
    const c = abi.blksnap_cbtinfo.decode(opt);
    return {
      capacity: c.device_capacity,
      blockSize: c.block_size,
      blockCount: c.block_count,
      generationId: SnapshotId.fromBytes(c.generation_id.b).toString(),
      changesNumber: c.changes_number,
    };
  }

  async readCbtMap(info?: CbtInfo): Promise<Uint8Array> {
    const dev = (await this.resolve()).path;
    const cbt = info ?? (await this.cbtInfo());
    const total = cbt.blockCount;
    const map = new Uint8Array(total);
    for (let offset = 0; offset < total; offset += CBTMAP_PIECE_BYTES) {
      const piece = Buffer.alloc(Math.min(CBTMAP_PIECE_BYTES, total - offset));
      await this.cbtMapPiece(dev, offset, piece);
      map.set(piece, offset);
    }
    return map;
  }

  private async cbtMapPiece(dev: string, offset: number, piece: Buffer): Promise<void> {
    const opt = Buffer.alloc(abi.blksnap_cbtmap.size);
    try {
      await this.ctl('CBTMAP', opt, dev, (mem) => {
        abi.blksnap_cbtmap.encodeInto(opt, { offset, length: piece.length, buffer: mem.pin(piece) });
      });
    } catch (err) {
      if (isErrno(err, 'ENODATA')) {
        throw typed(BlksnapError, `${dev}: change map is shorter than expected (the tracker was recreated, e.g. the device was resized)`, err, dev, 'read CBT info again and retry');
      }
      if (isErrno(err, 'EFAULT')) {
        throw typed(IncrementalImpossibleError, `${dev}: the change tracking map is marked corrupted`, err, dev, 'the next backup must be a full one');
      }
      throw this.ctlFailure(err, dev, 'CBTMAP');
    }
  }

  async markDirty(ranges: SectorRange[]): Promise<void> {
    const identity = await this.resolve();
    const dev = identity.path;
    if (!Array.isArray(ranges) || ranges.length === 0) throw new UsageError(`${dev}: no sector ranges to mark dirty`);
    // The module's answer to bad ranges is worse than an error: {0,0}
    // marks the whole live map and a range straddling the end marks the
    // last block before EINVAL (§7). So nothing is sent until every range
    // is known to be inside the device: first the checks that need no
    // kernel, then the device size, then the tracker's own capacity (the
    // bound the module applies; it differs after a resize until the next take).
    const bad = (r: SectorRange | undefined, why: string, capacity?: bigint): UsageError =>
      new UsageError(`${dev}: invalid sector range ${String(r?.offset)}:${String(r?.count)} (${why})`, {
        path: dev,
        hint: `ranges are START:COUNT in 512-byte sectors${capacity !== undefined ? ` inside 0..${capacity}` : ''}`,
      });
    for (const r of ranges) {
      if (!r || typeof r.offset !== 'bigint' || typeof r.count !== 'bigint') throw bad(r, 'offset and count must be integers');
      if (r.offset < 0n) throw bad(r, 'negative offset');
      if (r.count <= 0n) throw bad(r, 'count must be greater than 0');
    }
    const sectorSize = BigInt(abi.SECTOR_SIZE);
    const checkInside = (capacitySectors: bigint): void => {
      for (const r of ranges) {
        if (r.offset + r.count > capacitySectors) throw bad(r, `past the end of the device (${capacitySectors} sectors)`, capacitySectors);
      }
    };
    if (identity.size > 0n) checkInside(identity.size / sectorSize);
    checkInside((await this.cbtInfo()).capacity / sectorSize);
    for (let i = 0; i < ranges.length; i += CBTDIRTY_BATCH) {
      const batch = ranges.slice(i, i + CBTDIRTY_BATCH);
      const sectors = abi.encodeArray(abi.blksnap_sectors, batch.map((r) => ({ offset: r.offset, count: r.count })));
      const opt = Buffer.alloc(abi.blksnap_cbtdirty.size);
      try {
        await this.ctl('CBTDIRTY', opt, dev, (mem) => {
          abi.blksnap_cbtdirty.encodeInto(opt, { count: batch.length, dirty_sectors: mem.pin(sectors) });
        });
      } catch (err) {
        throw this.ctlFailure(err, dev, 'CBTDIRTY');
      }
    }
  }

  async addToSnapshot(id: SnapshotId): Promise<void> {
    const identity = await this.resolve();
    const dev = identity.path;
    const s = id.toString();
    const { known, record } = this.k.snapshotFacts(id);
    // After TAKE the module answers 0 but the device gets no image (§7).
    if (known?.taken || record?.takenAt) {
      throw new BusyError(`${dev}: snapshot ${s} is already taken; a device added now would get no image`, {
        op: 'addToSnapshot', path: dev, hint: 'create a new snapshot with every device, then take it',
      });
    }
    if (record) {
      for (const member of record.devices) {
        if (member === dev) continue;
        const other = new BlksnapDevice(this.k, member);
        const image = await other.resolve().then((m) => other.rawSnapshotInfo(m.path)).then((i) => i.image, () => '');
        if (image) {
          throw new BusyError(`${dev}: snapshot ${s} is already taken; a device added now would get no image`, {
            op: 'addToSnapshot', path: dev, hint: 'create a new snapshot with every device, then take it',
          });
        }
      }
    }
    // A difference storage on a member device: SNAPSHOTADD answers 0 and
    // does nothing, then TAKE fails with ENODEV (§7).
    const storagePath = known?.diffStorage || record?.diffStorage || '';
    if (storagePath) {
      const storage = await this.k.platform.deviceOfPath(storagePath).catch(() => null);
      if (storage && sameStorage(storage, identity)) {
        throw new BusyError(`${dev}: holds the difference storage of snapshot ${s} (${storagePath}); it cannot be in the same snapshot`, {
          op: 'addToSnapshot', path: dev, hint: 'put the difference storage on a device that is not snapshotted',
        });
      }
    } else if (record?.diffStorageDevice) {
      const holder = await this.k.platform.resolveDevice(record.diffStorageDevice).catch(() => null);
      if (holder && sameStorage(holder, identity)) {
        throw new BusyError(`${dev}: holds the difference storage of snapshot ${s}; it cannot be in the same snapshot`, { op: 'addToSnapshot', path: dev });
      }
    }
    const opt = abi.blksnap_snapshotadd.encode({ id: { b: id.bytes } });
    try {
      await this.ctl('SNAPSHOTADD', opt, dev);
    } catch (err) {
      if (err instanceof SyscallError) {
        switch (err.errno) {
          case 'ESRCH':
            throw typed(NotFoundError, `snapshot ${s} does not exist`, err, dev, 'list snapshots with `blksnap snapshot list`');
          case 'EALREADY':
            throw typed(BusyError, `${dev}: already in snapshot ${s}`, err, dev);
          case 'EBUSY':
            throw typed(BusyError, `${dev}: belongs to another snapshot`, err, dev, 'destroy the other snapshot first (`blksnap snapshot list`)');
        }
      }
      throw this.ctlFailure(err, dev, 'SNAPSHOTADD');
    }
    this.k.noteAdded(id, dev);
  }

  /** @internal */
  async rawSnapshotInfo(dev: string): Promise<abi.BlksnapSnapshotinfo> {
    // The module copies the caller's struct in and writes back only what it
    // sets (§7): a zeroed buffer keeps `image` empty when there is no image.
    const opt = Buffer.alloc(abi.blksnap_snapshotinfo.size);
    await this.ctl('SNAPSHOTINFO', opt, dev);
    return abi.blksnap_snapshotinfo.decode(opt);
  }

  async snapshotInfo(): Promise<SnapshotInfo> {
    const dev = (await this.resolve()).path;
    let info: abi.BlksnapSnapshotinfo;
    try {
      info = await this.rawSnapshotInfo(dev);
    } catch (err) {
      throw this.ctlFailure(err, dev, 'SNAPSHOTINFO');
    }
    const imagePath = info.image ? await this.k.platform.imagePath(info.image, DEFAULT_IMAGE_TIMEOUT_MS) : null;
    return { errorCode: info.error_code, imageName: info.image, imagePath };
  }
}
