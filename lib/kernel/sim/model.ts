/**
 * What the blksnap module does, on the persisted state: trackers and their
 * CBT maps, snapshots, difference storage accounting, copy-on-write, events.
 * Every function runs inside one locked transaction. An errno answer is
 * thrown as `KernelAnswer` (the transport turns it into a SyscallError);
 * the work done before it stands, as in the kernel.
 *
 * Kernel facts are from blksnap-abi.md; "§7" marks what the real module was
 * observed to do where that differs from its headers.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { BLKSNAP_EVENT_CODE, blksnap_event_corrupted, blksnap_event_no_space, SECTOR_SIZE } from '../../../ioctl-defs';
import type { FlavourName } from '../../../ioctl-defs';
import {
  DEVICE_MAJOR, IMAGE_MAJOR,
  type DeviceRecord, type DiffStorageRecord, type EventRecord, type ImageMode, type ImageRecord, type MemberRecord,
  type ModuleParameters, type SimState, type SnapshotRecord, type TrackerRecord,
} from './state';
import type { Transaction } from './store';
import { copyNonZeroUnits, HASH_BYTES, hashUnits, readFully, scanFile, unitCount, zeroHashes } from './fileio';

/** An ioctl's errno answer. */
export class KernelAnswer extends Error {
  constructor(readonly errno: string, readonly hint?: string) {
    super(errno);
    this.name = 'KernelAnswer';
  }
}
export const isKernelAnswer = (err: unknown): err is KernelAnswer => err instanceof KernelAnswer;
const answer = (errno: string, hint?: string): never => {
  throw new KernelAnswer(errno, hint);
};

const ENOSPC = 28;
const EIO = 5;
const U64_MASK = (1n << 64n) - 1n;
/** "Writes within this long of a scan may share its mtime": file times come from a coarse clock. */
const RACY_WINDOW_MS = 50;

export const nowNs = (): string => process.hrtime.bigint().toString();
export const newUuidHex = (): string => crypto.randomBytes(16).toString('hex');

// ---------------------------------------------------------------- geometry

/** Tracking block size and count for a capacity (§4; cbt_map_calculate_block_size). */
export function blockGeometry(p: ModuleParameters, capacitySectors: number): { shift: number; count: number } {
  let shift = p.tracking_block_minimum_shift;
  const countBy = (s: number) => Math.ceil(capacitySectors / 2 ** (s - 9));
  let count = countBy(shift);
  while (count > p.tracking_block_maximum_count && shift < p.tracking_block_maximum_shift) {
    shift++;
    count = countBy(shift);
  }
  return { shift, count };
}

/** Copy-on-write chunk size and count (§6). */
export function chunkGeometry(p: ModuleParameters, capacitySectors: number): { shift: number; count: number } {
  let shift = p.chunk_minimum_shift;
  const countBy = (s: number) => Math.ceil(capacitySectors / 2 ** (s - 9));
  let count = countBy(shift);
  const maxCount = 2 ** p.chunk_maximum_count_shift;
  while (count > maxCount && shift < p.chunk_maximum_shift) {
    shift++;
    count = countBy(shift);
  }
  return { shift, count };
}

/** The module's own fix-ups of its parameters at load (parameters_init). */
export function normaliseParameters(p: ModuleParameters): ModuleParameters {
  const q = { ...p };
  for (const [k, v] of Object.entries(q)) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`module parameter ${k}: ${v} is not a non-negative integer`);
  }
  if (q.tracking_block_minimum_shift < 9) q.tracking_block_minimum_shift = 9;
  if (q.tracking_block_maximum_shift < q.tracking_block_minimum_shift) q.tracking_block_maximum_shift = q.tracking_block_minimum_shift;
  if (q.chunk_minimum_shift < 12) q.chunk_minimum_shift = 12; // PAGE_SHIFT
  if (q.chunk_maximum_shift < q.chunk_minimum_shift) q.chunk_maximum_shift = q.chunk_minimum_shift;
  const chunkSectors = 2 ** (q.chunk_minimum_shift - 9);
  if (q.diff_storage_minimum < chunkSectors * 2) q.diff_storage_minimum = chunkSectors * 2;
  q.diff_storage_minimum -= q.diff_storage_minimum % chunkSectors;
  if (q.tracking_block_maximum_count < 1) q.tracking_block_maximum_count = 1;
  return q;
}

export function imageName(flavour: FlavourName | null, major: number, minor: number): string {
  return flavour === 'standalone' ? `veeamblksnapimg_${major}:${minor}` : `blksnap-${major}-${minor}`;
}

// ---------------------------------------------------------------- blobs

const liveMapBlob = (t: TrackerRecord) => `trk-${t.id}.live`;
const readMapBlob = (t: TrackerRecord) => `trk-${t.id}.read`;
/** Content hashes live in segments, so that a small write rewrites one small file. */
const HASH_SEGMENT_UNITS = 8192;
const hashSegment = (d: DeviceRecord, k: number) => `dev-${d.uuid}.hash.${k}`;
const cowBlob = (s: SnapshotRecord, m: MemberRecord) => `cow-${s.id}-${m.trackerId}`;

/** The blob `name`, (re)created zero-filled when missing or not `length` bytes long. */
function sizedBlob(tx: Transaction, name: string, length: number): Buffer {
  let b = tx.blob(name);
  if (!b || b.length !== length) {
    b = Buffer.alloc(length);
    tx.setBlob(name, b);
  }
  return b;
}

export function liveMap(tx: Transaction, t: TrackerRecord): Buffer {
  return sizedBlob(tx, liveMapBlob(t), t.blockCount);
}

export function readMap(tx: Transaction, t: TrackerRecord): Buffer {
  return sizedBlob(tx, readMapBlob(t), t.blockCount);
}

function cowBitmap(tx: Transaction, s: SnapshotRecord, m: MemberRecord): Buffer {
  return sizedBlob(tx, cowBlob(s, m), m.image?.chunkCount ?? 0);
}

/** The COW bitmap of an image as committed (for readers without the lock). */
export function readCowBitmap(tx: { blob(name: string): Buffer | null }, s: SnapshotRecord, m: MemberRecord): Buffer | null {
  return tx.blob(cowBlob(s, m));
}
export const cowBlobName = cowBlob;

/** The baseline's hashes, whole (null when a piece is missing). */
function loadHashes(tx: Transaction, d: DeviceRecord): Buffer | null {
  const b = d.baseline;
  if (!b) return null;
  const segments = Math.ceil(unitCount(b.size, b.unitShift) / HASH_SEGMENT_UNITS);
  const parts: Buffer[] = [];
  for (let k = 0; k < segments; k++) {
    const part = tx.blob(hashSegment(d, k));
    if (!part) return null;
    parts.push(part);
  }
  return Buffer.concat(parts);
}

function storeHashes(tx: Transaction, d: DeviceRecord, hashes: Buffer): void {
  const segBytes = HASH_SEGMENT_UNITS * HASH_BYTES;
  const segments = Math.ceil(hashes.length / segBytes);
  for (let k = 0; k < segments; k++) tx.setBlob(hashSegment(d, k), Buffer.from(hashes.subarray(k * segBytes, (k + 1) * segBytes)));
  for (let k = segments; fs.existsSync(tx.store.blobPath(hashSegment(d, k))); k++) tx.deleteBlob(hashSegment(d, k));
}

/** Replaces the hashes of units from `firstUnit` on (inside the baseline's size). */
function patchHashes(tx: Transaction, d: DeviceRecord, firstUnit: number, hashes: Buffer): boolean {
  const units = hashes.length / HASH_BYTES;
  for (let u = firstUnit; u < firstUnit + units;) {
    const k = Math.floor(u / HASH_SEGMENT_UNITS);
    const seg = tx.blob(hashSegment(d, k));
    if (!seg) return false;
    const segEnd = Math.min((k + 1) * HASH_SEGMENT_UNITS, firstUnit + units);
    hashes.copy(seg, (u - k * HASH_SEGMENT_UNITS) * HASH_BYTES, (u - firstUnit) * HASH_BYTES, (segEnd - firstUnit) * HASH_BYTES);
    tx.markBlob(hashSegment(d, k));
    u = segEnd;
  }
  return true;
}

function deleteTracker(tx: Transaction, t: TrackerRecord): void {
  tx.deleteBlob(liveMapBlob(t));
  tx.deleteBlob(readMapBlob(t));
  delete tx.state.trackers[t.id];
  tx.touch();
}

// ---------------------------------------------------------------- devices

export function statOrNull(p: string): fs.BigIntStats | null {
  try {
    return fs.statSync(p, { bigint: true });
  } catch {
    return null;
  }
}

/** The device record of a canonical path, created with a fresh major:minor on first sight. */
export function registerDevice(tx: Transaction, canonical: string, declare: boolean): DeviceRecord {
  let d = tx.state.devices[canonical];
  if (!d) {
    d = {
      path: canonical,
      uuid: crypto.randomUUID(),
      major: DEVICE_MAJOR,
      minor: tx.state.nextMinor++,
      declared: declare,
      parent: null,
      mountpoint: null,
      trackerId: null,
      baseline: null,
    };
    tx.state.devices[canonical] = d;
    tx.touch();
  } else if (declare && !d.declared) {
    d.declared = true;
    tx.touch();
  }
  return d;
}

export function capacitySectorsOf(sizeBytes: number): number {
  return Math.floor(sizeBytes / SECTOR_SIZE);
}

function attachedTracker(tx: Transaction, d: DeviceRecord): TrackerRecord | null {
  if (!d.trackerId) return null;
  const t = tx.state.trackers[d.trackerId];
  return t && t.attached ? t : null;
}

/** Members of taken snapshots whose images still receive copy-on-write for this device. */
function cowMembers(tx: Transaction, d: DeviceRecord): Array<{ snap: SnapshotRecord; member: MemberRecord }> {
  const out: Array<{ snap: SnapshotRecord; member: MemberRecord }> = [];
  for (const snap of tx.state.snapshots) {
    if (!snap.taken) continue;
    for (const member of snap.members) {
      if (member.device !== d.path || !member.image || member.image.errorCode !== 0) continue;
      const t = tx.state.trackers[member.trackerId];
      // DETACH removes the filter from the device: no more copy-on-write (§7).
      if (!t || !t.attached) continue;
      out.push({ snap, member });
    }
  }
  return out;
}

/** Devices whose writes the simulated module sees: attached, or under a live image. */
export function watchedDevices(state: SimState): DeviceRecord[] {
  const paths = new Set<string>();
  for (const d of Object.values(state.devices)) {
    if (d.trackerId && state.trackers[d.trackerId]?.attached) paths.add(d.path);
  }
  return [...paths].map((p) => state.devices[p]);
}

function baselineUnitShift(p: ModuleParameters): number {
  return Math.min(p.tracking_block_minimum_shift, p.chunk_minimum_shift);
}

function sameFile(st: fs.BigIntStats, b: NonNullable<DeviceRecord['baseline']>): boolean {
  return Number(st.size) === b.size && st.mtimeNs.toString() === b.mtimeNs && st.ctimeNs.toString() === b.ctimeNs && st.ino.toString() === b.ino;
}

function recordBaseline(d: DeviceRecord, st: fs.BigIntStats, unitShift: number, scanStartMs: number): void {
  // Every write moves mtime (ctime too, but ctime also moves when the sim backdates mtime).
  const changedMs = Number(st.mtimeNs / 1_000_000n);
  d.baseline = {
    size: Number(st.size),
    mtimeNs: st.mtimeNs.toString(),
    ctimeNs: st.ctimeNs.toString(),
    ino: st.ino.toString(),
    racy: changedMs >= scanStartMs - RACY_WINDOW_MS,
    unitShift,
  };
}

/**
 * Finds what other programs wrote to a device file since the sim last looked
 * (per-unit content hashes, compared only when size/mtime/ctime/inode moved
 * or the last look was too close to a write) and feeds it to the tracker and
 * copy-on-write as if the writes had gone through the block layer now.
 * A rewrite with identical bytes is invisible (docs/simulated-kernel.md).
 */
export function syncDevice(tx: Transaction, d: DeviceRecord): void {
  if (tx.synced.has(d.path)) return;
  tx.synced.add(d.path);
  const unitShift = baselineUnitShift(tx.state.params);
  for (let attempt = 0; attempt < 3; attempt++) {
    const scanStart = Date.now();
    const st = statOrNull(d.path);
    if (!st || !st.isFile()) return; // gone: the kernel sees no more writes either
    const b = d.baseline;
    if (b && b.unitShift === unitShift && !b.racy && sameFile(st, b)) return;
    const oldHashes = b ? loadHashes(tx, d) : null;
    const size = Number(st.size);
    const fd = fs.openSync(d.path, 'r');
    let result;
    try {
      const comparable = b && oldHashes && b.unitShift === unitShift ? oldHashes : null;
      result = scanFile(fd, size, unitShift, comparable);
      if (b && oldHashes && !comparable) {
        // Unit size changed (module parameters lowered): what changed since the
        // last look is only known at the old unit; rescan that first.
        const coarse = scanFile(fd, size, b.unitShift, oldHashes);
        result.changed = coarse.changed;
      }
    } finally {
      fs.closeSync(fd);
    }
    for (const [start, end] of result.changed) applyWrite(tx, d, start, end);
    storeHashes(tx, d, result.hashes);
    // The times from before the read: a write during it shows as a change next time.
    recordBaseline(d, st, unitShift, scanStart);
    tx.touch();
    const after = statOrNull(d.path);
    if (!after || sameFile(after, d.baseline!)) return;
  }
}

/** Syncs every device the module watches. */
export function syncWatched(tx: Transaction): void {
  for (const d of watchedDevices(tx.state)) syncDevice(tx, d);
}

/**
 * After the sim wrote a device file itself it sets the file's mtime one
 * second back: any later write by another program then shows as a new mtime
 * even within the same clock tick, and the next look needs no full rescan.
 */
export function backdateMtime(p: string): void {
  const st = fs.statSync(p);
  fs.utimesSync(p, st.atime, new Date(Date.now() - 1000));
}

/** Baseline for a file the sim itself just created filled with zeros. */
export function setZeroBaseline(tx: Transaction, d: DeviceRecord): void {
  backdateMtime(d.path);
  const st = statOrNull(d.path);
  if (!st) return;
  const unitShift = baselineUnitShift(tx.state.params);
  recordBaseline(d, st, unitShift, Date.now());
  storeHashes(tx, d, zeroHashes(Number(st.size), unitShift));
  tx.synced.add(d.path);
  tx.touch();
}

/** After the sim wrote [start,end) itself: refresh those hashes and the file's times. */
function refreshBaselineRange(tx: Transaction, d: DeviceRecord, start: number, end: number, scanStart: number): void {
  const st = statOrNull(d.path);
  const b = d.baseline;
  if (!st || !b) return;
  if (Number(st.size) !== b.size) {
    d.baseline = null; // rescanned at the next look
    tx.touch();
    return;
  }
  const unit = 2 ** b.unitShift;
  const first = Math.floor(start / unit);
  const endUnit = Math.min(unitCount(b.size, b.unitShift), Math.ceil(end / unit));
  const fd = fs.openSync(d.path, 'r');
  let ok: boolean;
  try {
    ok = patchHashes(tx, d, first, hashUnits(fd, b.size, b.unitShift, first, endUnit));
  } finally {
    fs.closeSync(fd);
  }
  if (!ok) d.baseline = null;
  else recordBaseline(d, st, b.unitShift, scanStart);
  tx.touch();
}

// ---------------------------------------------------------------- CBT

/**
 * _cbt_map_set: stamps blocks first..last (sector arithmetic in u64, so the
 * range {0,0} wraps to "everything") with `value` where lower; EINVAL at the
 * first block past the map, after marking the ones before it (§7).
 */
export function stampRange(map: Buffer, blockShift: number, blockCount: number, startSector: bigint, countSectors: bigint, value: number): boolean {
  const s = BigInt(blockShift - 9);
  const first = (startSector & U64_MASK) >> s;
  const last = ((startSector + countSectors - 1n) & U64_MASK) >> s;
  const n = BigInt(blockCount);
  if (first > last) return true;
  const stop = last < n ? Number(last) : blockCount - 1;
  for (let i = first < n ? Number(first) : blockCount; i <= stop; i++) {
    if (map[i] < value) map[i] = value;
  }
  return last < n;
}

/**
 * A write of [start,end) bytes reached the filter of `d`: CBT, then
 * copy-on-write. `before` is true when the device still holds the old data
 * (a write through the admin API); false for writes found after the fact.
 */
export function applyWrite(tx: Transaction, d: DeviceRecord, start: number, end: number, before = false): void {
  if (end <= start) return;
  const t = attachedTracker(tx, d);
  if (t && !t.cbtCorrupted) {
    const map = liveMap(tx, t);
    const startSector = BigInt(Math.floor(start / SECTOR_SIZE));
    const endSector = BigInt(Math.ceil(end / SECTOR_SIZE));
    // A write past the tracker's capacity (the device grew) corrupts the map: cbt_map_set.
    if (!stampRange(map, t.blockShift, t.blockCount, startSector, endSector - startSector, t.active)) t.cbtCorrupted = true;
    tx.markBlob(liveMapBlob(t));
    tx.touch();
  }
  for (const { snap, member } of cowMembers(tx, d)) copyOnWrite(tx, snap, member, d, start, end, before);
}

function copyOnWrite(tx: Transaction, snap: SnapshotRecord, member: MemberRecord, d: DeviceRecord, start: number, end: number, before: boolean): void {
  const img = member.image!;
  if (img.errorCode !== 0) return;
  const bitmap = cowBitmap(tx, snap, member);
  const chunkBytes = 2 ** img.chunkShift;
  const first = Math.floor(start / chunkBytes);
  const last = Math.min(img.chunkCount - 1, Math.floor((end - 1) / chunkBytes));
  for (let c = first; c <= last; c++) {
    if (bitmap[c]) continue;
    const sectors = Math.min(chunkBytes, img.sizeBytes - c * chunkBytes) / SECTOR_SIZE;
    if (img.mode === 'cow' && !before) {
      // Found after the fact: the old content of this chunk is gone.
      setCorrupted(tx, snap, member, d, -EIO);
      break;
    }
    if (!diffStorageAlloc(tx, snap.storage, Math.ceil(sectors))) {
      setCorrupted(tx, snap, member, d, -ENOSPC);
      break;
    }
    if (img.mode === 'cow') copyChunk(d.path, img, c);
    bitmap[c] = 1;
    img.copiedChunks++;
  }
  tx.markBlob(cowBlob(snap, member));
  tx.touch();
}

/** cow images: the chunk's current (old) data from the device into the image file. */
function copyChunk(device: string, img: ImageRecord, c: number): void {
  const chunk = 2 ** img.chunkShift;
  const len = Math.min(chunk, img.sizeBytes - c * chunk);
  const buf = Buffer.alloc(len);
  const src = fs.openSync(device, 'r');
  try {
    readFully(src, buf, len, c * chunk);
  } finally {
    fs.closeSync(src);
  }
  const out = fs.openSync(img.file, 'r+');
  try {
    fs.writeSync(out, buf, 0, len, c * chunk);
  } finally {
    fs.closeSync(out);
  }
}

/** diff_storage_alloc + check_halffull (files grow in steps of diff_storage_minimum up to the limit). */
function diffStorageAlloc(tx: Transaction, s: DiffStorageRecord, count: number): boolean {
  if (s.overflow) return false;
  if (s.filledSectors + count > s.requestedSectors) {
    s.overflow = true;
    return false;
  }
  s.filledSectors += count;
  const minimum = tx.state.params.diff_storage_minimum;
  const left = s.requestedSectors - s.filledSectors;
  if (s.kind !== 'block_device' && left <= minimum / 2 && s.capacitySectors < s.limitSectors) {
    s.requestedSectors += Math.min(minimum, s.limitSectors - s.capacitySectors);
    s.capacitySectors = s.requestedSectors;
    if (s.kind === 'file') growFile(s.path, s.capacitySectors * SECTOR_SIZE);
  }
  return true;
}

/** fallocate stand-in: extends (never shrinks) the file; sparse, so it costs no disk. */
function growFile(p: string, bytes: number): void {
  try {
    const st = fs.statSync(p);
    if (st.size < bytes) fs.truncateSync(p, bytes);
  } catch {
    /* a storage file removed under the module: the kernel keeps its open file */
  }
}

function setCorrupted(tx: Transaction, snap: SnapshotRecord, member: MemberRecord, d: DeviceRecord, errorCode: number): void {
  const img = member.image!;
  if (img.errorCode !== 0) return;
  img.errorCode = errorCode;
  // One event per diff area, code 0 with the positive errno (§7: no code-1 event on overflow).
  pushEvent(snap, BLKSNAP_EVENT_CODE.corrupted, blksnap_event_corrupted.encode({ dev_id_mj: d.major, dev_id_mn: d.minor, err_code: Math.abs(errorCode) }));
  tx.touch();
}

export function pushEvent(snap: SnapshotRecord, code: number, data: Buffer): void {
  snap.events.push({ code, timeNs: nowNs(), data: data.toString('hex') });
}

export function noSpaceEventData(requestedSectors: bigint): Buffer {
  return blksnap_event_no_space.encode({ requested_nr_sect: requestedSectors });
}

// ---------------------------------------------------------------- filter

function newTracker(tx: Transaction, d: DeviceRecord, capacitySectors: number, attachPath: string): TrackerRecord {
  const g = blockGeometry(tx.state.params, capacitySectors);
  const t: TrackerRecord = {
    id: newUuidHex(),
    device: d.path,
    attachPath,
    attached: true,
    capacitySectors,
    blockShift: g.shift,
    blockCount: g.count,
    generationId: newUuidHex(),
    previous: 0,
    active: 1,
    cbtCorrupted: false,
  };
  tx.state.trackers[t.id] = t;
  tx.setBlob(liveMapBlob(t), Buffer.alloc(t.blockCount));
  tx.setBlob(readMapBlob(t), Buffer.alloc(t.blockCount));
  tx.touch();
  return t;
}

/** cbt_map_reset: new geometry for the capacity, zero maps, previous 0, active 1, new generation. */
function resetTracker(tx: Transaction, t: TrackerRecord, capacitySectors: number): void {
  const g = blockGeometry(tx.state.params, capacitySectors);
  t.capacitySectors = capacitySectors;
  t.blockShift = g.shift;
  t.blockCount = g.count;
  t.previous = 0;
  t.active = 1;
  t.generationId = newUuidHex();
  t.cbtCorrupted = false;
  tx.setBlob(liveMapBlob(t), Buffer.alloc(t.blockCount));
  tx.setBlob(readMapBlob(t), Buffer.alloc(t.blockCount));
  tx.touch();
}

export function attach(tx: Transaction, d: DeviceRecord, attachPath: string): void {
  if (attachedTracker(tx, d)) answer('EALREADY');
  const st = statOrNull(d.path);
  if (!st) answer('ENODEV');
  d.declared = true;
  // The tracker sees writes from now on: bring the content baseline up to date first.
  syncDevice(tx, d);
  const t = newTracker(tx, d, capacitySectorsOf(Number(st!.size)), attachPath);
  d.trackerId = t.id;
  tx.touch();
}

export function detach(tx: Transaction, d: DeviceRecord): void {
  const t = attachedTracker(tx, d);
  if (!t) answer('ENOENT');
  t!.attached = false;
  d.trackerId = null;
  const held = tx.state.snapshots.some((s) => s.members.some((m) => m.trackerId === t!.id));
  if (!held) deleteTracker(tx, t!);
  tx.touch();
}

/** The attached tracker of a device for CTL, or the filter-level errno. */
export function trackerForCtl(tx: Transaction, d: DeviceRecord): TrackerRecord {
  const t = attachedTracker(tx, d);
  if (!t) answer('ENOENT');
  return t!;
}

export function recordHazard(tx: Transaction, op: string, p: string, detail: string): void {
  tx.state.hazards.push({ op, path: p, detail, timeNs: nowNs() });
  tx.touch();
}

export function cbtInfo(tx: Transaction, t: TrackerRecord): { capacityBytes: bigint; blockSize: number; blockCount: number; generation: Buffer; changesNumber: number } {
  return {
    capacityBytes: BigInt(t.capacitySectors) * BigInt(SECTOR_SIZE),
    blockSize: 2 ** t.blockShift,
    blockCount: t.blockCount,
    generation: Buffer.from(t.generationId, 'hex'),
    changesNumber: t.previous & 0xff,
  };
}

/** CBTDIRTY for one range: live map with `active`, then read map with `previous`. */
export function markDirty(tx: Transaction, t: TrackerRecord, offset: bigint, count: bigint): void {
  if (t.cbtCorrupted) answer('EINVAL');
  const live = liveMap(tx, t);
  const ok = stampRange(live, t.blockShift, t.blockCount, offset, count, t.active);
  tx.markBlob(liveMapBlob(t));
  tx.touch();
  if (!ok) answer('EINVAL');
  const read = readMap(tx, t);
  const ok2 = stampRange(read, t.blockShift, t.blockCount, offset, count, t.previous);
  tx.markBlob(readMapBlob(t));
  if (!ok2) answer('EINVAL');
}

function memberOfTracker(tx: Transaction, t: TrackerRecord): { snap: SnapshotRecord; member: MemberRecord } | null {
  for (const snap of tx.state.snapshots) {
    for (const member of snap.members) if (member.trackerId === t.id) return { snap, member };
  }
  return null;
}

export function findSnapshot(state: SimState, idHex: string): SnapshotRecord | null {
  return state.snapshots.find((s) => s.id === idHex) ?? null;
}

export function snapshotAdd(tx: Transaction, t: TrackerRecord, d: DeviceRecord, idHex: string): void {
  const snap = findSnapshot(tx.state, idHex);
  if (!snap) answer('ESRCH');
  // The storage's own device: refused silently (pr_err and 0), §7.
  if (snap!.storage.devMajor === d.major && snap!.storage.devMinor === d.minor) return;
  if (snap!.members.some((m) => m.trackerId === t.id || m.device === d.path)) answer('EALREADY');
  if (memberOfTracker(tx, t)) answer('EBUSY');
  // After TAKE it still joins, without an image (§7).
  snap!.members.push({ device: d.path, trackerId: t.id, image: null });
  tx.touch();
}

export function snapshotInfo(tx: Transaction, t: TrackerRecord): { errorCode: number; image: string | null } {
  const m = memberOfTracker(tx, t);
  const img = m?.member.image ?? null;
  return { errorCode: img ? img.errorCode : 0, image: img ? img.name : null };
}

// ---------------------------------------------------------------- control

export interface CreateResult { idHex: string }

export function snapshotCreate(tx: Transaction, storagePathArg: string, limitSectors: bigint, cwd: string): CreateResult {
  const p = tx.state.params;
  const resolved = path.resolve(cwd, storagePathArg);
  const st = statOrNull(resolved);
  if (!st) answer('ENOENT');
  if (st!.isCharacterDevice() || st!.isFIFO() || st!.isSocket()) answer('EINVAL');
  const limit = Number(limitSectors > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : limitSectors);
  const halfMinimum = p.diff_storage_minimum / 2;
  let kind: DiffStorageRecord['kind'];
  let canonical = resolved;
  let capacity: number;
  let dev: { major: number; minor: number } | null = null;
  if (st!.isDirectory()) {
    kind = 'directory';
    canonical = fs.realpathSync(resolved);
    capacity = 0; // an unnamed O_TMPFILE, empty
    dev = deviceOfPathInState(tx.state, canonical);
  } else {
    canonical = fs.realpathSync(resolved);
    const known = tx.state.devices[canonical];
    if (known && known.declared) {
      kind = 'block_device';
      if (tx.state.snapshots.some((s) => s.storage.kind === 'block_device' && s.storage.path === canonical)) answer('EBUSY');
      dev = { major: known.major, minor: known.minor };
    } else {
      kind = 'file';
      dev = deviceOfPathInState(tx.state, canonical);
    }
    capacity = capacitySectorsOf(Number(st!.size));
  }
  let requested = capacity;
  // diff_storage_set_diff_storage: the size checks only run while the storage
  // is at most half of diff_storage_minimum (512 MiB by default, §7).
  if (capacity <= halfMinimum) {
    if (capacity > limit) answer('ENOSPC');
    if (capacity < limit && kind !== 'block_device') {
      requested = capacity + Math.min(p.diff_storage_minimum, limit - capacity);
      if (kind === 'file') growFile(canonical, requested * SECTOR_SIZE);
      capacity = requested;
    }
  }
  const snap: SnapshotRecord = {
    id: newUuidHex(),
    createdAtNs: nowNs(),
    taken: false,
    storage: {
      kind,
      path: canonical,
      devMajor: dev ? dev.major : null,
      devMinor: dev ? dev.minor : null,
      limitSectors: limit,
      capacitySectors: capacity,
      requestedSectors: requested,
      filledSectors: 0,
      overflow: false,
    },
    members: [],
    events: [],
  };
  tx.state.snapshots.push(snap);
  tx.touch();
  return { idHex: snap.id };
}

/** The device a path lives on in the sim: itself if it is a device, else the device mounted where it is. */
export function deviceOfPathInState(state: SimState, canonical: string): { major: number; minor: number; path: string } | null {
  const own = state.devices[canonical];
  if (own) return own;
  let best: DeviceRecord | null = null;
  for (const d of Object.values(state.devices)) {
    if (!d.mountpoint) continue;
    const mp = d.mountpoint;
    if (canonical === mp || canonical.startsWith(mp.endsWith('/') ? mp : mp + '/')) {
      if (!best || mp.length > best.mountpoint!.length) best = d;
    }
  }
  return best;
}

export function snapshotDestroy(tx: Transaction, idHex: string): void {
  const i = tx.state.snapshots.findIndex((s) => s.id === idHex);
  if (i < 0) answer('ENODEV');
  const snap = tx.state.snapshots[i];
  tx.state.snapshots.splice(i, 1);
  for (const m of snap.members) {
    if (m.image) {
      const file = m.image.file;
      tx.afterCommit(() => fs.rmSync(file, { force: true }));
      tx.deleteBlob(cowBlob(snap, m));
    }
    const t = tx.state.trackers[m.trackerId];
    if (t && !t.attached) deleteTracker(tx, t);
  }
  tx.touch();
}

export function snapshotTake(tx: Transaction, idHex: string, flavour: FlavourName | null, modeOverride?: ImageMode): void {
  const mode: ImageMode = modeOverride ?? tx.state.imageMode ?? 'copy';
  const snap = findSnapshot(tx.state, idHex);
  if (!snap) answer('ESRCH');
  if (snap!.taken) answer('EALREADY');
  if (snap!.members.length === 0) answer('ENODEV');
  const plan: Array<{ member: MemberRecord; t: TrackerRecord; d: DeviceRecord; size: number; name: string }> = [];
  for (const member of snap!.members) {
    const t = tx.state.trackers[member.trackerId];
    const d = tx.state.devices[member.device];
    // standalone reopens the path it was attached with (§7).
    if (flavour === 'standalone' && t.attached && !fs.existsSync(t.attachPath)) answer('ENOENT');
    const st = statOrNull(d.path);
    if (!st) answer('ENODEV');
    const name = imageName(flavour, d.major, d.minor);
    if (fs.existsSync(path.join(tx.store.imageDir, name))) answer('EEXIST');
    plan.push({ member, t, d, size: Number(st!.size), name });
  }
  for (const { member, t, d, size, name } of plan) {
    syncDevice(tx, d);
    const capacity = capacitySectorsOf(size);
    // tracker_take_snapshot: a corrupted map or a resized device restarts tracking.
    if (t.cbtCorrupted || t.capacitySectors !== capacity) resetTracker(tx, t, capacity);
    switchMaps(tx, t);
    const g = chunkGeometry(tx.state.params, capacity);
    const img: ImageRecord = {
      name,
      mode,
      file: path.join(tx.store.imageDir, name),
      major: IMAGE_MAJOR,
      minor: d.minor,
      sizeBytes: capacity * SECTOR_SIZE,
      chunkShift: g.shift,
      chunkCount: g.count,
      copiedChunks: 0,
      errorCode: 0,
    };
    if (mode === 'copy') freezeImage(tx, d, img);
    else createEmptyImage(tx, img);
    member.image = img;
    tx.setBlob(cowBlob(snap!, member), Buffer.alloc(img.chunkCount));
  }
  snap!.taken = true;
  tx.touch();
}

/** cbt_map_switch: previous = active++; at 256 the live map restarts with a new generation and the read map is left as it was. */
function switchMaps(tx: Transaction, t: TrackerRecord): void {
  t.previous = t.active;
  t.active++;
  if (t.active === 256) {
    t.active = 1;
    tx.setBlob(liveMapBlob(t), Buffer.alloc(t.blockCount));
    t.generationId = newUuidHex();
  } else {
    tx.setBlob(readMapBlob(t), Buffer.from(liveMap(tx, t)));
  }
  tx.touch();
}

function createEmptyImage(tx: Transaction, img: ImageRecord): void {
  const out = fs.openSync(img.file, 'wx', 0o644);
  tx.onAbort(() => fs.rmSync(img.file, { force: true }));
  try {
    fs.ftruncateSync(out, img.sizeBytes);
  } finally {
    fs.closeSync(out);
  }
}

/**
 * A device file with (almost) every byte allocated has no holes worth
 * keeping, so a plain copy costs no extra disk. Sparse devices get the
 * sparse copy (only non-zero units written), so their images stay sparse.
 */
function isDense(file: string, sizeBytes: number): boolean {
  const st = fs.statSync(file);
  return st.blocks * 512 >= sizeBytes - Math.floor(sizeBytes / 8);
}

/** The image content: a copy of the device as it is at TAKE (a reflink where the filesystem can, else a plain copy if dense, else sparse). */
function freezeImage(tx: Transaction, d: DeviceRecord, img: ImageRecord): void {
  tx.onAbort(() => fs.rmSync(img.file, { force: true }));
  try {
    fs.copyFileSync(d.path, img.file, fs.constants.COPYFILE_FICLONE_FORCE | fs.constants.COPYFILE_EXCL);
    fs.truncateSync(img.file, img.sizeBytes);
    return;
  } catch {
    fs.rmSync(img.file, { force: true }); // no reflinks here (ext4, tmpfs): copy the data
  }
  if (isDense(d.path, img.sizeBytes)) {
    // Nothing worth keeping sparse: an in-kernel copy (copy_file_range, else
    // sendfile, inside libuv) moves the data without passing it through JS.
    fs.copyFileSync(d.path, img.file, fs.constants.COPYFILE_EXCL);
    fs.chmodSync(img.file, 0o644);
    fs.truncateSync(img.file, img.sizeBytes);
    return;
  }
  const out = fs.openSync(img.file, 'wx', 0o644);
  try {
    fs.ftruncateSync(out, img.sizeBytes);
    const hashes = loadHashes(tx, d);
    const src = fs.openSync(d.path, 'r');
    try {
      if (d.baseline && hashes && d.baseline.size >= img.sizeBytes) {
        copyNonZeroUnits(src, img.sizeBytes, d.baseline.unitShift, hashes, out);
      } else {
        scanFile(src, img.sizeBytes, baselineUnitShift(tx.state.params), null, out);
      }
    } finally {
      fs.closeSync(src);
    }
  } finally {
    fs.closeSync(out);
  }
}

/** COLLECT as snapshot_collect does it: on a short array ENODATA with `count` unchanged (§7). */
export function snapshotIds(state: SimState): Buffer[] {
  return state.snapshots.map((s) => Buffer.from(s.id, 'hex'));
}

export function popEvent(tx: Transaction, idHex: string): EventRecord | null | 'no_snapshot' {
  const snap = findSnapshot(tx.state, idHex);
  if (!snap) return 'no_snapshot';
  const ev = snap.events.shift() ?? null;
  if (ev) tx.touch();
  return ev;
}

// ---------------------------------------------------------------- writes from the admin API

/** A write through the simulated block layer: CBT and copy-on-write first, then the data. */
export function writeThroughDevice(tx: Transaction, d: DeviceRecord, offset: number, data: Uint8Array): void {
  const st = statOrNull(d.path);
  if (!st) throw new Error(`${d.path}: no such device`);
  const size = Number(st.size);
  if (offset < 0 || offset + data.length > size) throw new RangeError(`${d.path}: write of ${data.length} bytes at ${offset} is past the end of the device (${size} bytes)`);
  syncDevice(tx, d);
  applyWrite(tx, d, offset, offset + data.length, true);
  const scanStart = Date.now();
  const fd = fs.openSync(d.path, 'r+');
  try {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, offset + done);
  } finally {
    fs.closeSync(fd);
  }
  if (d.baseline) {
    backdateMtime(d.path);
    refreshBaselineRange(tx, d, offset, offset + data.length, scanStart);
  }
}

/** A write to a snapshot image: needs its chunk in the storage, and marks both maps (§7). */
export function writeThroughImage(tx: Transaction, snap: SnapshotRecord, member: MemberRecord, offset: number, data: Uint8Array): void {
  const img = member.image!;
  if (img.errorCode !== 0) throw new KernelAnswer('EIO');
  if (offset < 0 || offset + data.length > img.sizeBytes) throw new RangeError(`${img.file}: write past the end of the image`);
  const d = tx.state.devices[member.device];
  const t = tx.state.trackers[member.trackerId];
  copyOnWrite(tx, snap, member, d, offset, offset + data.length, true);
  if (member.image!.errorCode !== 0) throw new KernelAnswer('EIO');
  if (t && !t.cbtCorrupted) {
    const s = BigInt(Math.floor(offset / SECTOR_SIZE));
    const e = BigInt(Math.ceil((offset + data.length) / SECTOR_SIZE));
    stampRange(liveMap(tx, t), t.blockShift, t.blockCount, s, e - s, t.active);
    stampRange(readMap(tx, t), t.blockShift, t.blockCount, s, e - s, t.previous);
    tx.markBlob(liveMapBlob(t));
    tx.markBlob(readMapBlob(t));
  }
  const fd = fs.openSync(img.file, 'r+');
  try {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, offset + done);
  } finally {
    fs.closeSync(fd);
  }
  tx.touch();
}

export function findImage(state: SimState, file: string): { snap: SnapshotRecord; member: MemberRecord } | null {
  for (const snap of state.snapshots) {
    for (const member of snap.members) if (member.image && member.image.file === file) return { snap, member };
  }
  return null;
}

export { HASH_BYTES };
