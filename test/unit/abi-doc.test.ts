/**
 * Every ioctl number, size and direction and every struct size, alignment,
 * field offset and field size of both flavours, as `abiReport()` (= `blksnap
 * debug abi --json`) states them, against the values transcribed by hand from
 * blksnap-abi.md (./abi-doc-table.ts). The last block shows the comparison
 * fails for a definition with one field type changed.
 */
import {
  blkfilter_ctl,
  blksnap_cbtinfo,
  flavours,
  ioctl,
  struct,
  u64,
  type FieldType,
  type IoctlDef,
  type StructDef,
} from '../../ioctl-defs';
import { abiReport, ioctlReport, structReport, structsInDependencyOrder, type AbiSection } from '../../ioctl-defs/report';
import { DOC, type DocSection } from './abi-doc-table';

/** Every difference between a report section and the doc table, one line each. */
function docMismatches(section: AbiSection, doc: DocSection): string[] {
  const out: string[] = [];
  const ioctlNames = section.ioctls.map((i) => i.name);
  for (const name of Object.keys(doc.ioctls)) if (!ioctlNames.includes(name)) out.push(`${name}: in the doc, not defined`);
  for (const i of section.ioctls) {
    const d = doc.ioctls[i.name];
    if (!d) { out.push(`${i.name}: defined, not in the doc`); continue; }
    if (i.hex !== d.hex) out.push(`${i.name}: number ${i.hex}, doc ${d.hex}`);
    if (i.number !== Number.parseInt(d.hex, 16)) out.push(`${i.name}: number ${i.number}, doc ${Number.parseInt(d.hex, 16)}`);
    if (i.size !== d.size) out.push(`${i.name}: size ${i.size}, doc ${d.size}`);
    if (i.dir !== d.dir) out.push(`${i.name}: ${i.dir}, doc ${d.dir}`);
    if (i.arg !== d.arg) out.push(`${i.name}: argument ${i.arg}, doc ${d.arg}`);
  }
  const structNames = section.structs.map((s) => s.name);
  for (const name of Object.keys(doc.structs)) if (!structNames.includes(name)) out.push(`${name}: in the doc, not defined`);
  for (const s of section.structs) {
    const d = doc.structs[s.name];
    if (!d) { out.push(`${s.name}: defined, not in the doc`); continue; }
    if (s.size !== d.size) out.push(`${s.name}: size ${s.size}, doc ${d.size}`);
    if (d.align !== undefined && s.align !== d.align) out.push(`${s.name}: align ${s.align}, doc ${d.align}`);
    const fieldNames = s.fields.map((f) => f.name);
    for (const name of Object.keys(d.fields)) if (!fieldNames.includes(name)) out.push(`${s.name}.${name}: in the doc, not defined`);
    for (const f of s.fields) {
      const df = d.fields[f.name];
      if (!df) { out.push(`${s.name}.${f.name}: defined, not in the doc`); continue; }
      if (f.offset !== df[0]) out.push(`${s.name}.${f.name}: offset ${f.offset}, doc ${df[0]}`);
      if (f.size !== df[1]) out.push(`${s.name}.${f.name}: size ${f.size}, doc ${df[1]}`);
    }
  }
  return out;
}

const report = abiReport();

describe.each(['upstream', 'standalone'] as const)('%s flavour matches blksnap-abi.md', (flavour) => {
  const section = report.flavours[flavour];
  const doc = DOC[flavour];

  it('has exactly the doc\'s ioctls and structs, with the doc\'s numbers, sizes and offsets', () => {
    expect(docMismatches(section, doc)).toEqual([]);
  });

  it.each(Object.entries(doc.ioctls))('%s', (name, d) => {
    const i = section.ioctls.find((x) => x.name === name);
    expect(i).toMatchObject({ hex: d.hex, number: Number.parseInt(d.hex, 16), size: d.size, dir: d.dir, arg: d.arg });
  });

  it.each(Object.entries(doc.structs))('struct %s', (name, d) => {
    const s = section.structs.find((x) => x.name === name)!;
    expect(s).toBeDefined();
    expect(s.size).toBe(d.size);
    if (d.align !== undefined) expect(s.align).toBe(d.align);
    expect(Object.fromEntries(s.fields.map((f) => [f.name, [f.offset, f.size]]))).toEqual(d.fields);
  });
});

describe('generic Linux ioctls match <linux/fs.h>, <linux/blkpg.h> and <linux/fiemap.h>', () => {
  it('BLKGETSIZE64, BLKSSZGET, BLKPG, FIFREEZE, FITHAW, FS_IOC_*FLAGS, FS_IOC_FIEMAP and their structs', () => {
    expect(docMismatches(report.linux, DOC.linux)).toEqual([]);
  });
});

describe('the report is the stable JSON schema of issue 2', () => {
  it('round-trips through JSON unchanged (numbers stay numbers, no bigint)', () => {
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('has the issue\'s keys on every ioctl, struct and field', () => {
    for (const flavour of ['upstream', 'standalone'] as const) {
      for (const i of report.flavours[flavour].ioctls) {
        expect(Object.keys(i)).toEqual(expect.arrayContaining(['name', 'number', 'size', 'dir', 'hex']));
        expect(typeof i.number).toBe('number');
      }
      for (const s of report.flavours[flavour].structs) {
        expect(Object.keys(s)).toEqual(expect.arrayContaining(['name', 'size', 'align', 'fields']));
        for (const f of s.fields) expect(Object.keys(f)).toEqual(expect.arrayContaining(['name', 'offset', 'size']));
      }
    }
  });

  it('uses the kernel\'s names and marks user-pointer fields', () => {
    const up = report.flavours.upstream;
    expect(up.ioctls.map((i) => i.name)).toContain('BLKFILTER_CTL');
    expect(up.ioctls.map((i) => i.name)).toContain('IOCTL_BLKSNAP_SNAPSHOT_CREATE');
    const cbtinfo = up.structs.find((s) => s.name === 'blksnap_cbtinfo')!;
    expect(cbtinfo.fields.find((f) => f.name === 'changes_number')).toMatchObject({ offset: 32, size: 1, type: '__u8', pointsTo: null });
    expect(cbtinfo.fields.find((f) => f.name === 'generation_id')).toMatchObject({ type: 'struct blksnap_uuid' });
    expect(cbtinfo.padding).toEqual([{ offset: 33, size: 7 }]);
    const create = up.structs.find((s) => s.name === 'blksnap_snapshot_create')!;
    expect(create.fields.find((f) => f.name === 'diff_storage_filename')!.pointsTo).toMatch(/path/);
    expect(report.flavours.standalone.filterDevice).toBe('/dev/bdevfilter');
    expect(up.filterDevice).toBeNull();
  });

  it('lists a nested struct before the struct that uses it', () => {
    for (const flavour of ['upstream', 'standalone'] as const) {
      const names = report.flavours[flavour].structs.map((s) => s.name);
      expect(names.indexOf('blksnap_uuid')).toBeLessThan(names.indexOf('blksnap_cbtinfo'));
      expect(new Set(names).size).toBe(names.length);
    }
  });
});

// ---- the comparison can fail -----------------------------------------------

/** The same struct declared with one field's type changed (a consistent, "typo" definition). */
function withFieldType(def: StructDef<any>, field: string, type: FieldType): StructDef<any> {
  return struct(def.name, def.fields.map((f) => [f.name, f.name === field ? type : f.type] as const));
}

function sectionWith(defs: readonly IoctlDef[], structs: readonly StructDef<any>[]): AbiSection {
  return { ioctls: defs.map(ioctlReport), structs: structsInDependencyOrder([...structs, ...defs.map((d) => d.arg)]).map(structReport) };
}

describe('a definition with one field type changed fails the comparison', () => {
  it('blksnap_cbtinfo.block_size u32 → u64: the offsets after it (the size stays 40 by tail padding)', () => {
    const mutated = withFieldType(blksnap_cbtinfo, 'block_size', u64);
    const up = flavours.upstream;
    const section = sectionWith(up.ioctls, up.structs.map((s) => (s.name === 'blksnap_cbtinfo' ? mutated : s)));
    expect(docMismatches(section, DOC.upstream)).toEqual([
      'blksnap_cbtinfo.block_size: size 8, doc 4',
      'blksnap_cbtinfo.block_count: offset 16, doc 12',
      'blksnap_cbtinfo.generation_id: offset 20, doc 16',
      'blksnap_cbtinfo.changes_number: offset 36, doc 32',
    ]);
  });

  it('blkfilter_ctl.cmd u32 → u64: the struct and the BLKFILTER_CTL number', () => {
    const mutated = withFieldType(blkfilter_ctl, 'cmd', u64);
    const up = flavours.upstream;
    const ctl = ioctl('BLKFILTER_CTL', 'readwrite', 0x12, 144, mutated);
    const section = sectionWith(up.ioctls.map((i) => (i.name === 'BLKFILTER_CTL' ? ctl : i)), up.structs.map((s) => (s.name === 'blkfilter_ctl' ? mutated : s)));
    expect(docMismatches(section, DOC.upstream)).toEqual([
      'BLKFILTER_CTL: number 0xc0381290, doc 0xc0301290',
      `BLKFILTER_CTL: number ${0xc0381290}, doc ${0xc0301290}`,
      'BLKFILTER_CTL: size 56, doc 48',
      'blkfilter_ctl: size 56, doc 48',
      'blkfilter_ctl.cmd: size 8, doc 4',
      'blkfilter_ctl.optlen: offset 40, doc 36',
      'blkfilter_ctl.opt: offset 48, doc 40',
    ]);
  });

  it('a field type change that keeps every offset is still caught by the field size', () => {
    const collect = flavours.upstream.structs.find((s) => s.name === 'blksnap_snapshot_collect')!;
    const mutated = withFieldType(collect, 'count', u64);
    expect(mutated.size).toBe(16);
    const up = flavours.upstream;
    const section = sectionWith(up.ioctls.filter((i) => i.arg !== collect), up.structs.map((s) => (s === collect ? mutated : s)));
    expect(docMismatches(section, DOC.upstream)).toEqual([
      'IOCTL_BLKSNAP_SNAPSHOT_COLLECT: in the doc, not defined',
      'blksnap_snapshot_collect.count: size 8, doc 4',
    ]);
  });
});
