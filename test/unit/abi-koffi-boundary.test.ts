/**
 * lib/ioctl/native.ts is the only file that loads koffi (issue 2: "nothing
 * under lib/ outside lib/ioctl/ imports koffi"; house style: the untyped
 * native module is loaded in one file). Scans the project's sources,
 * including tests, scripts and the launcher.
 */
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '../..');
const SCANNED = ['lib', 'ioctl-defs', 'bin', 'scripts', 'test'];
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', 'coverage']);
const SOURCE = /\.(ts|js|cjs|mjs)$/;
const ALLOWED = new Set(['lib/ioctl/native.ts']);

// Written in pieces so this file does not match itself.
const K = 'koffi';
const IMPORT_PATTERNS: RegExp[] = [
  new RegExp(`\\bfrom\\s*['"]${K}(/[^'"]*)?['"]`),
  new RegExp(`\\brequire\\s*\\(\\s*['"]${K}(/[^'"]*)?['"]\\s*\\)`),
  new RegExp(`\\bimport\\s*\\(\\s*['"]${K}(/[^'"]*)?['"]\\s*\\)`),
  new RegExp(`\\bimport\\s*['"]${K}(/[^'"]*)?['"]`),
];

function sourceFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (SKIP_DIRS.has(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(full));
    // bin/blksnap has no extension: scan files without one too.
    else if (entry.isFile() && (SOURCE.test(entry.name) || !entry.name.includes('.'))) out.push(full);
  }
  return out;
}

/** `file:line: text` for every koffi import in `text`. */
function koffiImports(file: string, text: string): string[] {
  return text.split('\n').flatMap((line, i) => (IMPORT_PATTERNS.some((p) => p.test(line)) ? [`${file}:${i + 1}: ${line.trim()}`] : []));
}

function scan(): { file: string; hits: string[] }[] {
  return SCANNED.flatMap((d) => sourceFiles(path.join(ROOT, d))).map((full) => {
    const file = path.relative(ROOT, full);
    return { file, hits: koffiImports(file, fs.readFileSync(full, 'utf8')) };
  });
}

describe('koffi is imported only by lib/ioctl/native.ts', () => {
  const results = scan();

  it('scans the tree (lib/ioctl/native.ts among the files)', () => {
    expect(results.map((r) => r.file)).toContain('lib/ioctl/native.ts');
    expect(results.length).toBeGreaterThan(10);
  });

  it('finds the one allowed import (the scanner sees real imports)', () => {
    expect(results.find((r) => r.file === 'lib/ioctl/native.ts')!.hits.length).toBeGreaterThan(0);
  });

  it('finds no import anywhere else', () => {
    expect(results.filter((r) => !ALLOWED.has(r.file)).flatMap((r) => r.hits)).toEqual([]);
  });

  it('recognises every import form', () => {
    const samples = [
      `import koffi from '${K}';`,
      `import * as ffi from "${K}";`,
      `import type { IKoffiLib } from '${K}';`,
      `const k = require('${K}');`,
      `const k = require( "${K}/indirect" );`,
      `const k = await import('${K}');`,
      `import '${K}';`,
    ];
    for (const s of samples) expect({ s, hits: koffiImports('x.ts', s).length }).toEqual({ s, hits: 1 });
    expect(koffiImports('x.ts', `// the word ${K} in a comment, ${K}.address`)).toEqual([]);
  });
});
