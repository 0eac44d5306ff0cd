/**
 * The copy engine: reads runs of tracking blocks from a snapshot image and
 * appends them to a point (packed data + one index record per block).
 *
 * Throughput and memory: reads are large (chunkSize, default 8 MiB) and
 * sequential within each run; `depth` buffers (default 4) rotate so that
 * up to depth−1 reads are in flight while the previous chunk is written and
 * hashed (writes are queued in order by the PointWriter and run in the
 * thread pool; digests run on the JavaScript thread meanwhile, see hash.ts).
 * Memory is depth × chunkSize plus the index buffer, whatever the device
 * size. All-zero blocks are recorded with a flag and not written.
 */
import * as crypto from 'crypto';
import { InterruptedError } from '../errors';
import type { ImageReader } from '../kernel/types';
import { blockLength } from './format';
import { digestSync, isAllZero, zeroDigest, zeros } from './hash';

export const DEFAULT_CHUNK_SIZE = 8 << 20;
export const DEFAULT_DEPTH = 4;

/** Where copied blocks go (PointWriter implements it). */
export interface BlockSink {
  appendData(buf: Uint8Array, alignedMemory?: boolean): Promise<void>;
  addBlock(block: number, length: number, zero: boolean, checksum: Uint8Array): void;
  drain(): Promise<void>;
}

export interface CopyProgress {
  bytesRead: number;
  bytesTotal: number;
}

export interface CopyOptions {
  reader: Pick<ImageReader, 'read' | 'path'> & Partial<Pick<ImageReader, 'direct' | 'alignment'>>;
  sink: BlockSink;
  /** Runs of blocks to copy as a flat list: first0, count0, first1, count1, ... (lib/cbt scanChangedRuns). */
  runs: ArrayLike<number>;
  blockSize: number;
  capacity: number;
  /** Bytes per read; a power of two. */
  chunkSize?: number;
  /** Buffers in rotation (≥ 2). */
  depth?: number;
  signal?: AbortSignal;
  onProgress?: (p: CopyProgress) => void;
  /** Allocates a read buffer (default: page-aligned buffers for an O_DIRECT reader, see alignedBuffers). */
  allocate?: (size: number) => Buffer;
}

export interface CopyStats {
  bytesRead: number;
  blocks: number;
  zeroBlocks: number;
  bytesWritten: number;
}

interface Job {
  offset: number;
  length: number;
}

/** Bytes the runs cover on a device of `capacity` (the last block clipped). */
export function runsBytes(runs: ArrayLike<number>, blockSize: number, capacity: number): number {
  let total = 0;
  for (let i = 0; i < runs.length; i += 2) {
    total += Math.min((runs[i] + runs[i + 1]) * blockSize, capacity) - runs[i] * blockSize;
  }
  return total;
}

function* chunks(runs: ArrayLike<number>, blockSize: number, capacity: number, chunkBytes: number): Generator<Job> {
  for (let i = 0; i < runs.length; i += 2) {
    let offset = runs[i] * blockSize;
    const end = Math.min((runs[i] + runs[i + 1]) * blockSize, capacity);
    if (offset >= end) throw new RangeError(`block run ${runs[i]}+${runs[i + 1]} is outside the ${capacity}-byte device`);
    while (offset < end) {
      const length = Math.min(chunkBytes, end - offset);
      yield { offset, length };
      offset += length;
    }
  }
}

const WASM_PAGE = 65536;
// The WebAssembly global, typed here (the project's TypeScript lib has no DOM/wasm declarations).
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } } }).WebAssembly.Memory;

/**
 * `count` buffers of `size` bytes whose addresses are page-aligned, for
 * O_DIRECT reads (the kernel wants the user buffer aligned to the logical
 * block size, up to 4096). Node cannot allocate aligned memory, but a
 * WebAssembly memory is its own page-aligned mapping; slices at multiples of
 * 64 KiB stay aligned. Returns null when `alignment` is beyond what a page
 * guarantees.
 */
export function alignedBuffers(count: number, size: number, alignment: number): Buffer[] | null {
  if (alignment > 4096 || (alignment & (alignment - 1)) !== 0) return null;
  const stride = Math.ceil(size / WASM_PAGE) * WASM_PAGE;
  const memory = new WasmMemory({ initial: (stride * count) / WASM_PAGE });
  return Array.from({ length: count }, (_, i) => Buffer.from(memory.buffer, i * stride, size));
}

function abortReason(signal: AbortSignal): Error {
  const r = signal.reason as unknown;
  return r instanceof Error ? r : new InterruptedError('SIGINT');
}

export async function copyBlocks(options: CopyOptions): Promise<CopyStats> {
  const { reader, sink, runs, blockSize, capacity, signal, onProgress } = options;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const depth = Math.max(2, options.depth ?? DEFAULT_DEPTH);
  if (chunkSize <= 0 || (chunkSize & (chunkSize - 1)) !== 0) throw new RangeError(`chunk size must be a power of two, got ${chunkSize}`);
  // Chunks hold whole blocks when blocks are small; a large block (devices
  // over 16 TiB have tracking blocks over 8 MiB) is read in chunk-sized parts.
  const wholeBlocks = blockSize <= chunkSize;
  const chunkBytes = wholeBlocks ? Math.floor(chunkSize / blockSize) * blockSize : chunkSize;
  const bytesTotal = runsBytes(runs, blockSize, capacity);
  // Small copies (a few changed blocks) need no full-size buffers.
  const bufferBytes = Math.min(chunkBytes, Math.max(bytesTotal, 1));
  let buffers: Buffer[] | null = null;
  if (options.allocate) buffers = Array.from({ length: depth }, () => (options.allocate as (n: number) => Buffer)(bufferBytes));
  else if (reader.direct) buffers = alignedBuffers(depth, bufferBytes, reader.alignment ?? 512);
  // Whether the slot buffers are page-aligned (then block-aligned slices of them may be written with O_DIRECT).
  const alignedMemory = buffers !== null && !options.allocate && blockSize % 4096 === 0;
  const slots: Buffer[] = buffers ?? Array.from({ length: depth }, () => Buffer.allocUnsafeSlow(bufferBytes));
  const slotFree: Promise<unknown>[] = slots.map(() => Promise.resolve());
  let recordChain: Promise<void> = Promise.resolve();
  const stats: CopyStats = { bytesRead: 0, blocks: 0, zeroBlocks: 0, bytesWritten: 0 };

  let failure: unknown = null;
  const chainRecords = (step: () => void | Promise<void>): Promise<void> => {
    const p = recordChain.then(step);
    p.catch((err) => {
      failure ??= err;
    });
    return p;
  };

  // State of a large block read in several parts.
  let big: { block: number; hash: crypto.Hash; zeroSoFar: boolean; pendingZero: number } | null = null;

  const processChunk = (job: Job, buf: Buffer): Promise<unknown> => {
    const writes: Promise<void>[] = [];
    const data = buf.subarray(0, job.length);
    if (wholeBlocks) {
      const first = job.offset / blockSize;
      const hashes: Buffer[] = [];
      const blocks: { block: number; length: number; zero: boolean }[] = [];
      let groupStart = -1;
      let at = 0;
      for (let b = first; at < job.length; b++) {
        const len = blockLength(b, blockSize, capacity);
        const bytes = data.subarray(at, at + len);
        const zero = isAllZero(bytes);
        if (zero) {
          if (groupStart >= 0) writes.push(sink.appendData(data.subarray(groupStart, at), alignedMemory));
          groupStart = -1;
          hashes.push(zeroDigest(len));
        } else {
          if (groupStart < 0) groupStart = at;
          hashes.push(digestSync(bytes));
        }
        blocks.push({ block: b, length: len, zero });
        at += len;
      }
      if (groupStart >= 0) writes.push(sink.appendData(data.subarray(groupStart, at), alignedMemory));
      const hashed = Promise.all(hashes);
      recordChain = chainRecords(async () => {
        const digests = await hashed;
        blocks.forEach((blk, i) => {
          sink.addBlock(blk.block, blk.length, blk.zero, digests[i]);
          stats.blocks++;
          if (blk.zero) stats.zeroBlocks++;
          else stats.bytesWritten += blk.length;
        });
      });
      return Promise.all([...writes, hashed]);
    }

    const block = Math.floor(job.offset / blockSize);
    if (!big || big.block !== block) big = { block, hash: crypto.createHash('sha256'), zeroSoFar: true, pendingZero: 0 };
    const state = big;
    const zero = isAllZero(data);
    if (zero && state.zeroSoFar) {
      state.pendingZero += job.length;
    } else {
      // The block is not all zeros after all: write the zero parts held back so far.
      while (state.pendingZero > 0) {
        const n = Math.min(state.pendingZero, chunkBytes);
        writes.push(sink.appendData(zeros(n)));
        state.pendingZero -= n;
      }
      state.zeroSoFar = false;
      writes.push(sink.appendData(data, alignedMemory));
    }
    state.hash.update(data);
    const blockEnd = Math.min((block + 1) * blockSize, capacity);
    if (job.offset + job.length >= blockEnd) {
      const len = blockLength(block, blockSize, capacity);
      const isZero = state.zeroSoFar;
      const digest = isZero ? zeroDigest(len) : state.hash.digest();
      big = null;
      recordChain = chainRecords(() => {
        sink.addBlock(block, len, isZero, digest);
        stats.blocks++;
        if (isZero) stats.zeroBlocks++;
        else stats.bytesWritten += len;
      });
    }
    return Promise.all(writes);
  };

  const jobs = chunks(runs, blockSize, capacity, chunkBytes);
  const queue: { job: Job; slot: number; read: Promise<void> }[] = [];
  let issued = 0;
  const issue = (): boolean => {
    const next = jobs.next();
    if (next.done) return false;
    const job = next.value;
    const slot = issued++ % depth;
    const read = slotFree[slot].then(() => {
      if (failure) throw failure;
      return reader.read(slots[slot], job.length, BigInt(job.offset));
    });
    read.catch(() => undefined); // observed when dequeued; never unhandled
    queue.push({ job, slot, read });
    return true;
  };

  try {
    for (let i = 0; i < depth - 1 && issue(); i++);
    while (queue.length) {
      if (signal?.aborted) throw abortReason(signal);
      if (failure) throw failure;
      const head = queue.shift() as (typeof queue)[number];
      await head.read;
      stats.bytesRead += head.job.length;
      const done = processChunk(head.job, slots[head.slot]);
      done.catch((err) => {
        failure ??= err;
      });
      slotFree[head.slot] = done;
      onProgress?.({ bytesRead: stats.bytesRead, bytesTotal });
      issue();
    }
    await Promise.all(slotFree);
    await recordChain;
    await sink.drain();
  } catch (err) {
    failure = err;
    // Let every read and write that still uses a buffer settle before the caller frees anything.
    await Promise.allSettled([...queue.map((q) => q.read), ...slotFree, recordChain]);
    throw err;
  }
  return stats;
}
