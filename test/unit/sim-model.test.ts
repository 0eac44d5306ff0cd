/**
 * Pure parts of the simulated kernel's model: CBT map stamping with the
 * kernel's u64 sector arithmetic, block and chunk geometry, the module's
 * parameter fix-ups, image names. Expected values are worked out by hand
 * from blksnap-abi.md §4, §6, §7.
 */
import { blockGeometry, chunkGeometry, imageName, normaliseParameters, stampRange } from '../../lib/kernel/sim/model';
import { DEFAULT_PARAMETERS } from '../../lib/kernel/sim/state';

const marked = (m: Buffer) => [...m.keys()].filter((i) => m[i] !== 0);

describe('stampRange (blocks of 8 sectors, 16 blocks)', () => {
  test('a range inside the map stamps the blocks it touches, never lowering a byte', () => {
    const m = Buffer.alloc(16);
    expect(stampRange(m, 12, 16, 7n, 2n, 3)).toBe(true); // sectors 7..8: blocks 0 and 1
    expect(marked(m)).toEqual([0, 1]);
    m[1] = 9;
    stampRange(m, 12, 16, 8n, 1n, 4);
    expect([m[0], m[1]]).toEqual([3, 9]);
  });

  test('past the end: EINVAL (false) with nothing marked; straddling: marks up to the last block', () => {
    const m = Buffer.alloc(16);
    expect(stampRange(m, 12, 16, 128n, 8n, 1)).toBe(false);
    expect(marked(m)).toEqual([]);
    expect(stampRange(m, 12, 16, 120n, 16n, 1)).toBe(false);
    expect(marked(m)).toEqual([15]);
  });

  test('{0,0} wraps to the last u64 sector: every block marked, then EINVAL', () => {
    const m = Buffer.alloc(16);
    expect(stampRange(m, 12, 16, 0n, 0n, 2)).toBe(false);
    expect(marked(m).length).toBe(16);
  });

  test('a zero count elsewhere stamps the block before the offset only when it is the same block', () => {
    const m = Buffer.alloc(16);
    expect(stampRange(m, 12, 16, 20n, 0n, 1)).toBe(true); // last = 19: block 2 = first
    expect(marked(m)).toEqual([2]);
    const n = Buffer.alloc(16);
    expect(stampRange(n, 12, 16, 24n, 0n, 1)).toBe(true); // last = 23 < first block 3
    expect(marked(n)).toEqual([]);
  });
});

describe('geometry (§4, §6)', () => {
  const sectors = (bytes: number) => bytes / 512;
  test('tracking blocks start at 64 KiB and double while there are more than 2097152', () => {
    expect(blockGeometry(DEFAULT_PARAMETERS, sectors(512 << 20))).toEqual({ shift: 16, count: 8192 });
    expect(blockGeometry(DEFAULT_PARAMETERS, sectors(2 ** 37))).toEqual({ shift: 16, count: 2097152 });
    expect(blockGeometry(DEFAULT_PARAMETERS, sectors(2 ** 37) + 1)).toEqual({ shift: 17, count: 1048577 });
    // Capped at 2^26: the count may then exceed the maximum.
    expect(blockGeometry(DEFAULT_PARAMETERS, sectors(2 ** 47))).toEqual({ shift: 26, count: 2 ** 21 });
    expect(blockGeometry(DEFAULT_PARAMETERS, sectors(2 ** 48))).toEqual({ shift: 26, count: 2 ** 22 });
    expect(blockGeometry(DEFAULT_PARAMETERS, 1)).toEqual({ shift: 16, count: 1 });
  });

  test('chunks are 256 KiB by default', () => {
    expect(chunkGeometry(DEFAULT_PARAMETERS, sectors(1 << 30))).toEqual({ shift: 18, count: 4096 });
    expect(chunkGeometry(DEFAULT_PARAMETERS, sectors(1 << 30) + 1)).toEqual({ shift: 18, count: 4097 });
    expect(chunkGeometry({ ...DEFAULT_PARAMETERS, chunk_maximum_count_shift: 4 }, sectors(1 << 30))).toEqual({ shift: 26, count: 16 });
  });
});

test('normaliseParameters applies the module\'s own fix-ups and refuses nonsense', () => {
  const p = normaliseParameters({ ...DEFAULT_PARAMETERS, chunk_minimum_shift: 9, diff_storage_minimum: 10, tracking_block_maximum_shift: 3 });
  expect(p.chunk_minimum_shift).toBe(12); // PAGE_SHIFT
  expect(p.diff_storage_minimum).toBe(16); // two minimum chunks
  expect(p.tracking_block_maximum_shift).toBe(16);
  expect(normaliseParameters({ ...DEFAULT_PARAMETERS, diff_storage_minimum: 100 }).diff_storage_minimum).toBe(1024);
  expect(normaliseParameters({ ...DEFAULT_PARAMETERS, chunk_minimum_shift: 12, diff_storage_minimum: 100 }).diff_storage_minimum).toBe(96);
  expect(() => normaliseParameters({ ...DEFAULT_PARAMETERS, chunk_minimum_shift: -1 })).toThrow(RangeError);
});

test('image names follow the flavour (§1)', () => {
  expect(imageName('upstream', 7, 3)).toBe('blksnap-7-3');
  expect(imageName('standalone', 7, 3)).toBe('veeamblksnapimg_7:3');
});
