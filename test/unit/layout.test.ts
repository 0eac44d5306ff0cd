/**
 * The struct codec against golden bytes written out by hand from the offsets
 * in blksnap-abi.md (§2, §3) and the Linux uapi headers (blkpg.h, fs.h, fiemap.h). The
 * expected bytes are built here with a tiny independent builder (hex text,
 * zero runs, NUL-padded ASCII), never with the production encoder.
 */
import {
  LayoutError,
  decodeArray,
  encodeArray,
  flavours,
  linuxStructs,
  struct,
  u8,
  u16,
  u32,
  u64,
  s32,
  s64,
  pointer,
  bytes,
  cstring,
  nested,
  blksnap_uuid,
  blksnap_cbtinfo,
  blksnap_sectors,
  blksnap_snapshotinfo,
  blkfilter_attach,
  type StructDef,
} from '../../ioctl-defs';

// ---- independent byte builder -------------------------------------------
/** Bytes from hex text with spaces: `h('08 07 06')`. */
const h = (text: string): number[] => text.trim().split(/\s+/).filter(Boolean).map((b) => {
  if (!/^[0-9a-f]{2}$/i.test(b)) throw new Error(`bad hex byte ${b}`);
  return parseInt(b, 16);
});
/** n zero bytes (padding, unused tails of arrays). */
const z = (n: number): number[] => new Array<number>(n).fill(0);
/** ASCII text NUL-padded to n bytes. */
const ascii = (s: string, n: number): number[] => {
  const out = [...s].map((c) => c.charCodeAt(0));
  if (out.length > n) throw new Error('test bug: text longer than field');
  return [...out, ...z(n - out.length)];
};
const bytesOf = (...parts: number[][]): Buffer => Buffer.from(parts.flat());

const UUID_HEX = '00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f';
const uuidValue = () => ({ b: Buffer.from(h(UUID_HEX)) });

interface Golden {
  size: number;
  values: Record<string, unknown>;
  bytes: Buffer;
}

/** One entry per struct of both flavours and of linux.ts, keyed by the kernel's name. */
const GOLDEN: Record<string, Golden> = {
  // name u8[32] @0 | opt u64 @32 | optlen u32 @40 | pad 4
  blkfilter_attach: {
    size: 48,
    values: { name: 'blksnap', opt: 0x1122334455667788n, optlen: 16 },
    bytes: bytesOf(ascii('blksnap', 32), h('88 77 66 55 44 33 22 11'), h('10 00 00 00'), z(4)),
  },
  // name u8[32] @0
  blkfilter_detach: {
    size: 32,
    values: { name: 'blksnap' },
    bytes: bytesOf(h('62 6c 6b 73 6e 61 70'), z(25)),
  },
  // name u8[32] @0 | cmd u32 @32 | optlen u32 @36 | opt u64 @40
  blkfilter_ctl: {
    size: 48,
    values: { name: 'blksnap', cmd: 4, optlen: 36, opt: 0x00007f0012345678n },
    bytes: bytesOf(ascii('blksnap', 32), h('04 00 00 00'), h('24 00 00 00'), h('78 56 34 12 00 7f 00 00')),
  },
  // devpath u64 @0 | name u8[32] @8
  bdevfilter_name: {
    size: 40,
    values: { devpath: 0x00007ffc00001000n, name: 'blksnap' },
    bytes: bytesOf(h('00 10 00 00 fc 7f 00 00'), ascii('blksnap', 32)),
  },
  // devpath u64 @0 | name u8[32] @8 | cmd u32 @40 | optlen u32 @44 | opt u64 @48
  bdevfilter_ctl: {
    size: 56,
    values: { devpath: 0x00007ffc00001000n, name: 'blksnap', cmd: 1, optlen: 16, opt: 0x5555000011112222n },
    bytes: bytesOf(h('00 10 00 00 fc 7f 00 00'), ascii('blksnap', 32), h('01 00 00 00'), h('10 00 00 00'), h('22 22 11 11 00 00 55 55')),
  },
  // b u8[16]
  blksnap_uuid: {
    size: 16,
    values: uuidValue(),
    bytes: bytesOf(h(UUID_HEX)),
  },
  // device_capacity u64 @0 | block_size u32 @8 | block_count u32 @12 | generation_id uuid @16 | changes_number u8 @32 | pad 7
  blksnap_cbtinfo: {
    size: 40,
    values: { device_capacity: 0x0102030405060708n, block_size: 65536, block_count: 8192, generation_id: uuidValue(), changes_number: 7 },
    bytes: bytesOf(h('08 07 06 05 04 03 02 01'), h('00 00 01 00'), h('00 20 00 00'), h(UUID_HEX), h('07'), z(7)),
  },
  // offset u32 @0 | length u32 @4 | buffer u64 @8
  blksnap_cbtmap: {
    size: 16,
    values: { offset: 0x01020304, length: 4096, buffer: 0x7f00deadbeef0000n },
    bytes: bytesOf(h('04 03 02 01'), h('00 10 00 00'), h('00 00 ef be ad de 00 7f')),
  },
  // offset u64 @0 | count u64 @8
  blksnap_sectors: {
    size: 16,
    values: { offset: 2048n, count: 0xffffffffffn },
    bytes: bytesOf(h('00 08 00 00 00 00 00 00'), h('ff ff ff ff ff 00 00 00')),
  },
  // count u32 @0 | pad 4 | dirty_sectors u64 @8
  blksnap_cbtdirty: {
    size: 16,
    values: { count: 3, dirty_sectors: 0x1000n },
    bytes: bytesOf(h('03 00 00 00'), z(4), h('00 10 00 00 00 00 00 00')),
  },
  // id uuid @0
  blksnap_snapshotadd: {
    size: 16,
    values: { id: uuidValue() },
    bytes: bytesOf(h(UUID_HEX)),
  },
  // error_code s32 @0 | image u8[32] @4
  blksnap_snapshotinfo: {
    size: 36,
    values: { error_code: -28, image: 'blksnap-7-0' },
    bytes: bytesOf(h('e4 ff ff ff'), h('62 6c 6b 73 6e 61 70 2d 37 2d 30'), z(21)),
  },
  // major u16 @0 | minor u16 @2 | revision u16 @4 | build u16 @6
  blksnap_version: {
    size: 8,
    values: { major: 2, minor: 1, revision: 3, build: 0x1234 },
    bytes: bytesOf(h('02 00 01 00 03 00 34 12')),
  },
  // diff_storage_limit_sect u64 @0 | diff_storage_filename u64 @8 | id uuid @16
  blksnap_snapshot_create: {
    size: 32,
    values: { diff_storage_limit_sect: 2097152n, diff_storage_filename: 0x7f0000001000n, id: uuidValue() },
    bytes: bytesOf(h('00 00 20 00 00 00 00 00'), h('00 10 00 00 00 7f 00 00'), h(UUID_HEX)),
  },
  // count u32 @0 | pad 4 | ids u64 @8
  blksnap_snapshot_collect: {
    size: 16,
    values: { count: 5, ids: 0x2000n },
    bytes: bytesOf(h('05 00 00 00'), z(4), h('00 20 00 00 00 00 00 00')),
  },
  // id uuid @0 | timeout_ms u32 @16 | code u32 @20 | time_label s64 @24 | data u8[4064] @32
  blksnap_snapshot_event: {
    size: 4096,
    values: {
      id: uuidValue(), timeout_ms: 200, code: 1, time_label: -2n,
      data: Buffer.from([...h('00 00 04 00 00 00 00 00'), ...z(4056)]),
    },
    bytes: bytesOf(h(UUID_HEX), h('c8 00 00 00'), h('01 00 00 00'), h('fe ff ff ff ff ff ff ff'), h('00 00 04 00 00 00 00 00'), z(4056)),
  },
  // dev_id_mj u32 | dev_id_mn u32 | err_code s32
  blksnap_event_corrupted: {
    size: 12,
    values: { dev_id_mj: 253, dev_id_mn: 16, err_code: 28 },
    bytes: bytesOf(h('fd 00 00 00'), h('10 00 00 00'), h('1c 00 00 00')),
  },
  // requested_nr_sect u64
  blksnap_event_no_space: {
    size: 8,
    values: { requested_nr_sect: 262144n },
    bytes: bytesOf(h('00 00 04 00 00 00 00 00')),
  },
  // compatibility_flags u64 @0 | name u8[32] @8
  blksnap_mod: {
    size: 40,
    values: { compatibility_flags: 2n, name: 'standalone' },
    bytes: bytesOf(h('02 00 00 00 00 00 00 00'), h('73 74 61 6e 64 61 6c 6f 6e 65'), z(22)),
  },
  // tz_minuteswest s32 @0 | level s32 @4 | filepath_size u32 @8 | pad 4 | filepath u64 @16
  blksnap_setlog: {
    size: 24,
    values: { tz_minuteswest: -60, level: 7, filepath_size: 17, filepath: 0x7f0000002000n },
    bytes: bytesOf(h('c4 ff ff ff'), h('07 00 00 00'), h('11 00 00 00'), z(4), h('00 20 00 00 00 7f 00 00')),
  },
  // <linux/fs.h> BLKGETSIZE64 argument: u64
  blk_u64: {
    size: 8,
    values: { value: 67108864n },
    bytes: bytesOf(h('00 00 00 04 00 00 00 00')),
  },
  // <linux/fs.h> int argument
  blk_int: {
    size: 4,
    values: { value: 4096 },
    bytes: bytesOf(h('00 10 00 00')),
  },
  // <linux/blkpg.h>: long long start @0 | long long length @8 | int pno @16 | char devname[64] @20 | char volname[64] @84 | pad 4
  blkpg_partition: {
    size: 152,
    values: { start: 1048576n, length: 8388608n, pno: 1, devname: 'p1', volname: '' },
    bytes: bytesOf(h('00 00 10 00 00 00 00 00'), h('00 00 80 00 00 00 00 00'), h('01 00 00 00'), h('70 31'), z(62), z(64), z(4)),
  },
  // <linux/blkpg.h>: int op @0 | int flags @4 | int datalen @8 | pad 4 | void *data @16
  blkpg_ioctl_arg: {
    size: 24,
    values: { op: 1, flags: 0, datalen: 152, data: 0x1000n },
    bytes: bytesOf(h('01 00 00 00'), h('00 00 00 00'), h('98 00 00 00'), z(4), h('00 10 00 00 00 00 00 00')),
  },
  // <linux/fiemap.h>: fm_start u64 @0 | fm_length u64 @8 | fm_flags u32 @16 | fm_mapped_extents u32 @20 | fm_extent_count u32 @24 | fm_reserved u32 @28
  fiemap: {
    size: 32,
    values: { fm_start: 4096n, fm_length: 0xffffffffffffffffn, fm_flags: 1, fm_mapped_extents: 2, fm_extent_count: 256, fm_reserved: 0 },
    bytes: bytesOf(h('00 10 00 00 00 00 00 00'), h('ff ff ff ff ff ff ff ff'), h('01 00 00 00'), h('02 00 00 00'), h('00 01 00 00'), z(4)),
  },
  // <linux/fiemap.h>: fe_logical u64 @0 | fe_physical u64 @8 | fe_length u64 @16 | fe_reserved64[2] @24 | fe_flags u32 @40 | fe_reserved[3] @44
  fiemap_extent: {
    size: 56,
    values: {
      fe_logical: 0n, fe_physical: 0x12340000n, fe_length: 65536n, fe_reserved64_0: 0n, fe_reserved64_1: 0n,
      fe_flags: 0x801, fe_reserved_0: 0, fe_reserved_1: 0, fe_reserved_2: 0,
    },
    bytes: bytesOf(z(8), h('00 00 34 12 00 00 00 00'), h('00 00 01 00 00 00 00 00'), z(16), h('01 08 00 00'), z(12)),
  },
};

function allStructs(): StructDef<any>[] {
  const byName = new Map<string, StructDef<any>>();
  for (const f of Object.values(flavours)) for (const s of f.structs) byName.set(s.name, s);
  for (const s of linuxStructs) byName.set(s.name, s);
  return [...byName.values()];
}

describe('golden bytes from blksnap-abi.md', () => {
  const structs = allStructs();

  it('covers every struct of both flavours and of linux.ts, and nothing else', () => {
    expect(structs.map((s) => s.name).sort()).toEqual(Object.keys(GOLDEN).sort());
  });

  describe.each(structs.map((s) => [s.name, s] as const))('%s', (_name, def) => {
    const golden = GOLDEN[def.name];

    it('the hand-built bytes have the documented size', () => {
      expect(golden.bytes.length).toBe(golden.size);
      expect(def.size).toBe(golden.size);
    });

    it('encodes to the golden bytes', () => {
      expect(def.encode(golden.values).toString('hex')).toBe(golden.bytes.toString('hex'));
    });

    it('decodes the golden bytes', () => {
      expect(def.decode(golden.bytes)).toEqual(golden.values);
    });

    it('decodes at an offset inside a larger buffer', () => {
      const big = Buffer.concat([Buffer.alloc(3, 0xee), golden.bytes, Buffer.alloc(5, 0xee)]);
      expect(def.decode(big, 3)).toEqual(golden.values);
    });

    it('encodes nothing but zeros for no values', () => {
      expect(def.encode({}).equals(Buffer.alloc(golden.size))).toBe(true);
    });
  });
});

describe('padding', () => {
  it('lists the gaps blksnap-abi.md documents as "pad"', () => {
    expect(blkfilter_attach.padding).toEqual([{ offset: 44, size: 4 }]);
    expect(blksnap_cbtinfo.padding).toEqual([{ offset: 33, size: 7 }]);
    expect(blksnap_snapshotinfo.padding).toEqual([]);
    const cbtdirty = allStructs().find((s) => s.name === 'blksnap_cbtdirty')!;
    expect(cbtdirty.padding).toEqual([{ offset: 4, size: 4 }]);
    const setlog = allStructs().find((s) => s.name === 'blksnap_setlog')!;
    expect(setlog.padding).toEqual([{ offset: 12, size: 4 }]);
  });

  it('fields and padding tile every struct exactly', () => {
    for (const def of allStructs()) {
      const pieces = [...def.fields.map((f) => ({ offset: f.offset, size: f.size })), ...def.padding].sort((a, b) => a.offset - b.offset);
      let at = 0;
      for (const p of pieces) {
        expect({ struct: def.name, offset: p.offset }).toEqual({ struct: def.name, offset: at });
        at += p.size;
      }
      expect({ struct: def.name, end: at }).toEqual({ struct: def.name, end: def.size });
    }
  });

  it('encodeInto writes only the given fields and leaves padding and other bytes untouched', () => {
    const buf = Buffer.alloc(40, 0xaa);
    blksnap_cbtinfo.encodeInto(buf, { block_size: 0x01020304 });
    expect(buf.toString('hex')).toBe(bytesOf(z(0), h('aa aa aa aa aa aa aa aa'), h('04 03 02 01'), new Array(28).fill(0xaa)).toString('hex'));
  });

  it('encodeInto at an offset', () => {
    const buf = Buffer.alloc(20, 0xff);
    blksnap_uuid.encodeInto(buf, uuidValue(), 2);
    expect(buf.toString('hex')).toBe(bytesOf(h('ff ff'), h(UUID_HEX), h('ff ff')).toString('hex'));
  });

  it('accepts a Uint8Array that is a view into a larger ArrayBuffer', () => {
    const backing = new ArrayBuffer(64);
    const view = new Uint8Array(backing, 8, 40);
    blksnap_cbtinfo.encodeInto(view, GOLDEN.blksnap_cbtinfo.values);
    expect(Buffer.from(view).toString('hex')).toBe(GOLDEN.blksnap_cbtinfo.bytes.toString('hex'));
    expect(new Uint8Array(backing, 0, 8).every((b) => b === 0)).toBe(true);
    expect(blksnap_cbtinfo.decode(view)).toEqual(GOLDEN.blksnap_cbtinfo.values);
  });
});

describe('range and type errors', () => {
  const all = struct<{ a: number; b: number; c: number; d: bigint; e: number; f: bigint; p: bigint; raw: Buffer; s: string }>('ranges', [
    ['a', u8], ['b', u16], ['c', u32], ['d', u64], ['e', s32], ['f', s64], ['p', pointer('anything')], ['raw', bytes(4)], ['s', cstring(8)],
  ]);
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['u8 256', { a: 256 }, /ranges\.a: 256 does not fit in u8/],
    ['u8 -1', { a: -1 }, /ranges\.a: -1 does not fit in u8/],
    ['u16 65536', { b: 65536 }, /ranges\.b: 65536 does not fit in u16/],
    ['u32 2^32', { c: 2 ** 32 }, /ranges\.c: 4294967296 does not fit in u32/],
    ['u32 -1', { c: -1 }, /ranges\.c: -1 does not fit in u32/],
    ['u32 1.5', { c: 1.5 }, /ranges\.c: expected an integer, got 1\.5/],
    ['u32 as bigint', { c: 1n }, /ranges\.c: expected an integer/],
    ['u32 as string', { c: '1' }, /ranges\.c: expected an integer/],
    ['u64 2^64', { d: 1n << 64n }, /ranges\.d: 18446744073709551616 does not fit in u64/],
    ['u64 -1', { d: -1n }, /ranges\.d: -1 does not fit in u64/],
    ['u64 1.5', { d: 1.5 }, /ranges\.d: expected a bigint or a safe integer, got 1\.5/],
    ['u64 string', { d: '5' }, /ranges\.d: expected a bigint or a safe integer, got string/],
    ['s32 2^31', { e: 2 ** 31 }, /ranges\.e: 2147483648 does not fit in s32/],
    ['s32 -2^31-1', { e: -(2 ** 31) - 1 }, /ranges\.e: -2147483649 does not fit in s32/],
    ['s64 2^63', { f: 1n << 63n }, /ranges\.f: 9223372036854775808 does not fit in s64/],
    ['pointer -1', { p: -1n }, /ranges\.p: -1 does not fit in u64/],
    ['bytes too long', { raw: Buffer.alloc(5) }, /ranges\.raw: 5 bytes do not fit in 4/],
    ['bytes as string', { raw: 'abcd' }, /ranges\.raw: expected bytes/],
    ['cstring filling the whole array (no NUL left)', { s: '12345678' }, /ranges\.s: "12345678" is longer than 7 bytes/],
    ['cstring counted in UTF-8 bytes', { s: 'ééé€' }, /ranges\.s: .* is longer than 7 bytes/],
    ['cstring as number', { s: 5 }, /ranges\.s: expected a string/],
    ['unknown field', { nope: 1 }, /struct ranges has no field nope/],
  ];

  it.each(bad)('%s', (_label, values, message) => {
    expect(() => all.encode(values as never)).toThrow(LayoutError);
    expect(() => all.encode(values as never)).toThrow(message);
  });

  it('accepts the extremes of every type', () => {
    const buf = all.encode({ a: 255, b: 65535, c: 2 ** 32 - 1, d: (1n << 64n) - 1n, e: -(2 ** 31), f: -(1n << 63n), p: (1n << 64n) - 1n, raw: Buffer.from(h('de ad be ef')), s: '1234567' });
    expect(buf.toString('hex')).toBe(bytesOf(
      h('ff'), z(1), h('ff ff'), h('ff ff ff ff'),
      h('ff ff ff ff ff ff ff ff'),
      h('00 00 00 80'), z(4),
      h('00 00 00 00 00 00 00 80'),
      h('ff ff ff ff ff ff ff ff'),
      h('de ad be ef'), ascii('1234567', 8), z(4),
    ).toString('hex'));
    expect(all.decode(buf)).toEqual({ a: 255, b: 65535, c: 2 ** 32 - 1, d: (1n << 64n) - 1n, e: -(2 ** 31), f: -(1n << 63n), p: (1n << 64n) - 1n, raw: Buffer.from(h('de ad be ef')), s: '1234567' });
  });

  it('u64 accepts a safe JS integer', () => {
    expect(blksnap_sectors.encode({ offset: 4096, count: 1 } as never).toString('hex')).toBe(bytesOf(h('00 10 00 00 00 00 00 00'), h('01 00 00 00 00 00 00 00')).toString('hex'));
  });

  it('a cstring shorter than its array is NUL-padded over old contents', () => {
    const buf = Buffer.alloc(36, 0x41);
    blksnap_snapshotinfo.encodeInto(buf, { image: 'ab' });
    expect(buf.toString('hex')).toBe(bytesOf(h('41 41 41 41'), h('61 62'), z(30)).toString('hex'));
  });

  it('decodes a cstring that fills its array without a NUL', () => {
    const raw = bytesOf(z(4), new Array(32).fill(0x78));
    expect(blksnap_snapshotinfo.decode(raw).image).toBe('x'.repeat(32));
  });

  it('refuses buffers too short to hold the struct', () => {
    expect(() => blksnap_cbtinfo.decode(Buffer.alloc(39))).toThrow(/struct blksnap_cbtinfo: needs 40 bytes/);
    expect(() => blksnap_cbtinfo.decode(Buffer.alloc(40), 1)).toThrow(LayoutError);
    expect(() => blksnap_cbtinfo.encodeInto(Buffer.alloc(40), {}, 1)).toThrow(/needs 40 bytes at 1/);
  });

  it('a struct declared with a wrong expected size fails at declaration', () => {
    expect(() => struct('oops', [['a', u32], ['b', u64]], { size: 12 })).toThrow(/struct oops: computed size 16, expected 12/);
  });
});

describe('nested structs', () => {
  it('encodes a nested uuid at its offset', () => {
    const buf = blksnap_cbtinfo.encode({ generation_id: uuidValue() });
    expect(buf.toString('hex')).toBe(bytesOf(z(16), h(UUID_HEX), z(8)).toString('hex'));
  });

  it('reports errors inside the nested struct by its own name', () => {
    expect(() => blksnap_cbtinfo.encode({ generation_id: { b: Buffer.alloc(17) } })).toThrow(/blksnap_uuid\.b: 17 bytes do not fit in 16/);
    expect(() => blksnap_cbtinfo.encode({ generation_id: { x: 1 } as never })).toThrow(/struct blksnap_uuid has no field x/);
  });

  it('refuses a value that is not an object of fields', () => {
    expect(() => blksnap_cbtinfo.encode({ generation_id: Buffer.alloc(16) as never })).toThrow(/blksnap_cbtinfo\.generation_id: expected the fields of struct blksnap_uuid/);
    expect(() => blksnap_cbtinfo.encode({ generation_id: null as never })).toThrow(LayoutError);
  });

  it('aligns a struct containing a nested struct to the strictest member of both', () => {
    const inner = struct<{ x: number; y: bigint }>('inner', [['x', u8], ['y', u64]]);
    const outer = struct<{ a: number; i: { x: number; y: bigint }; b: number }>('outer', [['a', u8], ['i', nested(inner)], ['b', u8]]);
    expect([inner.size, inner.align]).toEqual([16, 8]);
    expect(outer.fields.map((f) => [f.name, f.offset])).toEqual([['a', 0], ['i', 8], ['b', 24]]);
    expect([outer.size, outer.align]).toEqual([32, 8]);
    expect(outer.encode({ a: 1, i: { x: 2, y: 3n }, b: 4 }).toString('hex')).toBe(bytesOf(
      h('01'), z(7), h('02'), z(7), h('03 00 00 00 00 00 00 00'), h('04'), z(7),
    ).toString('hex'));
  });
});

describe('arrays', () => {
  it('encodes blksnap_sectors[] back to back', () => {
    const buf = encodeArray(blksnap_sectors, [{ offset: 0n, count: 8n }, { offset: 1024n, count: 1n }]);
    expect(buf.toString('hex')).toBe(bytesOf(
      z(8), h('08 00 00 00 00 00 00 00'),
      h('00 04 00 00 00 00 00 00'), h('01 00 00 00 00 00 00 00'),
    ).toString('hex'));
    expect(decodeArray(blksnap_sectors, buf, 2)).toEqual([{ offset: 0n, count: 8n }, { offset: 1024n, count: 1n }]);
  });

  it('decodes uuid[count] as COLLECT returns them', () => {
    const raw = bytesOf(h(UUID_HEX), new Array(16).fill(0xff), new Array(16).fill(0x11));
    expect(decodeArray(blksnap_uuid, raw, 3).map((u) => u.b.toString('hex'))).toEqual([
      '000102030405060708090a0b0c0d0e0f', 'ff'.repeat(16), '11'.repeat(16),
    ]);
  });

  it('an empty array is an empty buffer; decoding past the end fails', () => {
    expect(encodeArray(blksnap_uuid, []).length).toBe(0);
    expect(decodeArray(blksnap_uuid, Buffer.alloc(0), 0)).toEqual([]);
    expect(() => decodeArray(blksnap_uuid, Buffer.alloc(31), 2)).toThrow(LayoutError);
  });

  it('an error in one element names the struct', () => {
    expect(() => encodeArray(blksnap_sectors, [{ offset: 0n, count: -1n }])).toThrow(/blksnap_sectors\.count: -1 does not fit in u64/);
  });
});

describe('field()', () => {
  it('finds a field by name, and fails for an unknown one', () => {
    expect(blksnap_cbtinfo.field('changes_number')).toMatchObject({ offset: 32, size: 1 });
    expect(() => blksnap_cbtinfo.field('nope' as never)).toThrow(/struct blksnap_cbtinfo has no field nope/);
  });
});
