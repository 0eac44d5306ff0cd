/**
 * `restore`: rebuilds a device image as of one point from its chain (the
 * full point and the incrementals up to it).
 *
 * Every block is written once: a first pass reads (and fully checks) each
 * point's index and notes, per tracking block, the newest point of the chain
 * that holds it (2 bytes per block, at most 4 MiB for 2,097,152 blocks);
 * then each point copies the blocks it owns, in its data file's order, with
 * every block's sha256 checked before it is written. All-zero blocks are
 * holes in a file target and zeros written on a block device.
 *
 * A file target is built in a temp file beside it and renamed over it only
 * when complete. Every write goes through one bounds check against the
 * capacity, so no manifest or index content can steer a write outside the
 * target.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { InterruptedError, RepositoryCorruptedError, UsageError } from '../errors';
import { FLAG_ZERO, blockLength, corruptedError } from './format';
import type { IndexRecord, Manifest } from './format';
import { FILE_MODE, fsyncDir } from './fsutil';
import { digestSync, zeros } from './hash';
import { checkIndex, dataPath, openData, readFully, readIndex } from './point-reader';
import type { Repository } from './repository';
import { inspectTarget, refuseIfInUse } from './target';
import { alignedBuffers } from './copy';

export const RESTORE_CHUNK = 8 << 20;
const DEPTH = 4;
/** Offset, length and address granularity of the O_DIRECT reads and writes (the largest common logical block size). */
const DIRECT_ALIGNMENT = 4096;

/** A second descriptor with O_DIRECT, or null where the filesystem or device refuses it (tmpfs: EINVAL). */
function openDirect(file: string, flags: number): Promise<fsp.FileHandle | null> {
  return fsp.open(file, flags | fs.constants.O_DIRECT).catch(() => null);
}

export interface RestoreOptions {
  device: string;
  /** Default: the newest point. */
  point?: number;
  to: string;
  /** Required to overwrite a block device or an existing file. */
  force?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: { bytesDone: number; bytesTotal: number }) => void;
  /** Called once the chain is known, before anything is written. */
  onPlan?: (plan: { chain: number[]; capacity: number; target: string; targetKind: string }) => void;
}

export interface RestoreSummary {
  device: string;
  key: string;
  point: number;
  chain: number[];
  target: string;
  targetKind: 'file' | 'block';
  capacity: number;
  bytesRead: number;
  bytesWritten: number;
  zeroBlocks: number;
  durationMs: number;
}

/** The one place restore writes: refuses anything outside [0, capacity). */
class TargetWriter {
  constructor(readonly handle: fsp.FileHandle, readonly file: string, readonly capacity: number, readonly direct: fsp.FileHandle | null) {}

  /** `alignedMemory`: `buf` may be written with O_DIRECT when position and length are aligned too. */
  async write(buf: Uint8Array, position: number, alignedMemory = false): Promise<void> {
    if (!Number.isSafeInteger(position) || position < 0 || position + buf.length > this.capacity) {
      throw new RepositoryCorruptedError(`${this.file}: refusing to write ${buf.length} bytes at ${position}, outside the ${this.capacity}-byte image`, { path: this.file });
    }
    const useDirect = this.direct !== null && alignedMemory && position % DIRECT_ALIGNMENT === 0 && buf.length % DIRECT_ALIGNMENT === 0;
    const handle = useDirect ? (this.direct as fsp.FileHandle) : this.handle;
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await handle.write(buf, done, buf.length - done, position + done);
      if (bytesWritten <= 0) throw new Error(`${this.file}: write returned ${bytesWritten}`);
      done += bytesWritten;
    }
  }
}

interface Job {
  /** Records of consecutive blocks, contiguous in the data file (or all zero). */
  records: IndexRecord[];
  /** Device bytes of each record's block. */
  lengths: number[];
  zero: boolean;
  dataOffset: number;
  length: number;
  targetOffset: number;
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new InterruptedError('SIGINT');
}

export async function restorePoint(repo: Repository, options: RestoreOptions): Promise<RestoreSummary> {
  const started = Date.now();
  const dev = await repo.findDevice(options.device);
  const chain = await repo.chain(dev.key, options.point);
  const last = chain[chain.length - 1];
  const { capacity, blockSize, blockCount } = last;

  const target = await inspectTarget(options.to);
  if (target.kind === 'block') {
    if (!options.force) throw new UsageError(`restore target ${target.path} is a block device: its contents will be replaced; add --force`, { path: target.path });
    if (target.size < capacity) {
      throw new UsageError(`restore target ${target.path} is ${target.size} bytes, the image is ${capacity} bytes`, { path: target.path, hint: 'restore to a device at least as large, or to a file' });
    }
  } else if (target.kind === 'file' && !options.force) {
    throw new UsageError(`restore target ${target.path} exists; add --force to replace it`, { path: target.path });
  }
  await refuseIfInUse(target);
  options.onPlan?.({ chain: chain.map((m) => m.point), capacity, target: target.path, targetKind: target.kind === 'block' ? 'block' : 'file' });

  // Pass 1: check every index completely and note which point owns each block.
  const owner = chain.length <= 0xffff ? new Uint16Array(blockCount) : new Uint32Array(blockCount);
  const covered = new Uint8Array(blockCount);
  for (let pos = 0; pos < chain.length; pos++) {
    if (options.signal?.aborted) throw abortError(options.signal);
    const m = chain[pos];
    const dir = repo.pointDir(dev.key, m.point);
    await checkIndex(dir, m, (r) => {
      owner[r.block] = pos;
      covered[r.block] = 1;
    });
    (await openData(dir, m)).close();
  }
  const missing = covered.indexOf(0);
  if (missing >= 0) {
    const file = path.join(repo.pointDir(dev.key, chain[0].point), 'index');
    throw corruptedError(file, `the full point does not cover block ${missing}`);
  }

  // The output: a temp file next to a file target, or the device itself (exclusive open).
  let handle: fsp.FileHandle;
  let tempFile: string | null = null;
  if (target.kind === 'block') {
    handle = await fsp.open(target.path, fs.constants.O_WRONLY | fs.constants.O_EXCL);
  } else {
    tempFile = path.join(path.dirname(target.path), `.${path.basename(target.path)}.blksnap-restore-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    handle = await fsp.open(tempFile, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, FILE_MODE);
    await handle.truncate(capacity);
  }
  // Large restores bypass the page cache where they can (as `dd oflag=direct` would).
  const directOut = await openDirect(tempFile ?? target.path, fs.constants.O_WRONLY);
  const writer = new TargetWriter(handle, target.path, capacity, directOut);
  const summary: RestoreSummary = {
    device: dev.device?.path ?? options.device,
    key: dev.key,
    point: last.point,
    chain: chain.map((m) => m.point),
    target: target.path,
    targetKind: target.kind === 'block' ? 'block' : 'file',
    capacity,
    bytesRead: 0,
    bytesWritten: 0,
    zeroBlocks: 0,
    durationMs: 0,
  };
  let bytesDone = 0;
  const progress = (n: number) => {
    bytesDone += n;
    options.onProgress?.({ bytesDone, bytesTotal: capacity });
  };

  try {
    // Pass 2: each point writes the blocks it owns.
    for (let pos = 0; pos < chain.length; pos++) {
      const m = chain[pos];
      const dir = repo.pointDir(dev.key, m.point);
      await copyOwnedBlocks(dir, m, pos, owner, writer, target.kind === 'block', summary, progress, options.signal);
    }
    await handle.sync();
    await directOut?.close();
    await handle.close();
    if (tempFile) {
      await fsp.rename(tempFile, target.path);
      tempFile = null;
      await fsyncDir(path.dirname(target.path));
    }
  } catch (err) {
    await directOut?.close().catch(() => undefined);
    await handle.close().catch(() => undefined);
    if (tempFile) await fsp.rm(tempFile, { force: true });
    throw err;
  }
  summary.durationMs = Date.now() - started;
  return summary;
}

async function* jobsOf(dir: string, m: Manifest, pos: number, owner: Uint16Array | Uint32Array, writeZeros: boolean): AsyncGenerator<Job> {
  let cur: Job | null = null;
  for await (const batch of readIndex(dir, m)) {
    for (const r of batch) {
      if (owner[r.block] !== pos) continue;
      const zero = (r.flags & FLAG_ZERO) !== 0;
      if (zero && !writeZeros) continue;
      const len = blockLength(r.block, m.blockSize, m.capacity);
      const targetOffset = r.block * m.blockSize;
      const extends_ = cur !== null && cur.zero === zero && cur.targetOffset + cur.length === targetOffset && (zero || cur.dataOffset + cur.length === r.dataOffset) && cur.length + len <= RESTORE_CHUNK;
      if (cur && extends_) {
        cur.records.push(r);
        cur.lengths.push(len);
        cur.length += len;
        continue;
      }
      if (cur) yield cur;
      cur = { records: [r], lengths: [len], zero, dataOffset: r.dataOffset, length: len, targetOffset };
      if (len > RESTORE_CHUNK) {
        // One tracking block larger than a chunk: its own job, read in parts.
        yield cur;
        cur = null;
      }
    }
  }
  if (cur) yield cur;
}

async function copyOwnedBlocks(
  dir: string,
  m: Manifest,
  pos: number,
  owner: Uint16Array | Uint32Array,
  writer: TargetWriter,
  writeZeros: boolean,
  summary: RestoreSummary,
  progress: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const dataFile = dataPath(dir);
  const data = await openData(dir, m);
  const dataDirect = await openDirect(dataFile, fs.constants.O_RDONLY);
  const bufSize = Math.min(RESTORE_CHUNK, m.dataBytes || 1);
  // Page-aligned buffers, so aligned pieces can be read and written with O_DIRECT.
  const aligned = alignedBuffers(DEPTH, bufSize, DIRECT_ALIGNMENT);
  const buffers = aligned ?? Array.from({ length: DEPTH }, () => Buffer.allocUnsafeSlow(bufSize));
  const src: DataSource = { data, direct: aligned ? dataDirect : null, file: dataFile, alignedMemory: aligned !== null };
  const slotFree: Promise<unknown>[] = buffers.map(() => Promise.resolve());
  let failure: unknown = null;
  let slot = 0;
  try {
    for await (const job of jobsOf(dir, m, pos, owner, writeZeros)) {
      if (signal?.aborted) throw abortError(signal);
      if (failure) throw failure;
      const k = slot++ % DEPTH;
      await slotFree[k];
      if (failure) throw failure;
      const buf = buffers[k];
      if (job.zero) {
        const z = (async () => {
          for (let at = 0; at < job.length; at += RESTORE_CHUNK) {
            const n = Math.min(RESTORE_CHUNK, job.length - at);
            await writer.write(zeros(n), job.targetOffset + at);
          }
          summary.bytesWritten += job.length;
          summary.zeroBlocks += job.records.length;
          progress(job.length);
        })();
        z.catch((err) => {
          failure ??= err;
        });
        slotFree[k] = z;
        continue;
      }
      const p = job.length > RESTORE_CHUNK ? copyLargeBlock(job, buf, data, dataFile, writer) : copyJob(job, buf, src, writer);
      const done = p.then(() => {
        summary.bytesRead += job.length;
        summary.bytesWritten += job.length;
        progress(job.length);
      });
      done.catch((err) => {
        failure ??= err;
      });
      slotFree[k] = done;
    }
    await Promise.all(slotFree);
  } catch (err) {
    await Promise.allSettled(slotFree);
    throw err;
  } finally {
    await dataDirect?.close();
    await data.close();
  }
}

interface DataSource {
  data: fsp.FileHandle;
  /** The same file opened O_DIRECT, or null. */
  direct: fsp.FileHandle | null;
  file: string;
  /** The buffers are page-aligned (O_DIRECT may use them). */
  alignedMemory: boolean;
}

async function copyJob(job: Job, buf: Buffer, src: DataSource, writer: TargetWriter): Promise<void> {
  const dataFile = src.file;
  const aligned = src.direct !== null && job.dataOffset % DIRECT_ALIGNMENT === 0 && job.length % DIRECT_ALIGNMENT === 0;
  await readFully(aligned ? (src.direct as fsp.FileHandle) : src.data, buf, job.length, job.dataOffset, dataFile);
  const bytes = buf.subarray(0, job.length);
  let at = 0;
  const checks = job.lengths.map((len) => {
    const d = digestSync(bytes.subarray(at, at + len));
    at += len;
    return d;
  });
  const digests = await Promise.all(checks);
  digests.forEach((d, i) => {
    const r = job.records[i];
    if (!d.equals(r.checksum)) throw corruptedError(dataFile, `block ${r.block} (data offset ${r.dataOffset}) checksum mismatch; the restore was stopped`);
  });
  await writer.write(bytes, job.targetOffset, src.alignedMemory);
}

async function copyLargeBlock(job: Job, buf: Buffer, data: fsp.FileHandle, dataFile: string, writer: TargetWriter): Promise<void> {
  const r = job.records[0];
  const hash = crypto.createHash('sha256');
  // Checked in full before the first byte is written.
  for (let at = 0; at < job.length; at += RESTORE_CHUNK) {
    const n = Math.min(RESTORE_CHUNK, job.length - at);
    await readFully(data, buf, n, job.dataOffset + at, dataFile);
    hash.update(buf.subarray(0, n));
  }
  if (!hash.digest().equals(r.checksum)) throw corruptedError(dataFile, `block ${r.block} (data offset ${r.dataOffset}) checksum mismatch; the restore was stopped`);
  for (let at = 0; at < job.length; at += RESTORE_CHUNK) {
    const n = Math.min(RESTORE_CHUNK, job.length - at);
    await readFully(data, buf, n, job.dataOffset + at, dataFile);
    await writer.write(buf.subarray(0, n), job.targetOffset + at);
  }
}
