/**
 * dev_t → major/minor as glibc's gnu_dev_major/gnu_dev_minor split it
 * (<bits/sysmacros.h>): major = bits 8-19 and 44-63, minor = bits 0-7 and
 * 20-43. Expected values are built with glibc's makedev bit layout written
 * out here, not with the production code.
 */
import { devMajor, devMinor } from '../../lib/kernel/real-platform';

/** glibc gnu_dev_makedev for 32-bit major and minor. */
const makedev = (major: bigint, minor: bigint): bigint =>
  ((major & 0x00000fffn) << 8n) | ((major & 0xfffff000n) << 32n) | (minor & 0x000000ffn) | ((minor & 0xffffff00n) << 12n);

describe('devMajor/devMinor', () => {
  test.each([
    [8, 1], // sda1
    [7, 0], // loop0
    [259, 0xfffff], // blkext, a large minor
    [4096, 0], // a major above 12 bits must not leak into the minor
    [0xfffff, 5],
    [0xffffffff, 0xffffffff],
  ])('makedev(%i, %i) splits back', (major, minor) => {
    const dev = makedev(BigInt(major), BigInt(minor));
    expect([devMajor(dev), devMinor(dev)]).toEqual([major, minor]);
  });

  test('a hand-written dev_t: major 4096 minor 0 is 1 << 44', () => {
    expect([devMajor(1n << 44n), devMinor(1n << 44n)]).toEqual([4096, 0]);
  });
});
