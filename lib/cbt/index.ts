/**
 * Change-tracking math: which byte ranges of a device changed since a backup.
 *
 * The kernel keeps one byte per tracking block (blksnap-abi.md §4). A TAKE
 * stamps the read map; a block changed since the backup that recorded
 * `changes_number = c` is one whose byte is `> c`, and only while the
 * generation id is unchanged (the caller checks that). Blocks are
 * `blockSize` bytes; the last one is clipped to the device capacity.
 *
 * Maps hold up to 2,097,152 entries (tracking_block_maximum_count), and most
 * bytes of a nightly incremental's map are unchanged, so the scan tests four
 * bytes at a time (SWAR, see the lane mask below) and only looks at single bytes
 * in words that mix changed and unchanged blocks.
 */

/** A byte range of the device: `[offset, offset + length)`. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** A run of tracking blocks: `[first, first + count)`. */
export interface BlockRun {
  first: number;
  count: number;
}

export interface ChangedRangesOptions {
  /**
   * Split merged ranges so none is longer than this many bytes (a multiple
   * of `blockSize` keeps pieces block-aligned; it is rounded up to one).
   */
  maxRangeLength?: number;
}

// As int32 (the word view is an Int32Array so every value stays a small integer for V8).
const LANES_HIGH = 0x80808080 | 0;
const LANES_LOW7 = 0x7f7f7f7f;
const LANES_ONE = 0x01010101;

/*
 * Lane mask: for a 32-bit word of four map bytes, 0x80 in each byte lane
 * whose byte is greater than `since`, 0 elsewhere. Exact per lane (7-bit
 * values plus at most 127 stay below 256, so no carry crosses lanes):
 * - since < 128: b > since ⇔ b ≥ 128, or low7(b) + (127 − since) ≥ 128.
 * - since ≥ 128: b > since ⇔ b ≥ 128 and low7(b) + (255 − since) ≥ 128.
 */

function checkArgs(map: Uint8Array, since: number, blockSize: number, capacity: number): void {
  if (!Number.isInteger(since) || since < -1 || since > 255) {
    throw new RangeError(`changes number must be an integer from -1 to 255, got ${since}`);
  }
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0) throw new RangeError(`invalid tracking block size ${blockSize}`);
  if (!Number.isSafeInteger(capacity) || capacity < 0) throw new RangeError(`invalid device capacity ${capacity}`);
  const needed = Math.ceil(capacity / blockSize);
  if (map.length < needed) {
    throw new RangeError(`CBT map has ${map.length} entries, a ${capacity}-byte device with ${blockSize}-byte blocks needs ${needed}`);
  }
}

/**
 * Runs of map entries `> since` among the first `limit`, in ascending order,
 * as a flat array: first0, count0, first1, count1, ... (`since = -1` selects
 * every entry). Flat integers keep a 2M-entry scan free of allocations.
 */
export function scanChangedRuns(map: Uint8Array, since: number, limit = map.length): Uint32Array {
  const n = Math.min(limit, map.length);
  let out = new Uint32Array(64);
  let used = 0;
  const push = (first: number, count: number): void => {
    if (used + 2 > out.length) {
      const bigger = new Uint32Array(out.length * 2);
      bigger.set(out);
      out = bigger;
    }
    out[used++] = first;
    out[used++] = count;
  };
  if (since < 0) {
    if (n > 0) push(0, n);
    return out.subarray(0, used);
  }
  if (since >= 255 || n === 0) return out.subarray(0, 0);

  // Word view over the 4-aligned middle of the map; bytes before and after
  // are tested singly. Lanes are in host byte order; only whole-word
  // verdicts (all lanes unchanged / all changed) are taken from the word,
  // mixed words are re-read byte by byte, so byte order does not matter.
  const misalign = (4 - (map.byteOffset & 3)) & 3;
  const head = misalign <= n ? misalign : n;
  const wordCount = (n - head) >>> 2;
  const words = wordCount > 0 ? new Int32Array(map.buffer, map.byteOffset + head, wordCount) : new Int32Array(0);
  const tailStart = head + wordCount * 4;
  const low = since < 128;
  const k = ((low ? 127 - since : 255 - since) * LANES_ONE) | 0;

  let runStart = -1;
  for (let i = 0; i < head; i++) {
    if (map[i] > since) { if (runStart < 0) runStart = i; } else if (runStart >= 0) { push(runStart, i - runStart); runStart = -1; }
  }
  for (let w = 0; w < wordCount; w++) {
    const x = words[w];
    // Lane mask of bytes > since (see above).
    const m = low ? ((((x & LANES_LOW7) + k) | 0) | x) & LANES_HIGH : (((x & LANES_LOW7) + k) | 0) & x & LANES_HIGH;
    if (m === 0) {
      if (runStart >= 0) { push(runStart, head + w * 4 - runStart); runStart = -1; }
    } else if (m === LANES_HIGH) {
      if (runStart < 0) runStart = head + w * 4;
    } else {
      const base = head + w * 4;
      for (let j = base; j < base + 4; j++) {
        if (map[j] > since) { if (runStart < 0) runStart = j; } else if (runStart >= 0) { push(runStart, j - runStart); runStart = -1; }
      }
    }
  }
  for (let i = tailStart; i < n; i++) {
    if (map[i] > since) { if (runStart < 0) runStart = i; } else if (runStart >= 0) { push(runStart, i - runStart); runStart = -1; }
  }
  if (runStart >= 0) push(runStart, n - runStart);
  return out.subarray(0, used);
}

/** Calls `emit(first, count)` for every maximal run of map entries `> since`. */
export function forEachChangedRun(map: Uint8Array, since: number, emit: (first: number, count: number) => void, limit = map.length): void {
  const runs = scanChangedRuns(map, since, limit);
  for (let i = 0; i < runs.length; i += 2) emit(runs[i], runs[i + 1]);
}

/** Runs of tracking blocks whose map byte is `> since` (only the first ceil(capacity/blockSize) entries count). */
export function changedBlockRuns(map: Uint8Array, since: number, blockSize: number, capacity: number | bigint): BlockRun[] {
  const cap = Number(capacity);
  checkArgs(map, since, blockSize, cap);
  const runs: BlockRun[] = [];
  forEachChangedRun(map, since, (first, count) => runs.push({ first, count }), Math.ceil(cap / blockSize));
  return runs;
}

/**
 * Merged byte ranges of the blocks whose map byte is `> since`, ascending and
 * non-overlapping; the last block is clipped to `capacity`. `since = -1`
 * gives the whole device (a full backup).
 */
export function changedRanges(
  map: Uint8Array,
  since: number,
  blockSize: number,
  capacity: number | bigint,
  options: ChangedRangesOptions = {},
): ByteRange[] {
  const cap = Number(capacity);
  checkArgs(map, since, blockSize, cap);
  let maxLen = Infinity;
  if (options.maxRangeLength !== undefined) {
    if (!(options.maxRangeLength > 0)) throw new RangeError(`invalid maximum range length ${options.maxRangeLength}`);
    maxLen = Math.ceil(options.maxRangeLength / blockSize) * blockSize;
  }
  const ranges: ByteRange[] = [];
  forEachChangedRun(map, since, (first, count) => {
    let offset = first * blockSize;
    const end = Math.min((first + count) * blockSize, cap);
    while (offset < end) {
      const length = Math.min(end - offset, maxLen);
      ranges.push({ offset, length });
      offset += length;
    }
  }, Math.ceil(cap / blockSize));
  return ranges;
}

/** The whole device as ranges of at most `maxRangeLength` bytes (a full backup needs no map). */
export function wholeDeviceRanges(capacity: number | bigint, blockSize: number, options: ChangedRangesOptions = {}): ByteRange[] {
  const cap = Number(capacity);
  const blocks = Math.ceil(cap / blockSize);
  return changedRanges(new Uint8Array(blocks), -1, blockSize, cap, options);
}

/** Number of map entries `> since` among the first `blockCount`. */
export function countChangedBlocks(map: Uint8Array, since: number, blockCount = map.length): number {
  let total = 0;
  forEachChangedRun(map, since, (_first, count) => { total += count; }, blockCount);
  return total;
}

/** Total bytes covered by ranges. */
export function totalLength(ranges: readonly ByteRange[]): number {
  let t = 0;
  for (const r of ranges) t += r.length;
  return t;
}

/**
 * The kernel's tracking block size for a capacity (blksnap-abi.md §4): start at
 * 2^minShift and double until the block count fits `maxCount` or the shift
 * reaches `maxShift`.
 */
export function trackingBlockSize(capacity: number | bigint, params: { minShift?: number; maxShift?: number; maxCount?: number } = {}): { blockSize: number; blockCount: number } {
  const cap = Number(capacity);
  const minShift = params.minShift ?? 16;
  const maxShift = params.maxShift ?? 26;
  const maxCount = params.maxCount ?? 2097152;
  let shift = minShift;
  while (Math.ceil(cap / 2 ** shift) > maxCount && shift < maxShift) shift++;
  return { blockSize: 2 ** shift, blockCount: Math.ceil(cap / 2 ** shift) };
}
