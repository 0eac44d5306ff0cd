/**
 * bin/code-cache.js, the V8 code cache the launcher compiles dist/ and
 * node_modules/ from: built at packaging time, written lazily only in a
 * source checkout, and never able to break the CLI (stale, corrupt, foreign
 * or unwritable caches just mean compiling from source). Each test runs the
 * launcher from a scratch copy of the application tree, so the checkout's
 * own cache (used by the other tests) is not touched.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT } from '../unit/cli-harness';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const codeCache = require(path.join(ROOT, 'bin', 'code-cache.js')) as {
  readCache(file: string): Map<string, { hash: string; data: Buffer }>;
  cacheFileOf(root: string): string;
};

let tmp: string;
let app: string;
let env: NodeJS.ProcessEnv;

function copyJs(from: string, to: string): void {
  for (const ent of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, ent.name);
    if (ent.isDirectory()) copyJs(src, path.join(to, ent.name));
    else if (ent.name.endsWith('.js')) {
      fs.mkdirSync(to, { recursive: true });
      fs.copyFileSync(src, path.join(to, ent.name));
    }
  }
}

/** An application tree laid out like the Debian package's (no tsconfig.json: an installed tree). */
function makeApp(dir: string): string {
  const root = path.join(dir, 'app');
  for (const sub of ['lib', 'ioctl-defs']) copyJs(path.join(ROOT, 'dist', sub), path.join(root, 'dist', sub));
  fs.mkdirSync(path.join(root, 'bin'));
  for (const f of ['blksnap', 'code-cache.js']) fs.copyFileSync(path.join(ROOT, 'bin', f), path.join(root, 'bin', f));
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(root, 'package.json'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  return root;
}

function blksnap(argv: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(app, 'bin', 'blksnap'), ...argv], { env, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function buildCache(): void {
  const r = spawnSync(process.execPath, [path.join(app, 'bin', 'code-cache.js'), app], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`code-cache.js exited ${r.status}: ${r.stderr}`);
  expect(r.stdout.trim()).toBe(codeCache.cacheFileOf(app));
}

let reference: { code: number | null; stdout: string; stderr: string };

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-code-cache-test-'));
  app = makeApp(tmp);
  env = {
    ...process.env,
    BLKSNAP_KERNEL: 'sim',
    BLKSNAP_SIM_DIR: path.join(tmp, 'sim'),
    BLKSNAP_RUN_DIR: path.join(tmp, 'run'),
    BLKSNAP_CONFIG: path.join(tmp, 'none.conf'),
    BLKSNAP_SIM_FLAVOUR: 'upstream',
  };
  reference = blksnap(['version']);
  expect(reference.code).toBe(0);
  expect(reference.stdout).toMatch(/^blksnap \d+\.\d+\.\d+\nkernel: simulated upstream/);
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  fs.rmSync(path.join(app, 'tsconfig.json'), { force: true });
  fs.rmSync(path.join(app, 'dist', 'v8-code-cache'), { recursive: true, force: true });
});

test('an installed tree is never written at run time; the build step writes a cache the CLI then uses', () => {
  expect(blksnap(['version'])).toEqual(reference);
  expect(fs.existsSync(path.join(app, 'dist', 'v8-code-cache'))).toBe(false);
  buildCache();
  const entries = codeCache.readCache(codeCache.cacheFileOf(app));
  expect(entries.has(path.join('dist', 'lib', 'cli', 'main.js'))).toBe(true);
  expect(entries.has(path.join('dist', 'lib', 'cli', 'commands', 'version.js'))).toBe(true);
  expect(blksnap(['version'])).toEqual(reference);
  expect(blksnap(['--json', 'version']).code).toBe(0);
  const bad = blksnap(['no-such-command']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/no-such-command/);
});

test('a source checkout (tsconfig.json) writes the cache lazily, once', () => {
  fs.writeFileSync(path.join(app, 'tsconfig.json'), '{}\n');
  expect(blksnap(['version'])).toEqual(reference);
  const file = codeCache.cacheFileOf(app);
  expect(codeCache.readCache(file).size).toBeGreaterThan(10);
  const before = fs.statSync(file);
  expect(blksnap(['version'])).toEqual(reference);
  const after = fs.statSync(file);
  expect(after.ino).toBe(before.ino); // valid for everything it loaded: not rewritten
});

test('a stale entry (the module changed, same length) is not used: the new code runs', () => {
  buildCache();
  const versionJs = path.join(app, 'dist', 'lib', 'cli', 'commands', 'version.js');
  const original = fs.readFileSync(versionJs, 'utf8');
  expect(original).toContain('`kernel: ');
  try {
    // Same length on purpose: V8's own check of cached data compares only the source length.
    fs.writeFileSync(versionJs, original.replace('`kernel: ', '`KERNEL: '));
    const r = blksnap(['version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\nKERNEL: simulated upstream/);
  } finally {
    fs.writeFileSync(versionJs, original);
  }
});

test('corrupt caches are ignored: truncated, garbage, flipped data bytes, another V8, a bad header', () => {
  buildCache();
  const file = codeCache.cacheFileOf(app);
  const good = fs.readFileSync(file);
  const headerLength = good.readUInt32LE(0);
  const flipped = Buffer.from(good);
  for (let i = 4 + headerLength + 100; i < flipped.length; i += 997) flipped[i] ^= 0xff;
  const header = JSON.parse(good.toString('utf8', 4, 4 + headerLength)) as { v8: string };
  const foreignHeader = Buffer.from(JSON.stringify({ ...header, v8: '0.0.0.0' }));
  const lengthOf = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n, 0); return b; };
  const variants: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['truncated header', good.subarray(0, 40)],
    ['truncated data', good.subarray(0, good.length - 5000)],
    ['garbage', Buffer.from('not a cache at all, but long enough to have a length word')],
    ['huge header length', Buffer.concat([lengthOf(0xffffffff), good.subarray(4)])],
    ['flipped data bytes', flipped],
    ['another V8', Buffer.concat([lengthOf(foreignHeader.length), foreignHeader, good.subarray(4 + headerLength)])],
  ];
  for (const [name, bytes] of variants) {
    fs.writeFileSync(file, bytes);
    const r = blksnap(['version']);
    expect({ name, ...r }).toEqual({ name, ...reference });
  }
});

test('the cache path is a directory or unreadable: the CLI still runs', () => {
  const file = codeCache.cacheFileOf(app);
  fs.mkdirSync(file, { recursive: true });
  expect(blksnap(['version'])).toEqual(reference);
  fs.writeFileSync(path.join(app, 'tsconfig.json'), '{}\n'); // a checkout that cannot write its cache
  expect(blksnap(['version'])).toEqual(reference);
});
