/**
 * `verify`: recomputes every block checksum of every point (or of the points
 * one point needs) and checks the files and the chain: manifest self-checksum
 * and fields, index size/header/records/checksum, data file size, each
 * block's sha256, zero-block checksums, and that each incremental continues
 * its parent (same generation, block size, capacity; changes numbers link).
 * Problems are collected, not thrown, so one run reports all of them.
 */
import * as crypto from 'crypto';
import type * as fsp from 'fs/promises';
import * as path from 'path';
import { BlksnapError, InterruptedError, NotFoundError } from '../errors';
import type { IndexRecord, Manifest } from './format';
import { digestSync, zeroDigest } from './hash';
import { dataPath, openData, readFully, readIndex } from './point-reader';
import { MANIFEST_FILE, pointDirName } from './repository';
import type { DeviceEntry, PointEntry, Repository } from './repository';

const READ_BYTES = 8 << 20;
const MAX_BLOCK_PROBLEMS = 20;

export interface PointVerifyResult {
  point: number;
  kind: 'full' | 'incremental' | null;
  parent: number | null;
  blocks: number;
  dataBytes: number;
  ok: boolean;
  problems: string[];
}

export interface DeviceVerifyResult {
  key: string;
  path: string | null;
  points: PointVerifyResult[];
}

export interface VerifyReport {
  repository: string;
  ok: boolean;
  devices: DeviceVerifyResult[];
  pointsChecked: number;
  blocksChecked: number;
  bytesChecked: number;
  problems: number;
}

export interface VerifyOptions {
  /** Only this device (path, stable id or key). */
  device?: string;
  /** Only the points this point needs (it and its ancestors). Requires `device` when the repository has several devices. */
  point?: number;
  signal?: AbortSignal;
  onProgress?: (p: { bytesChecked: number; bytesTotal: number; point: number; device: string }) => void;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export async function verifyRepository(repo: Repository, options: VerifyOptions = {}): Promise<VerifyReport> {
  let devices: DeviceEntry[];
  if (options.device !== undefined) devices = [await repo.findDevice(options.device)];
  else devices = await repo.devices();
  if (options.point !== undefined && devices.length !== 1) {
    throw new NotFoundError(devices.length === 0 ? `no devices in ${repo.dir}` : `--point needs --device: ${repo.dir} has ${devices.length} devices`, { path: repo.dir });
  }
  const report: VerifyReport = { repository: repo.dir, ok: true, devices: [], pointsChecked: 0, blocksChecked: 0, bytesChecked: 0, problems: 0 };
  let bytesTotal = 0;
  const plan: { dev: DeviceEntry; entries: PointEntry[]; wanted: Set<number> | null }[] = [];
  for (const dev of devices) {
    const entries = await repo.points(dev.key);
    let wanted: Set<number> | null = null;
    if (options.point !== undefined) {
      if (!entries.some((e) => e.point === options.point)) {
        throw new NotFoundError(`point ${options.point} of device ${dev.device?.path ?? dev.key} does not exist`, { path: repo.deviceDir(dev.key), hint: `points: ${entries.map((e) => e.point).join(', ') || 'none'}` });
      }
      // The points restore would need: follow parents as far as they exist.
      wanted = new Set();
      const byNumber = new Map(entries.map((e) => [e.point, e]));
      let p: number | null = options.point;
      while (p !== null && !wanted.has(p)) {
        wanted.add(p);
        const m: Manifest | null | undefined = byNumber.get(p)?.manifest;
        p = m && m.kind === 'incremental' ? m.parent : null;
      }
    }
    for (const e of entries) if (e.manifest && (!wanted || wanted.has(e.point))) bytesTotal += e.manifest.dataBytes;
    plan.push({ dev, entries, wanted });
  }

  for (const { dev, entries, wanted } of plan) {
    const result: DeviceVerifyResult = { key: dev.key, path: dev.device?.path ?? null, points: [] };
    report.devices.push(result);
    if (entries.length === 0) continue;
    for (const e of entries) {
      if (wanted && !wanted.has(e.point)) continue;
      if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new InterruptedError('SIGINT');
      const r: PointVerifyResult = { point: e.point, kind: e.manifest?.kind ?? null, parent: e.manifest?.parent ?? null, blocks: 0, dataBytes: 0, ok: true, problems: [] };
      result.points.push(r);
      report.pointsChecked++;
      if (!e.manifest) {
        r.problems.push(message(e.error));
      } else {
        // The chain: restore of this point must be possible.
        try {
          await repo.chain(dev.key, e.point);
        } catch (err) {
          if (!(err instanceof BlksnapError) || err instanceof InterruptedError) throw err;
          r.problems.push(message(err));
        }
        await verifyPoint(e.dir, e.manifest, r, report, (bytes) => {
          if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new InterruptedError('SIGINT');
          options.onProgress?.({ bytesChecked: bytes, bytesTotal, point: e.point, device: dev.device?.path ?? dev.key });
        });
      }
      r.ok = r.problems.length === 0;
      if (!r.ok) {
        report.ok = false;
        report.problems += r.problems.length;
      }
    }
  }
  return report;
}

async function verifyPoint(dir: string, m: Manifest, r: PointVerifyResult, report: VerifyReport, progress: (bytes: number) => void): Promise<void> {
  const dataFile = dataPath(dir);
  let data: fsp.FileHandle | undefined;
  try {
    data = await openData(dir, m);
  } catch (err) {
    if (!(err instanceof BlksnapError) || err instanceof InterruptedError) throw err;
    r.problems.push(message(err));
  }
  let blockProblems = 0;
  const problem = (text: string) => {
    blockProblems++;
    if (blockProblems <= MAX_BLOCK_PROBLEMS) r.problems.push(text);
  };
  const buf = Buffer.allocUnsafeSlow(READ_BYTES);
  // Records waiting for their data to be read, all contiguous in the data file.
  let pending: IndexRecord[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (!pending.length) return;
    const group = pending;
    const start = group[0].dataOffset;
    pending = [];
    const length = pendingBytes;
    pendingBytes = 0;
    if (!data) return;
    try {
      await readFully(data, buf, length, start, dataFile);
    } catch (err) {
      if (!(err instanceof BlksnapError) || err instanceof InterruptedError) throw err;
      problem(message(err));
      return;
    }
    const digests = await Promise.all(group.map((rec) => digestSync(buf.subarray(rec.dataOffset - start, rec.dataOffset - start + blockLen(rec)))));
    group.forEach((rec, i) => {
      if (!digests[i].equals(rec.checksum)) {
        problem(`${dataFile}: block ${rec.block} (device offset ${rec.block * m.blockSize}, data offset ${rec.dataOffset}) checksum mismatch`);
      }
    });
    report.bytesChecked += length;
    r.dataBytes += length;
    progress(report.bytesChecked);
  };
  // A tracking block larger than the buffer (devices over 16 TiB): hashed in pieces.
  const verifyLargeBlock = async (rec: IndexRecord, len: number) => {
    if (!data) return;
    const hash = crypto.createHash('sha256');
    try {
      for (let at = 0; at < len; at += READ_BYTES) {
        const n = Math.min(READ_BYTES, len - at);
        await readFully(data, buf, n, rec.dataOffset + at, dataFile);
        hash.update(buf.subarray(0, n));
      }
    } catch (err) {
      if (!(err instanceof BlksnapError) || err instanceof InterruptedError) throw err;
      problem(message(err));
      return;
    }
    if (!hash.digest().equals(rec.checksum)) problem(`${dataFile}: block ${rec.block} (device offset ${rec.block * m.blockSize}, data offset ${rec.dataOffset}) checksum mismatch`);
    report.bytesChecked += len;
    r.dataBytes += len;
    progress(report.bytesChecked);
  };
  const blockLen = (rec: IndexRecord) => Math.min(m.blockSize, m.capacity - rec.block * m.blockSize);

  try {
    for await (const batch of readIndex(dir, m)) {
      for (const rec of batch) {
        r.blocks++;
        report.blocksChecked++;
        const len = blockLen(rec);
        if (rec.flags & 1) {
          if (!rec.checksum.equals(zeroDigest(len))) problem(`${path.join(dir, 'index')}: zero block ${rec.block} has a checksum that is not the checksum of zeros`);
          continue;
        }
        if (pendingBytes + len > READ_BYTES && pending.length) await flush();
        if (len > READ_BYTES) {
          await verifyLargeBlock(rec, len);
          continue;
        }
        pending.push(rec);
        pendingBytes += len;
      }
    }
    await flush();
  } catch (err) {
    if (!(err instanceof BlksnapError) || err instanceof InterruptedError) throw err;
    r.problems.push(message(err));
  } finally {
    await data?.close();
  }
  if (blockProblems > MAX_BLOCK_PROBLEMS) r.problems.push(`${dataFile}: ${blockProblems - MAX_BLOCK_PROBLEMS} more bad blocks not listed`);
}

/** Where a point's manifest is, for messages. */
export function manifestPath(repo: Repository, key: string, point: number): string {
  return path.join(repo.deviceDir(key), pointDirName(point), MANIFEST_FILE);
}
