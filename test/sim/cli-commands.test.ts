/**
 * Every command, alias and bad input of the CLI against the simulated kernel,
 * run in-process through runCli (the same code path as bin/blksnap; see
 * cli-spawn.test.ts for the spawned runs). Each bad input is checked for its
 * exit code, its one-line message naming the bad value, and that the
 * simulated kernel's state did not change.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { run, jsonErrorOf, CliResult } from '../unit/cli-harness';
import { toJson } from '../../lib/cli/output';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MiB = 1024 * 1024;

let tmp: string;
let simDir: string;
let diskA: string;
let diskB: string;
let partA1: string;
let mountA1: string;
let storeDir: string;
const savedEnv = { ...process.env };

async function simState(): Promise<string> {
  const { openSimAdmin } = await import('../../lib/kernel/sim');
  return toJson(await openSimAdmin(simDir).state());
}

async function ok(argv: string[]): Promise<CliResult> {
  const r = await run(argv);
  if (r.code !== 0) throw new Error(`blksnap ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** Runs a command that must fail: exit code, a first line containing `named`, a hint, and no state change. */
async function refused(argv: string[], code: number, named: string | RegExp): Promise<CliResult> {
  const before = await simState();
  const r = await run(argv);
  const after = await simState();
  expect({ argv, code: r.code, first: r.stderr.split('\n')[0] }).toEqual({ argv, code, first: expect.stringMatching(typeof named === 'string' ? new RegExp(named.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : named) });
  expect(r.stderr).toMatch(/^hint: /m);
  expect(after).toBe(before);
  return r;
}

async function destroyAll(): Promise<void> {
  await ok(['snapshot', 'destroy', '--all']);
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-cli-'));
  simDir = path.join(tmp, 'sim');
  storeDir = path.join(tmp, 'store');
  fs.mkdirSync(storeDir);
  process.env.BLKSNAP_KERNEL = 'sim';
  process.env.BLKSNAP_SIM_DIR = simDir;
  process.env.BLKSNAP_RUN_DIR = path.join(tmp, 'run');
  process.env.BLKSNAP_CONFIG = path.join(tmp, 'blksnap.conf'); // does not exist: defaults
  delete process.env.BLKSNAP_SIM_FLAVOUR;
  diskA = path.join(tmp, 'diskA.img');
  diskB = path.join(tmp, 'diskB.img');
  partA1 = path.join(tmp, 'diskA-part1.img');
  mountA1 = path.join(tmp, 'mnt-a1');
  fs.mkdirSync(mountA1);
  await ok(['sim', 'create-device', diskA, '64M']);
  await ok(['sim', 'create-device', diskB, '32m']);
  fs.writeFileSync(partA1, Buffer.alloc(8 * MiB));
  await ok(['sim', 'add-device', partA1, '--parent', diskA, '--mountpoint', mountA1]);
});

afterAll(() => {
  process.env = savedEnv;
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('version, mod, setlog on the upstream flavour', () => {
  test('version', async () => {
    const r = await ok(['version']);
    expect(r.stdout).toMatch(/^blksnap \d+\.\d+\.\d+\nkernel: simulated upstream \(\/dev\/blksnap-control\)\nmodule: \d+\.\d+\.\d+\.\d+\n$/);
    const j = JSON.parse((await ok(['version', '--json'])).stdout);
    expect(j.kernel).toEqual({ kind: 'sim', flavour: 'upstream', control_device: '/dev/blksnap-control' });
    expect(j.module.version).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(j.module.modification).toBeNull();
  });

  test('mod / module info: no modification interface, exit 0', async () => {
    for (const argv of [['mod'], ['module', 'info']]) {
      const r = await ok(argv);
      expect(r.stdout).toMatch(/^no modification interface \(upstream blksnap module \d+\.\d+\.\d+\.\d+\)\n$/);
    }
    const j = JSON.parse((await ok(['mod', '--json'])).stdout);
    expect(j).toMatchObject({ flavour: 'upstream', modification: null });
  });

  test('setlog: one warning line, exit 0, nothing recorded', async () => {
    const before = await simState();
    const r = await run(['setlog', '--level', '7', '--filepath', path.join(tmp, 'mod.log')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('warning: module logging is not supported by this kernel; ignored\n');
    expect(await simState()).toBe(before);
    const d = await run(['setlog', '--disable']);
    expect(d.code).toBe(0);
    expect(d.stderr).toContain('not supported');
  });
});

describe('attach, detach, cbt', () => {
  afterAll(destroyAll);

  test('attach DEVICE... and the reference form', async () => {
    const r = await ok(['attach', diskA]);
    expect(r.stdout).toBe(`${diskA}: attached\n`);
    expect((await ok(['attach', diskA])).stdout).toBe(`${diskA}: already attached\n`);
    expect((await ok(['attach', '--device', diskA])).stdout).toBe('Already was attached\n');
    const j = JSON.parse((await ok(['attach', diskA, '--json'])).stdout);
    expect(j).toEqual({ devices: [{ device: diskA, already_attached: true }] });
  });

  test('cbt info / cbtinfo key=value lines and JSON', async () => {
    const r = await ok(['cbt', 'info', diskA]);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split('=')[0])).toEqual(['block_size', 'device_capacity', 'block_count', 'generation_id', 'changes_number']);
    expect(lines).toContain(`device_capacity=${64 * MiB}`);
    expect(lines).toContain('changes_number=0');
    expect(r.stdout).toBe((await ok(['cbtinfo', '--device', diskA])).stdout);
    expect(r.stdout).toBe((await ok(['cbtinfo', `--device=${diskA}`])).stdout);
    const j = JSON.parse((await ok(['cbt', 'info', diskA, '--json'])).stdout);
    expect(j).toMatchObject({ device: diskA, device_capacity: 64 * MiB, block_size: 65536, block_count: 1024, changes_number: 0 });
    expect(j.generation_id).toMatch(UUID);
    expect(JSON.parse((await ok(['cbtinfo', '-d', diskA, '--json'])).stdout)).toEqual(j);
  });

  test('cbt map --out / readcbtmap --file write block_count bytes', async () => {
    const out1 = path.join(tmp, 'a.map');
    const out2 = path.join(tmp, 'a2.map');
    await ok(['cbt', 'map', diskA, '--out', out1]);
    await ok(['readcbtmap', '--device', diskA, '--file', out2]);
    expect(fs.statSync(out1).size).toBe(1024);
    expect(fs.readFileSync(out2)).toEqual(fs.readFileSync(out1));
    const stdoutMap = await ok(['cbt', 'map', diskA]);
    expect(stdoutMap.stdoutBytes).toEqual(fs.readFileSync(out1));
    const j = JSON.parse((await ok(['cbt', 'map', diskA, '--json'])).stdout);
    expect(Buffer.from(j.map_base64, 'base64')).toEqual(fs.readFileSync(out1));
  });

  test('cbt changes after writes and a take; generation check', async () => {
    const info = JSON.parse((await ok(['cbt', 'info', diskA, '--json'])).stdout);
    await ok(['sim', 'write', diskA, '655360', '--data', 'x'.repeat(4096)]);
    const id = (await ok(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '16M'])).stdout.split('\n')[0];
    const r = await ok(['cbt', 'changes', diskA, '--since', String(info.changes_number)]);
    // 4 KiB at byte 655360 is in tracking block 10 (65536-byte blocks): sectors 1280..1407.
    expect(r.stdout).toBe('1280:128\n');
    const j = JSON.parse((await ok(['cbt', 'changes', diskA, '--since', '0', '--generation', info.generation_id, '--json'])).stdout);
    expect(j).toMatchObject({ device: diskA, since: 0, changes_number: 1, ranges: [{ offset: 1280, count: 128 }], changed_bytes: 65536 });
    const wrongGen = '00000000-0000-4000-8000-000000000000';
    await refused(['cbt', 'changes', diskA, '--since', '0', '--generation', wrongGen], 9, 'generation changed');
    await refused(['cbt', 'changes', diskA, '--since', '5'], 9, 'newer than');
    await ok(['snapshot', 'destroy', id]);
  });

  test('cbt mark-dirty / markdirtyblock', async () => {
    const r = await ok(['cbt', 'mark-dirty', diskA, '--range', '0:8', '--range', '4096:16']);
    expect(r.stdout).toBe(`${diskA}: 2 range(s), 24 sectors marked changed\n`);
    await ok(['markdirtyblock', '--device', diskA, '--ranges', '0:8', '2048:1']);
    const j = JSON.parse((await ok(['cbt', 'mark-dirty', diskA, '-r', '100:1', '--json'])).stdout);
    expect(j).toEqual({ device: diskA, ranges: [{ offset: 100, count: 1 }], sectors: 1 });
  });

  test('mark-dirty --file: refuses a file it cannot place, and --file with --range', async () => {
    const loose = path.join(tmp, 'loose.bin');
    fs.writeFileSync(loose, 'x');
    await refused(['cbt', 'mark-dirty', '--file', loose], 2, loose);
    await refused(['cbt', 'mark-dirty', diskA, '--file', loose, '--range', '0:1'], 2, 'not both');
    await refused(['markdirtyblock', '--file', path.join(tmp, 'absent.bin')], 5, 'absent.bin');
  });

  test('short and --name=value forms of the reference options', async () => {
    expect((await ok(['cbtinfo', '-d', diskA, '-j'])).stdout).toContain('"changes_number"');
    await ok(['markdirtyblock', '-d', diskA, '-r', '8:8', '16:8']);
    await ok(['readcbtmap', '-d', diskA, '-f', path.join(tmp, 'short.map')]);
    expect(fs.statSync(path.join(tmp, 'short.map')).size).toBe(1024);
    const id = (await ok(['snapshot_create', '-d', diskA, '-s', storeDir, '-l', '8M'])).stdout.trim();
    await ok(['snapshot_take', `--id=${id}`]);
    expect((await ok(['snapshot_waitevent', '-i', id, '-t', '50'])).stdout).toBe('result=timeout\n');
    await ok(['snapshot_destroy', '-i', id]);
  });

  test('bad inputs change nothing', async () => {
    const sectors = (64 * MiB) / 512;
    await refused(['cbt', 'mark-dirty', diskA, '--range', `${sectors - 1}:2`], 2, `"${sectors - 1}:2"`);
    await refused(['cbt', 'mark-dirty', diskA, '--range', '0:0'], 2, '"0:0"');
    await refused(['cbt', 'mark-dirty', diskA, '--range', '1:1', '--range', 'x'], 2, '"x"');
    await refused(['cbt', 'mark-dirty', diskA], 2, 'no --range');
    await refused(['markdirtyblock', '--device', diskA, '--ranges', '5-6'], 2, '"5-6"');
    await refused(['cbt', 'info', path.join(tmp, 'missing.img')], 5, 'missing.img');
    await refused(['cbt', 'info', diskB], 5, diskB); // not tracked
    await refused(['attach', tmp], 2, tmp); // a directory is not a device
    await refused(['attach', diskB, path.join(tmp, 'missing.img')], 5, 'missing.img'); // diskB not attached either
    await refused(['attach'], 2, 'no device given');
    await refused(['detach', path.join(tmp, 'nope')], 5, 'nope');
  });

  test('detach refuses a device in a snapshot, --force overrides; reference form', async () => {
    await ok(['attach', diskB]);
    const id = (await ok(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '16M'])).stdout.split('\n')[0];
    await refused(['detach', diskB, diskA], 6, 'in a snapshot');
    const forced = await ok(['detach', diskA, '--force', '--json']);
    expect(JSON.parse(forced.stdout)).toEqual({ devices: [{ device: diskA, detached: true }] });
    await ok(['snapshot', 'destroy', id]);
    await ok(['attach', diskA]);
    expect((await ok(['detach', '--device', diskB])).stdout).toBe(`${diskB}: detached\n`);
    expect(JSON.parse((await ok(['detach', diskA, '--json'])).stdout)).toEqual({ devices: [{ device: diskA, detached: true }] });
    await refused(['detach', diskA], 5, 'not attached');
  });
});

describe('snapshot create, info, list, take, destroy, watch', () => {
  afterEach(destroyAll);

  test('create prints the id and DEVICE IMAGE lines; the image holds the old data', async () => {
    await ok(['sim', 'write', diskA, '0', '--data', 'before']);
    const r = await ok(['snapshot', 'create', diskA, diskB, '--diff-storage', storeDir, '--limit', '32M']);
    const [id, lineA, lineB] = r.stdout.trim().split('\n');
    expect(id).toMatch(UUID);
    const imageA = lineA.split(' ')[1];
    expect(lineA).toBe(`${diskA} ${imageA}`);
    expect(lineB.startsWith(`${diskB} `)).toBe(true);
    await ok(['sim', 'write', diskA, '0', '--data', 'after!']);
    const fd = fs.openSync(imageA, 'r');
    const buf = Buffer.alloc(6);
    fs.readSync(fd, buf, 0, 6, 0);
    fs.closeSync(fd);
    expect(buf.toString()).toBe('before');

    const info = await ok(['snapshot', 'info', diskA]);
    expect(info.stdout).toBe(`error_code=0\nimage=${imageA}\n`);
    expect((await ok(['snapshot_info', '--device', diskA])).stdout).toBe(info.stdout);
    expect((await ok(['snapshot_info', '--device', diskA, '--field', 'image'])).stdout).toBe(`${imageA}\n`);
    expect((await ok(['snapshot_info', '-d', diskA, '-f', 'error_code'])).stdout).toBe('0\n');
    expect(JSON.parse((await ok(['snapshot', 'info', diskA, '--json'])).stdout)).toMatchObject({ device: diskA, error_code: 0, image: imageA });

    const list = await ok(['snapshot', 'list']);
    expect(list.stdout).toContain(`${id}\n  ${diskA} ${imageA}\n`);
    const lj = JSON.parse((await ok(['snapshot', 'list', '--json'])).stdout);
    expect(lj.snapshots).toEqual([expect.objectContaining({ id, known: true, orphaned: false, devices: [diskA, diskB] })]);
    expect((await ok(['snapshot_collect'])).stdout).toBe(`${id}\n`);
    expect(JSON.parse((await ok(['snapshot_collect', '--json'])).stdout)).toEqual({ ids: [id] });

    expect((await ok(['snapshot', 'destroy', id])).stdout).toBe(`snapshot ${id} destroyed\n`);
    expect((await ok(['snapshot_collect'])).stdout).toBe('');
    expect(fs.existsSync(imageA)).toBe(false);
  });

  test('create --json says what diff storage it chose; without --diff-storage it tells on stderr', async () => {
    const j = JSON.parse((await ok(['snapshot', 'create', diskB, '--diff-storage', storeDir, '--limit', '1g', '--json'])).stdout);
    expect(j).toMatchObject({ taken: true, diff_storage: { path: storeDir, kind: 'directory', chosen_by: 'given', limit_bytes: 1024 * MiB } });
    expect(j.devices).toEqual([{ device: diskB, image: expect.any(String), newly_attached: expect.any(Boolean) }]);
    await destroyAll();
    const r = await run(['snapshot', 'create', diskB, '--limit', '16M']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^difference storage: a temporary file in \//m);
  });

  test('create with no limit uses the configured/default limit and says so', async () => {
    const r = await run(['snapshot', 'create', diskB, '--diff-storage', storeDir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('difference storage limit: 1 GiB (default');
  });

  test('--no-take, then take; snapshot_take / snapshot_destroy reference forms', async () => {
    const r = await ok(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '8M', '--no-take']);
    const [id, line] = r.stdout.trim().split('\n');
    expect(line).toBe(`${diskA} -`);
    expect((await ok(['snapshot', 'info', diskA])).stdout).toBe('error_code=0\nimage=\n'); // in a snapshot, no image before TAKE
    expect((await ok(['snapshot', 'take', id])).stdout).toBe(`snapshot ${id} taken\n`);
    await refused(['snapshot', 'take', id], 6, id);
    await refused(['snapshot_take', '--id', id], 6, id);
    await ok(['snapshot_destroy', `--id=${id}`]);
    await refused(['snapshot_destroy', '--id', id], 5, id);
  });

  test('bad inputs to create change nothing', async () => {
    await refused(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '0'], 2, '"0"');
    await refused(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '-1G'], 2, '"-1G"');
    await refused(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '12Q'], 2, '"12Q"');
    await refused(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', ''], 2, '""');
    await refused(['snapshot', 'create', path.join(tmp, 'none.img'), '--diff-storage', storeDir, '--limit', '8M'], 5, 'none.img');
    await refused(['snapshot', 'create', tmp, '--diff-storage', storeDir, '--limit', '8M'], 2, tmp);
    await refused(['snapshot', 'create', diskA, '--diff-storage', mountA1, '--limit', '8M'], 2, mountA1); // on a partition of diskA
    await refused(['snapshot', 'create', diskA, '--diff-storage', path.join(tmp, 'nodir'), '--limit', '8M'], 5, 'nodir');
    await refused(['snapshot', 'create', '--diff-storage', storeDir], 2, 'no device given');
    await refused(['snapshot_create', '--device', diskA, '--file', mountA1, '--limit', '8M'], 2, mountA1);
  });

  test('destroy: malformed or unknown ids destroy nothing; --all', async () => {
    const id = (await ok(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '8M'])).stdout.split('\n')[0];
    await refused(['snapshot', 'destroy', id, 'not-an-id'], 2, '"not-an-id"');
    await refused(['snapshot', 'destroy', id, '00000000-0000-4000-8000-000000000001'], 5, '00000000-0000-4000-8000-000000000001');
    await refused(['snapshot', 'destroy'], 2, 'no snapshot id');
    await refused(['snapshot_destroy', '--id', 'xyz'], 2, '"xyz"');
    expect(JSON.parse((await ok(['snapshot', 'destroy', '--all', '--json'])).stdout)).toEqual({ destroyed: [id] });
    expect(JSON.parse((await ok(['snapshot', 'destroy', '--all', '--json'])).stdout)).toEqual({ destroyed: [] });
  });

  test('reference snapshot_create (prints only the id), snapshot_add, snapshot_take', async () => {
    const r = await ok(['snapshot_create', '--device', diskA, '--file', storeDir, '--limit', '64m']);
    const id = r.stdout.trim();
    expect(r.stdout).toBe(`${id}\n`);
    expect(id).toMatch(UUID);
    await ok(['snapshot_add', '--id', id, '--device', diskB]);
    await refused(['snapshot_add', '--id', id, '--device', diskB], 6, diskB);
    await refused(['snapshot_add', '--id', '00000000-0000-4000-8000-000000000002', '--device', diskB], 5, '00000000-0000-4000-8000-000000000002');
    await ok(['snapshot_take', '--id', id]);
    const img = (await ok(['snapshot_info', '--device', diskB, '--field', 'image'])).stdout.trim();
    expect(fs.existsSync(img)).toBe(true);
  });

  test('snapshot_create destroys its snapshot when adding a device fails', async () => {
    const other = (await ok(['snapshot', 'create', diskB, '--diff-storage', storeDir, '--limit', '8M'])).stdout.split('\n')[0];
    const r = await run(['snapshot_create', '--device', diskA, '--device', diskB, '--file', storeDir, '--limit', '8M']);
    expect(r.code).toBe(6); // diskB is in another snapshot
    expect(r.stdout).toBe('');
    expect((await ok(['snapshot_collect'])).stdout).toBe(`${other}\n`);
  });

  test('watch: ends when destroyed; --timeout; JSON lines; not found', async () => {
    const id = (await ok(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '8M'])).stdout.split('\n')[0];
    const t = await ok(['snapshot', 'watch', id, '--timeout', '300', '--json']);
    expect(t.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([{ type: 'end', id, reason: 'timeout', events: 0 }]);
    const watching = run(['snapshot', 'watch', id, '--json']);
    await new Promise((res) => setTimeout(res, 300));
    await ok(['snapshot', 'destroy', id]);
    const w = await watching;
    expect(w.code).toBe(0);
    expect(JSON.parse(w.stdout.trim())).toEqual({ type: 'end', id, reason: 'destroyed', events: 0 });
    await refused(['snapshot', 'watch', id, '--timeout', '100'], 5, id);
    await refused(['snapshot', 'watch', 'bogus'], 2, '"bogus"');
  });

  test('snapshot_watcher prints the reference lines and ends when the snapshot is destroyed', async () => {
    const id = (await ok(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '8M'])).stdout.split('\n')[0];
    const watching = run(['snapshot_watcher', '--id', id]);
    await new Promise((res) => setTimeout(res, 300));
    await ok(['snapshot_destroy', '--id', id]);
    const w = await watching;
    expect(w.code).toBe(0);
    expect(w.stdout).toBe(`Start snapshot watcher for snapshot '${id}'.\nSnapshot watcher finished.\n`);
    await refused(['snapshot_watcher', '--id', id], 5, id);
  });

  test('--quiet keeps data, drops status lines', async () => {
    const q = await ok(['snapshot', 'create', diskB, '--diff-storage', storeDir, '--limit', '8M', '--quiet']);
    expect(q.stdout.split('\n')[0]).toMatch(UUID);
    expect(q.stderr).toBe('');
    expect((await ok(['snapshot', 'destroy', '--all', '-q'])).stdout).toBe('');
  });

  test('watch and waitevent report an overflow as a corrupted event (exit 8)', async () => {
    const id = (await ok(['snapshot', 'create', diskA, '--diff-storage', storeDir, '--limit', '1M'])).stdout.split('\n')[0];
    // 1 MiB of storage: overwriting 8 MiB spread over many chunks overflows it.
    for (let i = 0; i < 16; i++) await ok(['sim', 'write', diskA, String(i * 512 * 1024), '--pattern', '7', '--length', '4096']);
    const ev = await ok(['snapshot_waitevent', '--id', id, '--timeout', '2000']);
    expect(ev.stdout).toMatch(/^result=ok\ntime=\d+\nevent=corrupted\ndev_id=\d+:\d+\nerr_code=28\n$/);
    const info = await run(['snapshot', 'info', diskA]);
    expect(info.code).toBe(8);
    expect(info.stdout).toMatch(/^error_code=-28\n/);
    expect((await ok(['snapshot_info', '--device', diskA, '--field', 'error_code'])).stdout).toBe('-28\n');
    const timeout = await ok(['snapshot_waitevent', '--id', id, '--timeout', '100']);
    expect(timeout.stdout).toBe('result=timeout\n');
    await ok(['snapshot', 'destroy', id]);
    expect((await ok(['snapshot_waitevent', '--id', id, '--timeout', '100'])).stdout).toBe('result=not found\n');
  });
});

describe('sim helpers and debug', () => {
  test('sim state is JSON; sim write needs exactly one source', async () => {
    const s = JSON.parse((await ok(['sim', 'state'])).stdout);
    expect(s.devices.map((d: { path: string }) => d.path)).toEqual(expect.arrayContaining([diskA, diskB]));
    await refused(['sim', 'write', diskA, '0'], 2, 'exactly one');
    await refused(['sim', 'write', diskA, '0', '--pattern', '300', '--length', '1'], 2, '"300"');
    await refused(['sim', 'create-device', path.join(tmp, 'z.img'), '0'], 2, '"0"');
    await refused(['sim', 'create-device', path.join(tmp, 'z.img'), '1000'], 2, '"1000"');
  });

  test('sim add-device and reset', async () => {
    const sdir = path.join(tmp, 'other-sim');
    const img = path.join(tmp, 'other.img');
    fs.writeFileSync(img, Buffer.alloc(MiB));
    const j = JSON.parse((await ok(['sim', 'add-device', img, '--sim-dir', sdir, '--json'])).stdout);
    expect(j).toEqual({ device: img, parent: null, mountpoint: null });
    expect((await ok(['sim', 'state', '--sim-dir', sdir])).stdout).toContain(img);
    expect(JSON.parse((await ok(['sim', 'reset', '--sim-dir', sdir, '--json'])).stdout)).toEqual({ reset: true });
    expect(JSON.parse((await ok(['sim', 'state', '--sim-dir', sdir])).stdout).devices).toEqual([]);
    await refused(['sim', 'add-device', path.join(tmp, 'nothing.img')], 5, 'nothing.img');
  });

  test('JSON of sim helpers', async () => {
    const extra = path.join(tmp, 'extra.img');
    expect(JSON.parse((await ok(['sim', 'create-device', extra, '1M', '--json'])).stdout)).toEqual({ device: extra, size: MiB });
    expect(JSON.parse((await ok(['sim', 'write', extra, '1K', '--data', 'abc', '--json'])).stdout)).toEqual({ device: extra, offset: 1024, length: 3 });
    const b = Buffer.alloc(3);
    const fd = fs.openSync(extra, 'r');
    fs.readSync(fd, b, 0, 3, 1024);
    fs.closeSync(fd);
    expect(b.toString()).toBe('abc');
  });
});

describe('JSON errors', () => {
  test('a kernel error with --json: code, kind, errno, message, hint on stderr', async () => {
    const r = await run(['snapshot', 'take', '00000000-0000-4000-8000-000000000003', '--json']);
    expect(r.code).toBe(5);
    expect(r.stdout).toBe('');
    const e = jsonErrorOf(r);
    expect(e.code).toBe(5);
    expect(e.kind).toBe('not_found');
    expect(e.errno).toBe('ESRCH');
    expect(typeof e.message).toBe('string');
  });
});
