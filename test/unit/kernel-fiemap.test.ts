/**
 * FS_IOC_FIEMAP definitions: the request number and layouts written out by
 * hand from <linux/fiemap.h>, and, where gcc and the uapi headers exist,
 * compared with what the compiler says.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FIEMAP_EXTENT, FIEMAP_FLAG, FS_IOC_FIEMAP, fiemap, fiemap_extent } from '../../ioctl-defs/fiemap';
import { extentsToSectorRanges } from '../../lib/kernel/fiemap';

test('request number and layouts (by hand)', () => {
  // _IOWR('f', 11, struct fiemap): dir 3 << 30 | 32 << 16 | 0x66 << 8 | 11
  expect(FS_IOC_FIEMAP.number).toBe(0xc020660b);
  expect(fiemap.size).toBe(32);
  expect(fiemap_extent.size).toBe(56);
  expect(fiemap.fields.map((f) => [f.name, f.offset])).toEqual([
    ['fm_start', 0], ['fm_length', 8], ['fm_flags', 16], ['fm_mapped_extents', 20], ['fm_extent_count', 24], ['fm_reserved', 28],
  ]);
  expect(fiemap_extent.field('fe_physical').offset).toBe(8);
  expect(fiemap_extent.field('fe_length').offset).toBe(16);
  expect(fiemap_extent.field('fe_flags').offset).toBe(40);
});

const gcc = ['/usr/bin/gcc', '/usr/bin/cc'].find((p) => fs.existsSync(p));
const headers = fs.existsSync('/usr/include/linux/fiemap.h');
const withGcc = gcc && headers ? test : test.skip;
if (!gcc || !headers) process.stderr.write('skipped: FIEMAP layout against gcc: needs gcc and linux uapi headers (linux-libc-dev)\n');

withGcc('layouts and constants agree with gcc and <linux/fiemap.h>', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fiemap-gcc-'));
  try {
    const src = path.join(dir, 'f.c');
    fs.writeFileSync(src, `
#include <stdio.h>
#include <stddef.h>
#include <linux/fs.h>
#include <linux/fiemap.h>
int main(void) {
  printf("%lu %lu %lu %lu %lu %lu %lu\\n", (unsigned long)FS_IOC_FIEMAP, sizeof(struct fiemap), sizeof(struct fiemap_extent),
    offsetof(struct fiemap, fm_mapped_extents), offsetof(struct fiemap, fm_extents), offsetof(struct fiemap_extent, fe_flags),
    offsetof(struct fiemap_extent, fe_length));
  printf("%d %d %d %d %d %d %d\\n", FIEMAP_FLAG_SYNC, FIEMAP_EXTENT_LAST, FIEMAP_EXTENT_UNKNOWN, FIEMAP_EXTENT_ENCODED,
    FIEMAP_EXTENT_DATA_INLINE, FIEMAP_EXTENT_NOT_ALIGNED, FIEMAP_EXTENT_UNWRITTEN);
  return 0;
}`);
    execFileSync(gcc as string, ['-o', path.join(dir, 'f'), src]);
    const [layout, flags] = execFileSync(path.join(dir, 'f'), { encoding: 'utf8' }).trim().split('\n').map((l) => l.split(' ').map(Number));
    expect(layout).toEqual([
      FS_IOC_FIEMAP.number, fiemap.size, fiemap_extent.size, fiemap.field('fm_mapped_extents').offset, fiemap.size,
      fiemap_extent.field('fe_flags').offset, fiemap_extent.field('fe_length').offset,
    ]);
    expect(flags).toEqual([
      FIEMAP_FLAG.SYNC, FIEMAP_EXTENT.LAST, FIEMAP_EXTENT.UNKNOWN, FIEMAP_EXTENT.ENCODED,
      FIEMAP_EXTENT.DATA_INLINE, FIEMAP_EXTENT.NOT_ALIGNED, FIEMAP_EXTENT.UNWRITTEN,
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('extents become sector ranges rounded outwards, sorted and merged', () => {
  expect(extentsToSectorRanges([])).toEqual([]);
  expect(extentsToSectorRanges([{ physical: 512n, length: 1024n }])).toEqual([{ offset: 1n, count: 2n }]);
  expect(extentsToSectorRanges([{ physical: 100n, length: 1n }])).toEqual([{ offset: 0n, count: 1n }]);
  expect(extentsToSectorRanges([
    { physical: 1n << 20n, length: 4096n },
    { physical: 0n, length: 4096n },
    { physical: 4096n, length: 4096n },
    { physical: 9000n, length: 0n },
  ])).toEqual([{ offset: 0n, count: 16n }, { offset: 2048n, count: 8n }]);
});
