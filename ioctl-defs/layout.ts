/**
 * The struct layout language for the kernel ABI.
 *
 * A struct is declared as an ordered list of (name, type). Offsets, padding,
 * alignment and size follow the C rules of the x86_64/arm64 Linux ABI (every
 * scalar is aligned to its own size, a struct to its strictest member, and the
 * size is rounded up to that alignment), so the same list yields the kernel's
 * layout; test/unit/abi-gcc.test.ts proves it against gcc. Encoders and
 * decoders are derived from the list: nothing else in the project computes an
 * offset by hand.
 *
 * Integers are little-endian (blksnap-abi.md: x86_64/arm64). 64-bit fields are
 * bigint in JS; pointer fields hold the user-space address of a buffer.
 */

export type IntKind = 'u8' | 'u16' | 'u32' | 'u64' | 's32' | 's64';

export type FieldType =
  | { readonly kind: 'int'; readonly int: IntKind }
  | { readonly kind: 'pointer'; readonly target: string }
  | { readonly kind: 'bytes'; readonly length: number }
  | { readonly kind: 'cstring'; readonly length: number }
  | { readonly kind: 'struct'; readonly struct: StructDef<any> };

export interface FieldDef {
  readonly name: string;
  readonly type: FieldType;
  readonly offset: number;
  readonly size: number;
  readonly align: number;
}

/** A gap the C compiler inserts (between fields or at the tail). */
export interface PaddingDef {
  readonly offset: number;
  readonly size: number;
}

export interface StructDef<T> {
  /** The kernel's name, e.g. `blksnap_cbtinfo`. */
  readonly name: string;
  readonly size: number;
  readonly align: number;
  readonly fields: readonly FieldDef[];
  readonly padding: readonly PaddingDef[];
  /** A zero-filled buffer of `size` bytes with the given fields set. */
  encode(values: Partial<T>): Buffer;
  /** Writes the given fields into `buf` at `at` (other bytes untouched). */
  encodeInto(buf: Uint8Array, values: Partial<T>, at?: number): void;
  /** Reads every field; `buf` must hold at least `size` bytes from `at`. */
  decode(buf: Uint8Array, at?: number): T;
  field(name: keyof T & string): FieldDef;
}

export class LayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayoutError';
  }
}

const INT_SIZE: Record<IntKind, number> = { u8: 1, u16: 2, u32: 4, u64: 8, s32: 4, s64: 8 };

export const u8: FieldType = { kind: 'int', int: 'u8' };
export const u16: FieldType = { kind: 'int', int: 'u16' };
export const u32: FieldType = { kind: 'int', int: 'u32' };
export const u64: FieldType = { kind: 'int', int: 'u64' };
export const s32: FieldType = { kind: 'int', int: 's32' };
export const s64: FieldType = { kind: 'int', int: 's64' };
/** A `__u64` that carries a user-space address; `target` documents what it points to. */
export const pointer = (target: string): FieldType => ({ kind: 'pointer', target });
/** `__u8 name[length]` holding raw bytes. */
export const bytes = (length: number): FieldType => ({ kind: 'bytes', length });
/** `char name[length]` holding a NUL-padded string. */
export const cstring = (length: number): FieldType => ({ kind: 'cstring', length });
export const nested = (struct: StructDef<any>): FieldType => ({ kind: 'struct', struct });

export function typeSize(t: FieldType): number {
  switch (t.kind) {
    case 'int': return INT_SIZE[t.int];
    case 'pointer': return 8;
    case 'bytes': case 'cstring': return t.length;
    case 'struct': return t.struct.size;
  }
}

export function typeAlign(t: FieldType): number {
  switch (t.kind) {
    case 'int': return INT_SIZE[t.int];
    case 'pointer': return 8;
    case 'bytes': case 'cstring': return 1;
    case 'struct': return t.struct.align;
  }
}

/** The C spelling of a field type, used by the gcc layout test and `debug abi`. */
export function cTypeName(t: FieldType): string {
  switch (t.kind) {
    case 'int': return { u8: '__u8', u16: '__u16', u32: '__u32', u64: '__u64', s32: '__s32', s64: '__s64' }[t.int];
    case 'pointer': return '__u64';
    case 'bytes': return '__u8';
    case 'cstring': return 'char';
    case 'struct': return `struct ${t.struct.name}`;
  }
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

function writeField(buf: Buffer, f: FieldDef, at: number, v: unknown, structName: string): void {
  const o = at + f.offset;
  const where = `${structName}.${f.name}`;
  const t = f.type;
  switch (t.kind) {
    case 'int':
    case 'pointer': {
      const kind: IntKind = t.kind === 'pointer' ? 'u64' : t.int;
      if (kind === 'u64' || kind === 's64') {
        if (typeof v !== 'bigint' && !(typeof v === 'number' && Number.isSafeInteger(v))) {
          throw new LayoutError(`${where}: expected a bigint or a safe integer, got ${typeof v === 'number' ? v : typeof v}`);
        }
        const big = BigInt(v);
        if (kind === 'u64') {
          if (big < 0n || big > 0xffff_ffff_ffff_ffffn) throw new LayoutError(`${where}: ${big} does not fit in u64`);
          buf.writeBigUInt64LE(big, o);
        } else {
          if (big < -(1n << 63n) || big >= 1n << 63n) throw new LayoutError(`${where}: ${big} does not fit in s64`);
          buf.writeBigInt64LE(big, o);
        }
        return;
      }
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new LayoutError(`${where}: expected an integer, got ${String(v)}`);
      switch (kind) {
        case 'u8': if (v < 0 || v > 0xff) break; buf.writeUInt8(v, o); return;
        case 'u16': if (v < 0 || v > 0xffff) break; buf.writeUInt16LE(v, o); return;
        case 'u32': if (v < 0 || v > 0xffff_ffff) break; buf.writeUInt32LE(v, o); return;
        case 's32': if (v < -0x8000_0000 || v > 0x7fff_ffff) break; buf.writeInt32LE(v, o); return;
      }
      throw new LayoutError(`${where}: ${v} does not fit in ${kind}`);
    }
    case 'bytes': {
      if (!(v instanceof Uint8Array)) throw new LayoutError(`${where}: expected bytes`);
      if (v.length > t.length) throw new LayoutError(`${where}: ${v.length} bytes do not fit in ${t.length}`);
      buf.fill(0, o, o + t.length);
      buf.set(v, o);
      return;
    }
    case 'cstring': {
      if (typeof v !== 'string') throw new LayoutError(`${where}: expected a string`);
      const enc = Buffer.from(v, 'utf8');
      // The kernel reads these with strnlen/strscpy over the whole array: keep
      // a terminating NUL so no kernel can read past the name.
      if (enc.length >= t.length) throw new LayoutError(`${where}: "${v}" is longer than ${t.length - 1} bytes`);
      buf.fill(0, o, o + t.length);
      enc.copy(buf, o);
      return;
    }
    case 'struct':
      if (typeof v !== 'object' || v === null || v instanceof Uint8Array) throw new LayoutError(`${where}: expected the fields of struct ${t.struct.name}`);
      t.struct.encodeInto(buf, v as object, o);
      return;
  }
}

function readField(buf: Buffer, f: FieldDef, at: number): unknown {
  const o = at + f.offset;
  const t = f.type;
  switch (t.kind) {
    case 'pointer': return buf.readBigUInt64LE(o);
    case 'int':
      switch (t.int) {
        case 'u8': return buf.readUInt8(o);
        case 'u16': return buf.readUInt16LE(o);
        case 'u32': return buf.readUInt32LE(o);
        case 's32': return buf.readInt32LE(o);
        case 'u64': return buf.readBigUInt64LE(o);
        case 's64': return buf.readBigInt64LE(o);
      }
      break;
    case 'bytes': return Buffer.from(buf.subarray(o, o + t.length));
    case 'cstring': {
      const raw = buf.subarray(o, o + t.length);
      const nul = raw.indexOf(0);
      return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
    }
    case 'struct': return t.struct.decode(buf, o);
  }
  throw new LayoutError(`unreadable field ${f.name}`);
}

const asBuffer = (u: Uint8Array): Buffer =>
  Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * Declares a struct. `spec` lists the fields in declaration order; offsets
 * follow the C rules. `expect` optionally pins the size (a typo in a field
 * list then fails at load time instead of sending a wrong-sized request).
 */
export function struct<T>(name: string, spec: ReadonlyArray<readonly [keyof T & string, FieldType]>, expect?: { size: number }): StructDef<T> {
  const fields: FieldDef[] = [];
  const padding: PaddingDef[] = [];
  let offset = 0;
  let align = 1;
  for (const [fname, type] of spec) {
    const a = typeAlign(type);
    const start = alignUp(offset, a);
    if (start > offset) padding.push({ offset, size: start - offset });
    const size = typeSize(type);
    fields.push({ name: fname, type, offset: start, size, align: a });
    offset = start + size;
    align = Math.max(align, a);
  }
  const size = alignUp(offset, align);
  if (size > offset) padding.push({ offset, size: size - offset });
  if (expect && expect.size !== size) throw new LayoutError(`struct ${name}: computed size ${size}, expected ${expect.size}`);
  const byName = new Map(fields.map((f) => [f.name, f]));

  const def: StructDef<T> = {
    name,
    size,
    align,
    fields,
    padding,
    encode(values) {
      const buf = Buffer.alloc(size);
      def.encodeInto(buf, values, 0);
      return buf;
    },
    encodeInto(target, values, at = 0) {
      const buf = asBuffer(target);
      if (at + size > buf.length) throw new LayoutError(`struct ${name}: needs ${size} bytes at ${at}, buffer has ${buf.length}`);
      for (const key of Object.keys(values) as (keyof T & string)[]) {
        const f = byName.get(key);
        if (!f) throw new LayoutError(`struct ${name} has no field ${key}`);
        const v = (values as Record<string, unknown>)[key];
        if (v === undefined) continue;
        writeField(buf, f, at, v, name);
      }
    },
    decode(source, at = 0) {
      const buf = asBuffer(source);
      if (at + size > buf.length) throw new LayoutError(`struct ${name}: needs ${size} bytes at ${at}, buffer has ${buf.length - at}`);
      const out: Record<string, unknown> = {};
      for (const f of fields) out[f.name] = readField(buf, f, at);
      return out as T;
    },
    field(fname) {
      const f = byName.get(fname);
      if (!f) throw new LayoutError(`struct ${name} has no field ${fname}`);
      return f;
    },
  };
  return def;
}

/** Encodes `items` as a C array `struct def[items.length]`. */
export function encodeArray<T>(def: StructDef<T>, items: readonly Partial<T>[]): Buffer {
  const buf = Buffer.alloc(def.size * items.length);
  items.forEach((item, i) => def.encodeInto(buf, item, i * def.size));
  return buf;
}

/** Decodes a C array `struct def[count]`. */
export function decodeArray<T>(def: StructDef<T>, buf: Uint8Array, count: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < count; i++) out.push(def.decode(buf, i * def.size));
  return out;
}
