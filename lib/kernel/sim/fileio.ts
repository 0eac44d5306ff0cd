/**
 * Reading device files in bounded pieces: content hashes per unit (to see
 * writes made by other programs), and sparse copies (the frozen image made at
 * TAKE). Memory stays bounded by IO_BYTES whatever the device size.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';

export const HASH_BYTES = 16;
/** The hash recorded for an all-zero unit (no sha1 prefix is all zero in practice). */
const ZERO_HASH = Buffer.alloc(HASH_BYTES);
const IO_BYTES = 4 << 20;
let zeroBuffer = Buffer.alloc(0);

function zeros(n: number): Buffer {
  if (zeroBuffer.length < n) zeroBuffer = Buffer.alloc(Math.max(n, IO_BYTES));
  return zeroBuffer.subarray(0, n);
}

function unitHash(data: Buffer, out: Buffer, at: number): void {
  if (data.equals(zeros(data.length))) {
    ZERO_HASH.copy(out, at);
    return;
  }
  crypto.createHash('sha1').update(data).digest().copy(out, at, 0, HASH_BYTES);
}

export function unitCount(size: number, unitShift: number): number {
  return Math.ceil(size / 2 ** unitShift);
}

/** Hashes of a file known to be all zeros (a fresh sparse device). */
export function zeroHashes(size: number, unitShift: number): Buffer {
  return Buffer.alloc(unitCount(size, unitShift) * HASH_BYTES);
}

export interface ScanResult {
  hashes: Buffer;
  /** Byte ranges [start, end) whose content differs from `old` (merged, ascending). */
  changed: Array<[number, number]>;
}

/**
 * Reads `size` bytes of the file, hashes every unit and compares with `old`
 * (units beyond old's length count as changed). With `copyFd`, also writes
 * every non-zero piece at the same offset (a sparse copy).
 */
export function scanFile(fd: number, size: number, unitShift: number, old: Buffer | null, copyFd?: number): ScanResult {
  const unit = 2 ** unitShift;
  const units = unitCount(size, unitShift);
  const hashes = Buffer.alloc(units * HASH_BYTES);
  const changed: Array<[number, number]> = [];
  const buf = Buffer.allocUnsafe(Math.max(unit, Math.floor(IO_BYTES / unit) * unit));
  let pos = 0;
  while (pos < size) {
    const want = Math.min(buf.length, size - pos);
    const got = readFully(fd, buf, want, pos);
    if (got < want) buf.fill(0, got, want);
    for (let off = 0; off < want; off += unit) {
      const u = (pos + off) / unit;
      const piece = buf.subarray(off, Math.min(off + unit, want));
      unitHash(piece, hashes, u * HASH_BYTES);
      const isZero = hashes.compare(ZERO_HASH, 0, HASH_BYTES, u * HASH_BYTES, (u + 1) * HASH_BYTES) === 0;
      if (copyFd !== undefined && !isZero) fs.writeSync(copyFd, piece, 0, piece.length, pos + off);
      if (!old) continue;
      if ((u + 1) * HASH_BYTES <= old.length) {
        if (old.compare(hashes, u * HASH_BYTES, (u + 1) * HASH_BYTES, u * HASH_BYTES, (u + 1) * HASH_BYTES) === 0) continue;
      } else if (isZero) {
        continue; // a device that grew: its new zeros were never written
      }
      const start = pos + off;
      const end = Math.min(start + unit, size);
      const last = changed[changed.length - 1];
      if (last && last[1] === start) last[1] = end;
      else changed.push([start, end]);
    }
    pos += want;
  }
  return { hashes, changed };
}

/**
 * Copies the non-zero units (per `hashes`, which describe the file now) of
 * the first `size` bytes into `copyFd`, leaving holes elsewhere.
 */
export function copyNonZeroUnits(fd: number, size: number, unitShift: number, hashes: Buffer, copyFd: number): void {
  const unit = 2 ** unitShift;
  const units = unitCount(size, unitShift);
  const maxRun = Math.max(1, Math.floor(IO_BYTES / unit));
  const buf = Buffer.allocUnsafe(maxRun * unit);
  let u = 0;
  const isZero = (i: number): boolean => hashes.compare(ZERO_HASH, 0, HASH_BYTES, i * HASH_BYTES, (i + 1) * HASH_BYTES) === 0;
  while (u < units) {
    if ((u + 1) * HASH_BYTES <= hashes.length && isZero(u)) { u++; continue; }
    let end = u + 1;
    while (end < units && end - u < maxRun && !((end + 1) * HASH_BYTES <= hashes.length && isZero(end))) end++;
    const start = u * unit;
    const len = Math.min(end * unit, size) - start;
    const got = readFully(fd, buf, len, start);
    if (got < len) buf.fill(0, got, len);
    fs.writeSync(copyFd, buf, 0, len, start);
    u = end;
  }
}

/** Reads up to `length` bytes at `position` (fewer only at end of file). */
export function readFully(fd: number, buf: Buffer, length: number, position: number, at = 0): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, at + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Hashes of units [firstUnit, endUnit) read back from the file. */
export function hashUnits(fd: number, size: number, unitShift: number, firstUnit: number, endUnit: number): Buffer {
  const unit = 2 ** unitShift;
  const out = Buffer.alloc((endUnit - firstUnit) * HASH_BYTES);
  const piece = Buffer.allocUnsafe(unit);
  for (let u = firstUnit; u < endUnit; u++) {
    const len = Math.min(unit, size - u * unit);
    const got = readFully(fd, piece, len, u * unit);
    if (got < len) piece.fill(0, got, len);
    unitHash(piece.subarray(0, len), out, (u - firstUnit) * HASH_BYTES);
  }
  return out;
}
