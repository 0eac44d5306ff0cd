/**
 * The ABI as the project computes it, as plain JSON-safe data: what
 * `blksnap debug abi [--json]` prints, and the first thing to compare with a
 * kernel's headers when a kernel disagrees.
 *
 * Schema (stable; later versions only add fields, never rename or remove):
 * ```
 * {
 *   "schema": 1,
 *   "arch": "x64",                      // process.arch the layout applies to
 *   "flavours": {
 *     "upstream" | "standalone": {
 *       "controlDevice": "/dev/blksnap-control",
 *       "filterDevice": null | "/dev/bdevfilter",
 *       "ioctls": [{
 *         "name": "BLKFILTER_ATTACH",     // the kernel's macro name
 *         "number": 3224375950,           // JSON number, the full request (unsigned 32-bit)
 *         "hex": "0xc030128e",            // the same, 8 hex digits
 *         "size": 48,                     // size encoded in the number (_IOC_SIZE)
 *         "dir": "_IOWR",                 // the macro: "_IO" | "_IOR" | "_IOW" | "_IOWR"
 *         "type": 18, "typeHex": "0x12", "nr": 142,
 *         "arg": "blkfilter_attach",      // struct the argument points to
 *         "argSize": 48                   // its size (differs from size for _IO requests with an argument)
 *       }],
 *       "structs": [{
 *         "name": "blksnap_cbtinfo", "size": 40, "align": 8,
 *         "fields": [{
 *           "name": "changes_number", "offset": 32, "size": 1, "align": 1,
 *           "type": "__u8",               // C spelling: "__u32", "char[32]", "__u8[16]", "struct blksnap_uuid"
 *           "pointsTo": null              // for a __u64 holding a user pointer: what it points to
 *         }],
 *         "padding": [{ "offset": 33, "size": 7 }]   // gaps the C compiler inserts, tail included
 *       }]
 *     }
 *   },
 *   "linux": { "ioctls": [...], "structs": [...] }  // generic Linux ioctls the tool issues (BLKGETSIZE64, ...)
 * }
 * ```
 * `number` stays a JSON number (numbers stay numbers in JSON); `hex` is the
 * form to compare with a header or an strace line. Ioctls are listed in the
 * order of blksnap-abi.md's tables, structs in dependency order (a nested
 * struct before its user).
 */
import { cTypeName, type FieldType, type StructDef } from './layout';
import { hex, type IocDirection, type IoctlDef } from './ioc';
import { flavours, type FlavourAbi, type FlavourName } from './index';
import { linuxIoctls, linuxStructs } from './linux';

export type IocMacro = '_IO' | '_IOR' | '_IOW' | '_IOWR';

export interface IoctlReport {
  name: string;
  number: number;
  hex: string;
  size: number;
  dir: IocMacro;
  type: number;
  typeHex: string;
  nr: number;
  arg: string;
  argSize: number;
}

export interface FieldReport {
  name: string;
  offset: number;
  size: number;
  align: number;
  type: string;
  pointsTo: string | null;
}

export interface StructReport {
  name: string;
  size: number;
  align: number;
  fields: FieldReport[];
  padding: { offset: number; size: number }[];
}

export interface AbiSection {
  ioctls: IoctlReport[];
  structs: StructReport[];
}

export interface FlavourReport extends AbiSection {
  controlDevice: string;
  filterDevice: string | null;
}

export interface AbiReport {
  schema: 1;
  arch: string;
  flavours: Record<FlavourName, FlavourReport>;
  linux: AbiSection;
}

const MACRO: Record<IocDirection, IocMacro> = { none: '_IO', read: '_IOR', write: '_IOW', readwrite: '_IOWR' };

/** The `_IO*` macro a request is declared with in C. */
export function iocMacro(dir: IocDirection): IocMacro {
  return MACRO[dir];
}

/** C spelling of a field's type, arrays written `elem[n]` (`char[32]`, `__u8[16]`). */
export function cFieldType(t: FieldType): string {
  return t.kind === 'bytes' || t.kind === 'cstring' ? `${cTypeName(t)}[${t.length}]` : cTypeName(t);
}

export function ioctlReport(def: IoctlDef): IoctlReport {
  return {
    name: def.name,
    number: def.number,
    hex: hex(def.number),
    size: def.size,
    dir: iocMacro(def.dir),
    type: def.type,
    typeHex: '0x' + def.type.toString(16).padStart(2, '0'),
    nr: def.nr,
    arg: def.arg.name,
    argSize: def.arg.size,
  };
}

export function structReport(def: StructDef<any>): StructReport {
  return {
    name: def.name,
    size: def.size,
    align: def.align,
    fields: def.fields.map((f) => ({
      name: f.name,
      offset: f.offset,
      size: f.size,
      align: f.align,
      type: cFieldType(f.type),
      pointsTo: f.type.kind === 'pointer' ? f.type.target : null,
    })),
    padding: def.padding.map((p) => ({ offset: p.offset, size: p.size })),
  };
}

/**
 * Every struct reachable from `roots` (argument structs and nested ones),
 * each once, a nested struct before the struct that contains it.
 */
export function structsInDependencyOrder(roots: readonly StructDef<any>[]): StructDef<any>[] {
  const out: StructDef<any>[] = [];
  const seen = new Set<string>();
  const visit = (def: StructDef<any>): void => {
    if (seen.has(def.name)) return;
    seen.add(def.name);
    for (const f of def.fields) if (f.type.kind === 'struct') visit(f.type.struct);
    out.push(def);
  };
  roots.forEach(visit);
  return out;
}

function sectionOf(ioctls: readonly IoctlDef[], structs: readonly StructDef<any>[]): AbiSection {
  return {
    ioctls: ioctls.map(ioctlReport),
    structs: structsInDependencyOrder([...structs, ...ioctls.map((i) => i.arg)]).map(structReport),
  };
}

function flavourReport(abi: FlavourAbi): FlavourReport {
  return { controlDevice: abi.controlDevice, filterDevice: abi.filterDevice, ...sectionOf(abi.ioctls, abi.structs) };
}

export function abiReport(): AbiReport {
  return {
    schema: 1,
    arch: process.arch,
    flavours: { upstream: flavourReport(flavours.upstream), standalone: flavourReport(flavours.standalone) },
    linux: sectionOf(linuxIoctls, linuxStructs),
  };
}
