/**
 * The simulated kernel's side of the IoctlTransport contract. It receives
 * what the real kernel would: a request number and the argument bytes; it
 * follows user pointers only through `UserMemory` (copy_from_user /
 * copy_to_user) and writes its answers into the argument bytes exactly where
 * and when the kernel does. Dispatch is on `request.number` alone; the
 * IoctlDef object a client passes is used for nothing but the error's name.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as defs from '../../../ioctl-defs';
import type { FlavourName, IoctlDef } from '../../../ioctl-defs';
import { SyscallError } from '../../errors';
import { PinnedUserMemory } from '../../ioctl/user-memory';
import type { IoctlTransport, OpenOptions, UserMemory } from '../../ioctl/types';
import type { SimKernel } from './kernel';
import {
  attach, capacitySectorsOf, cbtInfo, detach, findSnapshot, KernelAnswer, markDirty, popEvent, readMap, recordHazard,
  registerDevice, snapshotAdd, snapshotCreate, snapshotDestroy, snapshotIds, snapshotInfo, snapshotTake, statOrNull,
  syncDevice, trackerForCtl,
} from './model';
import type { EventRecord } from './state';
import type { Transaction } from './store';
import { sleepSync } from './store';

const {
  BLKFILTER_ATTACH, BLKFILTER_DETACH, BLKFILTER_CTL, BDEVFILTER_ATTACH, BDEVFILTER_DETACH, BDEVFILTER_CTL,
  IOCTL_BLKSNAP_VERSION, IOCTL_BLKSNAP_SNAPSHOT_CREATE, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, IOCTL_BLKSNAP_SNAPSHOT_TAKE,
  IOCTL_BLKSNAP_SNAPSHOT_COLLECT, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, IOCTL_BLKSNAP_MOD, IOCTL_BLKSNAP_SETLOG,
  BLKGETSIZE64, BLKSSZGET, BLKSNAP_CTL, BLKSNAP_FILTER_NAME,
  blkfilter_attach, blkfilter_detach, blkfilter_ctl, bdevfilter_name, bdevfilter_ctl,
  blksnap_cbtinfo, blksnap_cbtmap, blksnap_cbtdirty, blksnap_sectors, blksnap_snapshotadd, blksnap_snapshotinfo,
  blksnap_version, blksnap_snapshot_create, blksnap_snapshot_collect, blksnap_snapshot_event, blksnap_uuid,
  blksnap_mod, blksnap_setlog, u64_value, int_value,
} = defs;

/** What the simulated module reports (§7: 7.0.0.0 on both flavours). */
export const SIM_VERSION = { major: 7, minor: 0, revision: 0, build: 0 } as const;
/** IOCTL_BLKSNAP_MOD of the standalone module (§7). */
export const SIM_MOD = { name: 'standalone', compatibility_flags: 0x2n } as const;

/** Virtual fds start high so they never look like a real descriptor of this process. */
const FD_BASE = 0x4000_0000;
const PATH_MAX = 4096;
const WAIT_POLL_MS = 20;

type FileKind = 'control' | 'bdevfilter' | 'device' | 'other';
interface OpenFile { path: string; kind: FileKind; canonical: string | null; exclusive: boolean }

interface WaitRequest { idHex: string; deadline: number; arg: Buffer }


const ESTR = (errno: string, hint?: string): never => {
  throw new KernelAnswer(errno, hint);
};

/** copy_from_user: null where the kernel would fault. */
function fromUser(memory: UserMemory, address: bigint, length: number): Buffer | null {
  if (length === 0) return Buffer.alloc(0);
  if (address === 0n) return null;
  try {
    return memory.read(address, length);
  } catch (err) {
    if (err instanceof SyscallError && err.errno === 'EFAULT') return null;
    throw err;
  }
}

/** copy_to_user: false where the kernel would fault. */
function toUser(memory: UserMemory, address: bigint, data: Uint8Array): boolean {
  if (data.length === 0) return true;
  if (address === 0n) return false;
  try {
    memory.write(address, data);
    return true;
  } catch (err) {
    if (err instanceof SyscallError && err.errno === 'EFAULT') return false;
    throw err;
  }
}

/** strncpy_from_user of a path: EFAULT on a fault, ENAMETOOLONG without a NUL in PATH_MAX. */
function pathFromUser(memory: UserMemory, address: bigint): string {
  const bytes: number[] = [];
  for (let i = 0; i < PATH_MAX; i++) {
    const b = fromUser(memory, address + BigInt(i), 1);
    if (!b) ESTR('EFAULT');
    if (b![0] === 0) return Buffer.from(bytes).toString('utf8');
    bytes.push(b![0]);
  }
  return ESTR('ENAMETOOLONG');
}

export class SimTransport implements IoctlTransport {
  readonly kind = 'sim' as const;
  private readonly files = new Map<number, OpenFile>();
  private nextFd = FD_BASE;
  private readonly abi: defs.FlavourAbi;

  constructor(private readonly kernel: SimKernel, readonly flavour: FlavourName) {
    this.abi = defs.flavours[flavour];
  }

  open(p: string, options: OpenOptions): number {
    const file = this.openFile(p, options);
    const fd = this.nextFd++;
    this.files.set(fd, file);
    return fd;
  }

  private openFile(p: string, options: OpenOptions): OpenFile {
    const controlPaths = [defs.upstream.controlDevice, defs.standalone.controlDevice, defs.standalone.filterDevice!];
    if (controlPaths.includes(p)) {
      const mine = p === this.abi.controlDevice ? 'control' : p === this.abi.filterDevice ? 'bdevfilter' : null;
      if (!mine) throw new SyscallError('ENOENT', 'open', p);
      const ok = this.kernel.run((tx) => this.kernel.claimFlavour(tx, this.flavour));
      if (!ok) {
        const other = this.kernel.store.readState().flavour;
        throw new SyscallError('ENOENT', 'open', p, `the simulated kernel in ${this.kernel.dir} runs the ${other} flavour while it holds trackers or snapshots; use BLKSNAP_SIM_FLAVOUR=${other} or reset it`);
      }
      return { path: p, kind: mine, canonical: null, exclusive: false };
    }
    const abs = path.resolve(p);
    const st = statOrNull(abs);
    if (!st) throw new SyscallError('ENOENT', 'open', p);
    if (!st.isFile()) return { path: p, kind: 'other', canonical: null, exclusive: false };
    const canonical = fs.realpathSync(abs);
    if (options.exclusive) {
      // A block device held as difference storage is opened exclusively by the module (§7).
      const held = this.kernel.store.readState().snapshots.some((s) => s.storage.kind === 'block_device' && s.storage.path === canonical);
      if (held) throw new SyscallError('EBUSY', 'open', p);
    }
    return { path: p, kind: 'device', canonical, exclusive: !!options.exclusive };
  }

  close(fd: number): void {
    if (!this.files.delete(fd)) throw new SyscallError('EBADF', 'close', undefined);
  }

  pathOf(fd: number): string | undefined {
    return this.files.get(fd)?.path;
  }

  userMemory(): UserMemory {
    return new PinnedUserMemory();
  }

  ioctl(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): number {
    const file = this.prepare(fd, request, arg);
    if (request.number === IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT.number && file.kind === 'control') {
      const w = this.call(file, request, () => this.waitStart(arg));
      for (;;) {
        const r = this.call(file, request, () => this.waitPoll(w));
        if (r !== null) return r;
        sleepSync(Math.min(WAIT_POLL_MS, Math.max(1, w.deadline - Date.now())));
      }
    }
    return this.call(file, request, () => this.dispatch(file, request.number, arg, memory));
  }

  async ioctlAsync(fd: number, request: IoctlDef, arg: Buffer, memory: UserMemory): Promise<number> {
    await Promise.resolve();
    const file = this.prepare(fd, request, arg);
    if (request.number === IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT.number && file.kind === 'control') {
      // Polls the shared state with short sleeps: the event loop stays free.
      const w = this.call(file, request, () => this.waitStart(arg));
      for (;;) {
        const r = this.call(file, request, () => this.waitPoll(w));
        if (r !== null) return r;
        await new Promise((resolve) => setTimeout(resolve, Math.min(WAIT_POLL_MS, Math.max(1, w.deadline - Date.now()))));
      }
    }
    return this.call(file, request, () => this.dispatch(file, request.number, arg, memory));
  }

  private prepare(fd: number, request: IoctlDef, arg: Buffer): OpenFile {
    const file = this.files.get(fd);
    if (!file) throw new SyscallError('EBADF', request.name, undefined);
    const need = Math.max(request.size, request.arg.size);
    if (arg.length < need) throw new RangeError(`${request.name}: argument is ${arg.length} bytes, needs ${need}`);
    return file;
  }

  private call<T>(file: OpenFile, request: IoctlDef, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof KernelAnswer) throw new SyscallError(err.errno, request.name, file.path, err.hint);
      throw err;
    }
  }

  private dispatch(file: OpenFile, number: number, arg: Buffer, memory: UserMemory): number {
    switch (file.kind) {
      case 'control': return this.control(number, arg, memory);
      case 'bdevfilter': return this.bdevfilter(number, arg, memory);
      case 'device': return this.device(file, number, arg, memory);
      default: return ESTR('ENOTTY');
    }
  }

  /** Runs a state transaction for an ioctl of this flavour. */
  private tx<T>(fn: (tx: Transaction) => T): T {
    return this.kernel.runSynced((tx) => {
      if (!this.kernel.claimFlavour(tx, this.flavour)) {
        ESTR('ENOTTY', `the simulated kernel in ${this.kernel.dir} runs the ${tx.state.flavour} flavour`);
      }
      return fn(tx);
    });
  }

  // ------------------------------------------------------------ control device

  private control(number: number, arg: Buffer, memory: UserMemory): number {
    switch (number) {
      case IOCTL_BLKSNAP_VERSION.number:
        blksnap_version.encodeInto(arg, SIM_VERSION);
        return 0;
      case IOCTL_BLKSNAP_SNAPSHOT_CREATE.number: {
        const a = blksnap_snapshot_create.decode(arg);
        const name = pathFromUser(memory, a.diff_storage_filename);
        const { idHex } = this.tx((tx) => snapshotCreate(tx, name, a.diff_storage_limit_sect, process.cwd()));
        // The kernel copies its whole struct back: what was sent, with the id.
        blksnap_snapshot_create.encodeInto(arg, { id: { b: Buffer.from(idHex, 'hex') } });
        return 0;
      }
      case IOCTL_BLKSNAP_SNAPSHOT_DESTROY.number: {
        const idHex = blksnap_uuid.decode(arg).b.toString('hex');
        this.tx((tx) => snapshotDestroy(tx, idHex));
        return 0;
      }
      case IOCTL_BLKSNAP_SNAPSHOT_TAKE.number: {
        const idHex = blksnap_uuid.decode(arg).b.toString('hex');
        const env = process.env.BLKSNAP_SIM_IMAGES;
        const mode = env === 'copy' || env === 'cow' ? env : undefined;
        this.tx((tx) => snapshotTake(tx, idHex, tx.state.flavour, mode));
        return 0;
      }
      case IOCTL_BLKSNAP_SNAPSHOT_COLLECT.number:
        return this.collect(arg, memory);
      case IOCTL_BLKSNAP_MOD.number:
        if (this.flavour !== 'standalone') return ESTR('ENOTTY');
        blksnap_mod.encodeInto(arg, SIM_MOD);
        return 0;
      case IOCTL_BLKSNAP_SETLOG.number:
        if (this.flavour !== 'standalone') return ESTR('ENOTTY');
        return this.setlog(arg, memory);
      default:
        return ESTR('ENOTTY');
    }
  }

  /**
   * snapshot_collect: ids 0 → count = N. Otherwise ids are copied in creation
   * order; when they do not fit, ENODATA with `count` as sent (the first
   * `count` ids filled, §7); a fault stops the copy and answers 0 with the
   * number copied. `count` is copied back in every case.
   */
  private collect(arg: Buffer, memory: UserMemory): number {
    const a = blksnap_snapshot_collect.decode(arg);
    const ids = this.tx((tx) => snapshotIds(tx.state));
    let count = 0;
    let errno: string | null = null;
    if (a.ids === 0n) {
      count = ids.length;
    } else {
      for (const id of ids) {
        if (count >= a.count) {
          errno = 'ENODATA';
          break;
        }
        if (!toUser(memory, a.ids + BigInt(count * blksnap_uuid.size), id)) break;
        count++;
      }
    }
    blksnap_snapshot_collect.encodeInto(arg, { count });
    if (errno) ESTR(errno);
    return 0;
  }

  private setlog(arg: Buffer, memory: UserMemory): number {
    const a = blksnap_setlog.decode(arg);
    if (a.filepath !== 0n && a.filepath_size === 0) return ESTR('EINVAL');
    let filePath: string | null = null;
    if (a.filepath !== 0n) {
      const raw = fromUser(memory, a.filepath, a.filepath_size);
      if (!raw) return ESTR('EFAULT');
      const nul = raw.indexOf(0);
      filePath = raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
    }
    const enabled = a.level >= 0 && filePath !== null;
    this.tx((tx) => {
      tx.state.setlog = { level: a.level, tzMinutesWest: a.tz_minuteswest, filePath, enabled };
      tx.touch();
    });
    if (enabled) {
      try {
        fs.appendFileSync(filePath!, `${new Date().toISOString()} blksnap (simulated): log level ${a.level}\n`);
      } catch {
        /* the module logs to the file when it can */
      }
    }
    return 0;
  }

  // ------------------------------------------------------------ WAIT_EVENT

  private waitStart(arg: Buffer): WaitRequest {
    // Only id and timeout_ms are read (WAIT_EVENT_INPUT_BYTES).
    const idHex = Buffer.from(arg.subarray(0, 16)).toString('hex');
    const jiffies = arg.readUInt32LE(16);
    const hz = this.kernel.store.readState().hz;
    const w: WaitRequest = { idHex, deadline: Date.now() + (jiffies * 1000) / hz, arg };
    const first = this.tx((tx) => popEvent(tx, idHex));
    if (first === 'no_snapshot') ESTR('ESRCH');
    if (first) {
      this.writeEvent(w, first as EventRecord);
      w.deadline = -1;
    }
    return w;
  }

  /** 0 when an event was delivered, ENOENT at the deadline, null to keep waiting. */
  private waitPoll(w: WaitRequest): number | null {
    if (w.deadline === -1) return 0;
    const state = this.kernel.store.readState();
    const snap = findSnapshot(state, w.idHex);
    // A waiter blocked during DESTROY is not woken: it ends at its own timeout (§7).
    let ev: EventRecord | null | 'no_snapshot' = null;
    if (snap && (snap.events.length > 0 || this.membersChanged(state, snap))) {
      ev = this.tx((tx) => popEvent(tx, w.idHex));
    }
    if (ev && ev !== 'no_snapshot') {
      this.writeEvent(w, ev);
      return 0;
    }
    if (Date.now() >= w.deadline) return ESTR('ENOENT');
    return null;
  }

  /** Whether another program wrote to a device of the snapshot since the module last looked. */
  private membersChanged(state: ReturnType<SimKernel['store']['readState']>, snap: NonNullable<ReturnType<typeof findSnapshot>>): boolean {
    if (!snap.taken) return false;
    for (const m of snap.members) {
      const d = state.devices[m.device];
      const b = d?.baseline;
      if (!b) continue;
      const st = statOrNull(d.path);
      if (!st) continue;
      if (b.racy || Number(st.size) !== b.size || st.mtimeNs.toString() !== b.mtimeNs || st.ctimeNs.toString() !== b.ctimeNs) return true;
    }
    return false;
  }

  private writeEvent(w: WaitRequest, ev: EventRecord): void {
    // The kernel answers from a zeroed copy holding the id and timeout it read.
    const out = Buffer.alloc(blksnap_snapshot_event.size);
    w.arg.copy(out, 0, 0, defs.WAIT_EVENT_INPUT_BYTES);
    const data = Buffer.from(ev.data, 'hex');
    blksnap_snapshot_event.encodeInto(out, { code: ev.code, time_label: BigInt(ev.timeNs) });
    data.copy(out, blksnap_snapshot_event.field('data').offset, 0, Math.min(data.length, defs.EVENT_DATA_LENGTH));
    out.copy(w.arg, 0);
  }

  // ------------------------------------------------------------ filters

  private bdevfilter(number: number, arg: Buffer, memory: UserMemory): number {
    switch (number) {
      case BDEVFILTER_ATTACH.number: {
        const a = bdevfilter_name.decode(arg);
        const { given, canonical } = this.devpath(memory, a.devpath);
        if (a.name !== BLKSNAP_FILTER_NAME) return ESTR('ENOENT');
        this.tx((tx) => attach(tx, registerDevice(tx, canonical, true), given));
        return 0;
      }
      case BDEVFILTER_DETACH.number: {
        const a = bdevfilter_name.decode(arg);
        const { canonical } = this.devpath(memory, a.devpath);
        this.tx((tx) => this.detachNamed(tx, canonical, a.name, 'BDEVFILTER_DETACH'));
        return 0;
      }
      case BDEVFILTER_CTL.number: {
        const a = bdevfilter_ctl.decode(arg);
        const { canonical } = this.devpath(memory, a.devpath);
        // standalone: another name is "no such filter on this device" (§2, §7).
        return this.ctl(canonical, a.name, a.cmd, a.optlen, a.opt, memory, 'ENOENT');
      }
      default:
        return ESTR('ENOTTY');
    }
  }

  /** The standalone module opens the device by the path it is given (§7). */
  private devpath(memory: UserMemory, address: bigint): { given: string; canonical: string } {
    const given = pathFromUser(memory, address);
    if (given === '') ESTR('EINVAL');
    const abs = path.resolve(process.cwd(), given);
    const st = statOrNull(abs);
    if (!st) ESTR('ENOENT');
    if (!st!.isFile()) ESTR('ENOTBLK');
    return { given: abs, canonical: fs.realpathSync(abs) };
  }

  private device(file: OpenFile, number: number, arg: Buffer, memory: UserMemory): number {
    const canonical = file.canonical!;
    switch (number) {
      case BLKGETSIZE64.number: {
        const st = statOrNull(canonical);
        if (!st) return ESTR('ENODEV');
        u64_value.encodeInto(arg, { value: BigInt(capacitySectorsOf(Number(st.size))) * 512n });
        return 0;
      }
      case BLKSSZGET.number:
        int_value.encodeInto(arg, { value: 512 });
        return 0;
    }
    if (this.flavour !== 'upstream') return ESTR('ENOTTY');
    switch (number) {
      case BLKFILTER_ATTACH.number: {
        const a = blkfilter_attach.decode(arg);
        if (!statOrNull(canonical)) return ESTR('ENODEV');
        if (a.name !== BLKSNAP_FILTER_NAME) return ESTR('ENOENT');
        this.tx((tx) => attach(tx, registerDevice(tx, canonical, true), canonical));
        return 0;
      }
      case BLKFILTER_DETACH.number: {
        const a = blkfilter_detach.decode(arg);
        if (!statOrNull(canonical)) return ESTR('ENODEV');
        this.tx((tx) => this.detachNamed(tx, canonical, a.name, 'BLKFILTER_DETACH'));
        return 0;
      }
      case BLKFILTER_CTL.number: {
        const a = blkfilter_ctl.decode(arg);
        if (!statOrNull(canonical)) return ESTR('ENODEV');
        // upstream: a filter attached under another name answers EINVAL (§7).
        return this.ctl(canonical, a.name, a.cmd, a.optlen, a.opt, memory, 'EINVAL');
      }
      default:
        return ESTR('ENOTTY');
    }
  }

  private detachNamed(tx: Transaction, canonical: string, name: string, op: string): void {
    const d = registerDevice(tx, canonical, false);
    trackerForCtl(tx, d); // ENOENT: nothing attached
    if (name !== BLKSNAP_FILTER_NAME) {
      // §7: the real module answers EINVAL and is corrupted (the next ATTACH crashes the kernel).
      recordHazard(tx, op, canonical, `DETACH with filter name "${name}": a real kernel would now be corrupted`);
      ESTR('EINVAL');
    }
    detach(tx, d);
  }

  /** The filter's CTL (tracker_ctl); `optlen` is never written back (§7). */
  private ctl(canonical: string, name: string, cmd: number, optlen: number, opt: bigint, memory: UserMemory, otherNameErrno: string): number {
    return this.tx((tx) => {
      const d = registerDevice(tx, canonical, false);
      const t = trackerForCtl(tx, d);
      if (name !== BLKSNAP_FILTER_NAME) ESTR(otherNameErrno);
      syncDevice(tx, d);
      switch (cmd) {
        case BLKSNAP_CTL.CBTINFO: {
          if (optlen < blksnap_cbtinfo.size) return ESTR('EINVAL');
          const i = cbtInfo(tx, t);
          const out = blksnap_cbtinfo.encode({
            device_capacity: i.capacityBytes, block_size: i.blockSize, block_count: i.blockCount,
            generation_id: { b: i.generation }, changes_number: i.changesNumber,
          });
          if (!toUser(memory, opt, out)) return ESTR('ENODATA');
          return 0;
        }
        case BLKSNAP_CTL.CBTMAP: {
          if (t.cbtCorrupted) return ESTR('EFAULT');
          if (optlen < blksnap_cbtmap.size) return ESTR('EINVAL');
          const raw = fromUser(memory, opt, blksnap_cbtmap.size);
          if (!raw) return ESTR('ENODATA');
          const a = blksnap_cbtmap.decode(raw);
          // §7: length 0 answers 0 whatever the offset; past the end ENODATA; a bad buffer EINVAL.
          if (a.length === 0) return 0;
          if (a.offset + a.length > t.blockCount) return ESTR('ENODATA');
          const map = readMap(tx, t);
          if (!toUser(memory, a.buffer, map.subarray(a.offset, a.offset + a.length))) return ESTR('EINVAL');
          return 0;
        }
        case BLKSNAP_CTL.CBTDIRTY: {
          if (optlen < blksnap_cbtdirty.size) return ESTR('EINVAL');
          const raw = fromUser(memory, opt, blksnap_cbtdirty.size);
          if (!raw) return ESTR('ENODATA');
          const a = blksnap_cbtdirty.decode(raw);
          for (let i = 0; i < a.count; i++) {
            const r = fromUser(memory, a.dirty_sectors + BigInt(i * blksnap_sectors.size), blksnap_sectors.size);
            if (!r) return ESTR('ENODATA');
            const range = blksnap_sectors.decode(r);
            markDirty(tx, t, range.offset, range.count);
          }
          return 0;
        }
        case BLKSNAP_CTL.SNAPSHOTADD: {
          if (optlen < blksnap_snapshotadd.size) return ESTR('EINVAL');
          const raw = fromUser(memory, opt, blksnap_snapshotadd.size);
          if (!raw) return ESTR('ENODATA');
          snapshotAdd(tx, t, d, blksnap_snapshotadd.decode(raw).id.b.toString('hex'));
          return 0;
        }
        case BLKSNAP_CTL.SNAPSHOTINFO: {
          if (optlen < blksnap_snapshotinfo.size) return ESTR('EINVAL');
          // Copied in first; only error_code and (when there is one) the image name are set.
          const raw = fromUser(memory, opt, blksnap_snapshotinfo.size);
          if (!raw) return ESTR('ENODATA');
          const info = snapshotInfo(tx, t);
          raw.writeInt32LE(info.errorCode, blksnap_snapshotinfo.field('error_code').offset);
          if (info.image !== null) {
            // strscpy: the name and one NUL; the bytes after it stay as sent.
            const at = blksnap_snapshotinfo.field('image').offset;
            const name = Buffer.from(info.image, 'utf8').subarray(0, defs.IMAGE_NAME_LENGTH - 1);
            name.copy(raw, at);
            raw[at + name.length] = 0;
          }
          if (!toUser(memory, opt, raw)) return ESTR('ENODATA');
          return 0;
        }
        default:
          return ESTR('ENOTTY');
      }
    });
  }
}
