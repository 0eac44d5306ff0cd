/**
 * Raw ioctl calls for the simulated-kernel tests, built with the real codecs
 * (ioctl-defs structs, PinnedUserMemory for user pointers) and sent through
 * SimTransport exactly as a client would send them to the kernel. No typed
 * client is involved: the tests look at the bytes and errnos themselves.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as defs from '../../ioctl-defs';
import type { FlavourName, IoctlDef } from '../../ioctl-defs';
import { SyscallError } from '../../lib/errors';
import type { UserMemory } from '../../lib/ioctl/types';
import { createSimPlatform, openSimAdmin, type SimAdmin, type SimPlatform } from '../../lib/kernel/sim';

export interface Sim {
  dir: string;
  flavour: FlavourName;
  platform: SimPlatform;
  admin: SimAdmin;
  control: number;
  filter: number | null;
  cleanup(): void;
}

export const SMALL_PARAMS = { tracking_block_minimum_shift: 12, chunk_minimum_shift: 12, diff_storage_minimum: 64 };

export async function makeSim(flavour: FlavourName, params: Record<string, number> | null = SMALL_PARAMS): Promise<Sim> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `blksnap-simtest-${flavour}-`));
  const admin = openSimAdmin(path.join(dir, 'state'));
  if (params) await admin.setModuleParameters(params);
  return openSim(dir, flavour);
}

/** Opens the sim whose state is in `<dir>/state` (another process may have made it). */
export function openSim(dir: string, flavour: FlavourName): Sim {
  const simDir = path.join(dir, 'state');
  const admin = openSimAdmin(simDir);
  const platform = createSimPlatform({ simDir, flavour });
  const t = platform.transport;
  const control = t.open(defs.flavours[flavour].controlDevice, { access: 'readwrite' });
  const filter = flavour === 'standalone' ? t.open('/dev/bdevfilter', { access: 'readwrite' }) : null;
  return {
    dir, flavour, platform, admin, control, filter,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** The errno of a call that must fail. */
export function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof SyscallError) return err.errno!;
    throw err;
  }
  return 'OK';
}

export async function errnoOfAsync(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof SyscallError) return err.errno!;
    throw err;
  }
  return 'OK';
}

export function call(sim: Sim, fd: number, def: IoctlDef, arg: Buffer, memory?: UserMemory): number {
  return sim.platform.transport.ioctl(fd, def, arg, memory ?? sim.platform.transport.userMemory());
}

export function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
}

/** A filter ioctl on a device, the flavour's way: device fd (upstream) or /dev/bdevfilter + devpath. */
export function filterCall(sim: Sim, device: string, which: 'attach' | 'detach', name = 'blksnap'): number {
  const t = sim.platform.transport;
  const mem = t.userMemory();
  if (sim.flavour === 'upstream') {
    const fd = t.open(device, { access: 'read' });
    try {
      const def = which === 'attach' ? defs.BLKFILTER_ATTACH : defs.BLKFILTER_DETACH;
      const arg = which === 'attach' ? defs.blkfilter_attach.encode({ name, opt: 0n, optlen: 0 }) : defs.blkfilter_detach.encode({ name });
      return t.ioctl(fd, def, arg, mem);
    } finally {
      t.close(fd);
    }
  }
  const def = which === 'attach' ? defs.BDEVFILTER_ATTACH : defs.BDEVFILTER_DETACH;
  const arg = defs.bdevfilter_name.encode({ devpath: mem.pin(cstr(device)), name });
  return t.ioctl(sim.filter!, def, arg, mem);
}

export interface CtlOptions { name?: string; optlen?: number; opt?: bigint | null; memory?: UserMemory }

/** BLKFILTER_CTL / BDEVFILTER_CTL with `opt` pointing at `optBuf` (pinned). Returns the ctl arg too. */
export function ctl(sim: Sim, device: string, cmd: number, optBuf: Buffer, o: CtlOptions = {}): { result: number; arg: Buffer } {
  const t = sim.platform.transport;
  const mem = o.memory ?? t.userMemory();
  const opt = o.opt === undefined ? mem.pin(optBuf) : o.opt === null ? 0n : o.opt;
  const optlen = o.optlen ?? optBuf.length;
  const name = o.name ?? 'blksnap';
  if (sim.flavour === 'upstream') {
    const fd = t.open(device, { access: 'read' });
    try {
      const arg = defs.blkfilter_ctl.encode({ name, cmd, optlen, opt });
      return { result: t.ioctl(fd, defs.BLKFILTER_CTL, arg, mem), arg };
    } finally {
      t.close(fd);
    }
  }
  const arg = defs.bdevfilter_ctl.encode({ devpath: mem.pin(cstr(device)), name, cmd, optlen, opt });
  return { result: t.ioctl(sim.filter!, defs.BDEVFILTER_CTL, arg, mem), arg };
}

export function cbtInfo(sim: Sim, device: string): defs.BlksnapCbtinfo {
  const buf = Buffer.alloc(defs.blksnap_cbtinfo.size);
  ctl(sim, device, defs.BLKSNAP_CTL.CBTINFO, buf);
  return defs.blksnap_cbtinfo.decode(buf);
}

export function cbtMap(sim: Sim, device: string, offset = 0, length?: number): Buffer {
  const count = length ?? cbtInfo(sim, device).block_count;
  const t = sim.platform.transport;
  const mem = t.userMemory();
  const out = Buffer.alloc(count);
  const req = defs.blksnap_cbtmap.encode({ offset, length: count, buffer: mem.pin(out) });
  ctl(sim, device, defs.BLKSNAP_CTL.CBTMAP, req, { memory: mem });
  return out;
}

export function markDirty(sim: Sim, device: string, ranges: Array<[bigint, bigint]>): number {
  const t = sim.platform.transport;
  const mem = t.userMemory();
  const arr = defs.encodeArray(defs.blksnap_sectors, ranges.map(([offset, count]) => ({ offset, count })));
  const req = defs.blksnap_cbtdirty.encode({ count: ranges.length, dirty_sectors: mem.pin(arr) });
  return ctl(sim, device, defs.BLKSNAP_CTL.CBTDIRTY, req, { memory: mem }).result;
}

export function snapshotAdd(sim: Sim, device: string, id: Buffer): number {
  return ctl(sim, device, defs.BLKSNAP_CTL.SNAPSHOTADD, defs.blksnap_snapshotadd.encode({ id: { b: id } })).result;
}

export function snapshotInfo(sim: Sim, device: string, prefill?: Buffer): { error_code: number; image: string; raw: Buffer } {
  const buf = prefill ? Buffer.from(prefill) : Buffer.alloc(defs.blksnap_snapshotinfo.size);
  ctl(sim, device, defs.BLKSNAP_CTL.SNAPSHOTINFO, buf);
  return { ...defs.blksnap_snapshotinfo.decode(buf), raw: buf };
}

export function createSnapshot(sim: Sim, storage: string, limitSectors: bigint): Buffer {
  const t = sim.platform.transport;
  const mem = t.userMemory();
  const arg = defs.blksnap_snapshot_create.encode({ diff_storage_limit_sect: limitSectors, diff_storage_filename: mem.pin(cstr(storage)) });
  t.ioctl(sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_CREATE, arg, mem);
  return defs.blksnap_snapshot_create.decode(arg).id.b;
}

export function uuidCall(sim: Sim, def: IoctlDef, id: Buffer): number {
  return call(sim, sim.control, def, defs.blksnap_uuid.encode({ b: id }));
}
export const take = (sim: Sim, id: Buffer) => uuidCall(sim, defs.IOCTL_BLKSNAP_SNAPSHOT_TAKE, id);
export const destroy = (sim: Sim, id: Buffer) => uuidCall(sim, defs.IOCTL_BLKSNAP_SNAPSHOT_DESTROY, id);

export async function waitEvent(sim: Sim, id: Buffer, timeoutJiffies: number): Promise<defs.BlksnapSnapshotEvent> {
  const t = sim.platform.transport;
  const arg = defs.blksnap_snapshot_event.encode({ id: { b: id }, timeout_ms: timeoutJiffies });
  await t.ioctlAsync(sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, arg, t.userMemory());
  return defs.blksnap_snapshot_event.decode(arg);
}

/** Makes a device file of `size` bytes through the admin API and attaches the filter. */
export async function attachedDevice(sim: Sim, name: string, size: number): Promise<string> {
  const p = path.join(sim.dir, name);
  await sim.admin.createDevice(p, size);
  filterCall(sim, p, 'attach');
  return fs.realpathSync(p);
}

/** Reads a whole image through the platform's ImageReader. */
export async function readImage(sim: Sim, imageName: string): Promise<Buffer> {
  const p = await sim.platform.imagePath(imageName, 1000);
  const r = await sim.platform.openImage(p, {});
  try {
    const out = Buffer.alloc(Number(r.size));
    await r.read(out, out.length, 0n);
    return out;
  } finally {
    await r.close();
  }
}
