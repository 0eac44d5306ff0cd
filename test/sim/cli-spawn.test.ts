/**
 * The CLI as users run it: `node bin/blksnap` spawned (build first with
 * `npx tsc -p .`), on the simulated kernel. A representative set; the bulk of
 * the command coverage runs in-process in cli-commands.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnCli, spawnProcess, ROOT, CliResult } from '../unit/cli-harness';
import { spawn } from 'child_process';

const MiB = 1024 * 1024;
let tmp: string;
let env: NodeJS.ProcessEnv;
let diskA: string;
let diskB: string;
let store: string;

async function ok(argv: string[]): Promise<CliResult> {
  const r = await spawnCli(argv, { env });
  if (r.code !== 0) throw new Error(`blksnap ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-cli-spawn-'));
  store = path.join(tmp, 'store');
  fs.mkdirSync(store);
  env = {
    ...process.env,
    BLKSNAP_KERNEL: 'sim',
    BLKSNAP_SIM_DIR: path.join(tmp, 'sim'),
    BLKSNAP_RUN_DIR: path.join(tmp, 'run'),
    BLKSNAP_CONFIG: path.join(tmp, 'none.conf'),
    BLKSNAP_SIM_FLAVOUR: 'upstream',
    PATH: `${path.join(ROOT, 'bin')}:${process.env.PATH}`,
  };
  diskA = path.join(tmp, 'a.img');
  diskB = path.join(tmp, 'b.img');
  await ok(['sim', 'create-device', diskA, '16M']);
  await ok(['sim', 'create-device', diskB, '8M']);
  await ok(['sim', 'write', diskA, '0', '--pattern', '65', '--length', '1M']);
  await ok(['sim', 'write', diskB, '4K', '--data', 'device B data']);
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('--version prints only the tool version; version --kernel sim probes the module', async () => {
  const v = await spawnCli(['--version'], { env });
  expect(v.code).toBe(0);
  expect(v.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  const r = await spawnCli(['version', '--kernel', 'sim'], { env });
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^blksnap \d+\.\d+\.\d+\nkernel: simulated upstream/);
});

test('no module on this machine: version prints the tool version and exits 3', async () => {
  if (fs.existsSync('/dev/blksnap-control') || fs.existsSync('/dev/veeamblksnap')) return; // a real module answers here
  const r = await spawnCli(['version', '--kernel', 'auto'], { env: { ...env, BLKSNAP_KERNEL: '' } });
  expect(r.code).toBe(3);
  expect(r.stdout).toMatch(/^blksnap \d+\.\d+\.\d+\n$/);
  expect(r.stderr.split('\n')[0]).toMatch(/^blksnap: blksnap kernel module is not loaded/);
});

test('usage error: one line naming the value, a hint, exit 2, no stack', async () => {
  const r = await spawnCli(['snapshot', 'create', diskA, '--limit', '-5G'], { env });
  expect(r.code).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[0]).toContain('"-5G"');
  expect(lines[1]).toMatch(/^hint: /);
});

test('--json error object on stderr', async () => {
  const r = await spawnCli(['snapshot', 'info', diskA, '--json'], { env });
  expect(r.code).toBe(5);
  expect(r.stdout).toBe('');
  const e = JSON.parse(r.stderr.trim()).error;
  expect(Object.keys(e)).toEqual(expect.arrayContaining(['code', 'kind', 'errno', 'message', 'hint']));
  expect(e.code).toBe(5);
});

test('snapshot -> read image -> destroy (the README session)', async () => {
  const created = await ok(['snapshot', 'create', diskA, '--diff-storage', store, '--limit', '8M']);
  const id = created.stdout.split('\n')[0];
  const image = JSON.parse((await ok(['snapshot', 'info', diskA, '--json'])).stdout).image;
  await ok(['sim', 'write', diskA, '0', '--data', 'overwritten']);
  const head = Buffer.alloc(11);
  const fd = fs.openSync(image, 'r');
  fs.readSync(fd, head, 0, 11, 0);
  fs.closeSync(fd);
  expect(head.toString()).toBe('A'.repeat(11));
  await ok(['snapshot', 'destroy', id]);
  expect((await ok(['snapshot', 'list', '--json'])).stdout).toContain('"snapshots": []');
});

test('a bash script written against the reference tool runs unchanged', async () => {
  const out = path.join(tmp, 'out');
  fs.mkdirSync(out);
  const r = await spawnProcess('bash', [path.join(ROOT, 'test/fixtures/reference-simple.sh'), diskA, diskB, store, out], { env: { ...env, BLKSNAP: 'blksnap' } });
  if (r.code !== 0) throw new Error(`script failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  expect(r.stdout).toMatch(/^New snapshot [0-9a-f-]{36} was created$/m);
  expect(r.stdout).toMatch(/^error_code=0$/m);
  expect(r.stdout).toMatch(/^generation_id=[0-9a-f-]{36}$/m);
  expect(r.stdout.trim().split('\n').pop()).toBe('done');
  // The copies of the images are the devices as they were at the take (nothing wrote since).
  expect(fs.readFileSync(path.join(out, 'image_1')).equals(fs.readFileSync(diskA))).toBe(true);
  expect(fs.readFileSync(path.join(out, 'image_2')).equals(fs.readFileSync(diskB))).toBe(true);
  expect(fs.statSync(path.join(out, 'image_2')).size).toBe(8 * MiB);
  expect((await ok(['snapshot_collect'])).stdout).toBe('');
});

test('SIGINT ends a watch with exit 130; SIGTERM with 143', async () => {
  const id = (await ok(['snapshot', 'create', diskB, '--diff-storage', store, '--limit', '8M'])).stdout.split('\n')[0];
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/blksnap'), 'snapshot', 'watch', id], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await new Promise((res) => setTimeout(res, 700));
    child.kill(signal);
    const exit = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
    expect({ signal, exit, stderr: stderr.trim() }).toEqual({ signal, exit: code, stderr: `blksnap: interrupted by ${signal}` });
  }
  await ok(['snapshot', 'destroy', id]);
});

describe('not root', () => {
  const { execFileSync } = require('child_process') as typeof import('child_process');
  const isRoot = process.getuid?.() === 0;
  const has = (cmd: string) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const asNobody = (argv: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
    spawnProcess('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, path.join(ROOT, 'bin/blksnap'), ...argv], { env: { ...env, ...extraEnv } });

  test('a real block device opened by a non-root user: exit 4 with the root hint', async () => {
    if (!isRoot || !has('setpriv') || !has('losetup')) {
      console.log('skipped: needs root, setpriv and losetup to make a loop device and drop privileges');
      return;
    }
    const img = path.join(tmp, 'loop.img');
    fs.writeFileSync(img, Buffer.alloc(4 * MiB));
    const loop = execFileSync('losetup', ['-f', '--show', img]).toString().trim();
    try {
      const r = await asNobody(['attach', loop, '--kernel', 'upstream']);
      expect(r.code).toBe(4);
      expect(r.stderr.split('\n')[0]).toBe(`blksnap: ${loop}: open: permission denied`);
      expect(r.stderr).toMatch(/^hint: .*root/m);
    } finally {
      execFileSync('losetup', ['-d', loop]);
    }
  });

  test('the simulated kernel state of another user: exit 4', async () => {
    if (!isRoot || !has('setpriv')) {
      console.log('skipped: needs root and setpriv to drop privileges');
      return;
    }
    fs.chmodSync(tmp, 0o700);
    const r = await asNobody(['snapshot', 'list']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/permission denied \(EACCES\)/);
  });
});
