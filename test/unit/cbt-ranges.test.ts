import fc from 'fast-check';
import { changedBlockRuns, changedRanges, countChangedBlocks, totalLength, trackingBlockSize, wholeDeviceRanges } from '../../lib/cbt';

/** The plain definition: block i changed iff map[i] > since; merge adjacent; clip the last block. */
function oracle(map: Uint8Array, since: number, blockSize: number, capacity: number, maxLen = Infinity) {
  const blocks = Math.ceil(capacity / blockSize);
  const out: { offset: number; length: number }[] = [];
  let start = -1;
  const flush = (endBlock: number) => {
    let offset = start * blockSize;
    const end = Math.min(endBlock * blockSize, capacity);
    const cap = maxLen === Infinity ? Infinity : Math.ceil(maxLen / blockSize) * blockSize;
    while (offset < end) {
      const length = Math.min(end - offset, cap);
      out.push({ offset, length });
      offset += length;
    }
  };
  for (let i = 0; i < blocks; i++) {
    const changed = since < 0 || map[i] > since;
    if (changed && start < 0) start = i;
    if (!changed && start >= 0) { flush(i); start = -1; }
  }
  if (start >= 0) flush(blocks);
  return out;
}

/** Maps with long runs of equal bytes (what real maps look like) as well as noise. */
const runMap = fc
  .array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 40 })), { maxLength: 30 })
  .map((runs) => {
    const bytes: number[] = [];
    for (const [v, n] of runs) for (let i = 0; i < n; i++) bytes.push(v);
    return bytes;
  });
const anyMap = fc.oneof(runMap, fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 200 }));

/** Places the bytes at an arbitrary offset inside a bigger buffer, so word alignment varies. */
function placed(bytes: number[], shift: number): Uint8Array {
  const backing = new Uint8Array(bytes.length + 8).fill(0xff);
  const view = backing.subarray(shift, shift + bytes.length);
  view.set(bytes);
  return view;
}

describe('changedRanges', () => {
  test('matches the byte-loop oracle for every since value, alignment and clipping', () => {
    fc.assert(
      fc.property(
        anyMap,
        fc.integer({ min: -1, max: 255 }),
        fc.integer({ min: 0, max: 3 }),
        fc.constantFrom(512, 4096, 65536),
        fc.integer({ min: 0, max: 65535 }),
        (bytes, since, shift, blockSize, shortBy) => {
          const map = placed(bytes, shift);
          const capacity = Math.max(0, bytes.length * blockSize - (bytes.length ? shortBy % blockSize : 0));
          expect(changedRanges(map, since, blockSize, capacity)).toEqual(oracle(map, since, blockSize, capacity));
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('every since value across the 128 boundary gives exact lane results', () => {
    // All 256 byte values in every lane position, against every threshold.
    const bytes: number[] = [];
    for (let v = 0; v < 256; v++) bytes.push(v, 0, 255, v);
    const map = Uint8Array.from(bytes);
    for (let since = -1; since <= 255; since++) {
      expect(changedRanges(map, since, 1, map.length)).toEqual(oracle(map, since, 1, map.length));
    }
  });

  test('maxRangeLength splits merged ranges into block-aligned pieces', () => {
    fc.assert(
      fc.property(anyMap, fc.integer({ min: -1, max: 254 }), fc.integer({ min: 1, max: 5 * 4096 }), (bytes, since, maxLen) => {
        const map = Uint8Array.from(bytes);
        const capacity = bytes.length * 4096 - (bytes.length ? 100 : 0);
        const got = changedRanges(map, since, 4096, Math.max(0, capacity), { maxRangeLength: maxLen });
        expect(got).toEqual(oracle(map, since, 4096, Math.max(0, capacity), maxLen));
        for (const r of got) expect(r.length).toBeLessThanOrEqual(Math.ceil(maxLen / 4096) * 4096);
      }),
      { numRuns: 500 },
    );
  });

  test('a 2,097,152-entry map with scattered changes gives the oracle answer', () => {
    const n = 2097152;
    const map = new Uint8Array(n);
    let seed = 12345;
    for (let i = 0; i < n / 100; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      map[seed % n] = 1 + (seed >>> 24) % 200;
    }
    const capacity = n * 65536;
    for (const since of [0, 50, 150, 199]) {
      const got = changedRanges(map, since, 65536, capacity);
      expect(got).toEqual(oracle(map, since, 65536, capacity));
      expect(totalLength(got)).toBe(countChangedBlocks(map, since) * 65536);
    }
  });

  test('only the first ceil(capacity/blockSize) entries count', () => {
    const map = Uint8Array.from([0, 5, 0, 5, 5]);
    expect(changedRanges(map, 0, 10, 35)).toEqual([{ offset: 10, length: 10 }, { offset: 30, length: 5 }]);
    expect(changedBlockRuns(map, 0, 10, 35)).toEqual([{ first: 1, count: 1 }, { first: 3, count: 1 }]);
  });

  test('a map shorter than the device needs, or a bad since, is refused', () => {
    expect(() => changedRanges(new Uint8Array(2), 0, 10, 25)).toThrow(/needs 3/);
    expect(() => changedRanges(new Uint8Array(2), 256, 10, 20)).toThrow(RangeError);
    expect(() => changedRanges(new Uint8Array(2), 0.5, 10, 20)).toThrow(RangeError);
    expect(() => changedRanges(new Uint8Array(2), 0, 0, 20)).toThrow(RangeError);
  });

  test('wholeDeviceRanges covers the device exactly', () => {
    expect(wholeDeviceRanges(100, 16, { maxRangeLength: 32 })).toEqual([
      { offset: 0, length: 32 }, { offset: 32, length: 32 }, { offset: 64, length: 32 }, { offset: 96, length: 4 },
    ]);
    expect(wholeDeviceRanges(0, 16)).toEqual([]);
  });
});

describe('trackingBlockSize', () => {
  test('follows the kernel rule (blksnap-abi.md §4)', () => {
    expect(trackingBlockSize(512 * 2 ** 20)).toEqual({ blockSize: 65536, blockCount: 8192 });
    expect(trackingBlockSize(2 ** 37)).toEqual({ blockSize: 65536, blockCount: 2097152 });
    expect(trackingBlockSize(2 ** 37 + 1)).toEqual({ blockSize: 131072, blockCount: 1048577 });
    // Past 2^26 * 2^21 bytes the shift stops at 26 and the count grows.
    expect(trackingBlockSize(2 ** 48).blockSize).toBe(2 ** 26);
  });
});
