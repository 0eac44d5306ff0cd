import fc from 'fast-check';
import { UsageError } from '../../lib/errors';
import { formatSize, MAX_SIZE_BYTES, parseSize } from '../../lib/config/size';

const KiB = 1024n;
const MiB = KiB * 1024n;
const GiB = MiB * 1024n;
const TiB = GiB * 1024n;

describe('parseSize', () => {
  test.each([
    ['4096', 4096n],
    ['4096b', 4096n],
    ['4096B', 4096n],
    ['512M', 512n * MiB],
    ['512m', 512n * MiB],
    ['512MiB', 512n * MiB],
    ['512mib', 512n * MiB],
    ['512Mi', 512n * MiB],
    ['20G', 20n * GiB],
    ['20g', 20n * GiB],
    ['1T', TiB],
    ['1t', TiB],
    ['2P', 2n * 1024n * TiB],
    ['1E', 1024n * 1024n * TiB],
    ['1k', KiB],
    ['1.5G', 3n * GiB / 2n],
    ['0.5K', 512n],
    [' 20G ', 20n * GiB],
    ['20 G', 20n * GiB],
    ['1KB', 1000n],
    ['20GB', 20_000_000_000n],
    ['1tb', 1_000_000_000_000n],
  ])('%s is %s bytes', (text, bytes) => {
    expect(parseSize(text, '--limit')).toBe(bytes);
  });

  test('a fraction that is not a whole number of bytes rounds down', () => {
    expect(parseSize('1.0001K', 'x')).toBe(1024n);
  });

  test.each([
    ['', /empty/],
    ['0', /greater than zero/],
    ['0G', /greater than zero/],
    ['0.0001K', /greater than zero/],
    ['-1G', /greater than zero/],
    ['-5', /greater than zero/],
    ['G', /expected a number/],
    ['12X', /expected a number/],
    ['1.G', /expected a number/],
    ['.5G', /expected a number/],
    ['1 2G', /expected a number/],
    ['0x10', /expected a number/],
    ['1e3', /expected a number/],
    ['20GG', /expected a number/],
    ['20 GiBs', /expected a number/],
    ['9E', /too large/],
    ['99999999999999999999', /too large/],
  ])('"%s" is refused', (text, reason) => {
    let caught: unknown;
    try {
      parseSize(text, '--limit');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UsageError);
    const err = caught as UsageError;
    expect(err.kind).toBe('usage');
    expect(err.message).toMatch(reason);
    expect(err.message).toContain(`--limit: invalid size "${text}"`);
    expect(err.message).not.toContain('\n');
    expect(err.hint).toMatch(/K, M, G, T/);
  });

  test('the largest accepted size is 2^63-1 bytes', () => {
    expect(parseSize(MAX_SIZE_BYTES.toString(), 'x')).toBe(MAX_SIZE_BYTES);
    expect(() => parseSize((MAX_SIZE_BYTES + 1n).toString(), 'x')).toThrow(/too large/);
  });

  test('every binary suffix in every case multiplies by its power of 1024', () => {
    const suffixes = ['k', 'm', 'g', 't'];
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.constantFrom('', 'i', 'ib', 'iB'), (n, e, upper, tail) => {
        const letter = upper ? suffixes[e].toUpperCase() : suffixes[e];
        expect(parseSize(`${n}${letter}${tail}`, 'x')).toBe(BigInt(n) * 1024n ** BigInt(e + 1));
      }),
    );
  });
});

describe('formatSize', () => {
  test.each([
    [512n, '512 B'],
    [KiB, '1 KiB'],
    [20n * GiB, '20 GiB'],
    [3n * GiB / 2n, '1.5 GiB'],
    [TiB, '1 TiB'],
  ])('%s bytes read %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  test('what it prints for whole units parses back to the same bytes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1023 }), fc.integer({ min: 1, max: 4 }), (n, e) => {
        const bytes = BigInt(n) * 1024n ** BigInt(e);
        expect(parseSize(formatSize(bytes).replace(' ', ''), 'x')).toBe(bytes);
      }),
    );
  });
});
