/**
 * What runs around the TAKE of a backup, on the simulated kernel through the
 * spawned CLI: hook order and environment, a failing pre-hook (backup fails,
 * post-hook still runs, no snapshot left, nothing committed), fsfreeze of a
 * real mounted filesystem (thawed afterwards; root), and two devices in one
 * coherent backup.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnCli, simCliEnv } from '../unit/cli-harness';
import type { CliResult } from '../unit/cli-harness';
import { cleanupAll, createLoopDevice, mountExt4 } from '../helpers/loop';
import { isRoot } from '../helpers/root';

const MiB = 1024 * 1024;
let tmp: string;
let env: NodeJS.ProcessEnv;
let storage: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-hooks-'));
  storage = path.join(tmp, 'storage');
  fs.mkdirSync(storage);
  env = simCliEnv(tmp);
});

afterAll(() => {
  cleanupAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function device(name: string, fill: number): Promise<string> {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, Buffer.alloc(MiB, fill));
  const { openSimAdmin } = await import('../../lib/kernel/sim');
  await openSimAdmin(env.BLKSNAP_SIM_DIR as string).addDevice(p);
  return p;
}

async function snapshots(): Promise<number> {
  const { openSimAdmin } = await import('../../lib/kernel/sim');
  return (await openSimAdmin(env.BLKSNAP_SIM_DIR as string).state()).snapshots.length;
}

function cli(argv: string[]): Promise<CliResult> {
  return spawnCli(argv, { env });
}

test('hooks run in order around the take, with the snapshot in their environment', async () => {
  const dev = await device('hooks.img', 1);
  const log = path.join(tmp, 'hooks.log');
  const repo = path.join(tmp, 'repo-hooks');
  const r = await cli([
    'backup', dev, '--repo', repo, '--diff-storage', storage, '--limit', '16M', '--json',
    '--pre-hook', `echo "pre $BLKSNAP_HOOK $BLKSNAP_DEVICES" >> ${log}`,
    '--post-hook', `echo "post $BLKSNAP_HOOK $BLKSNAP_TAKE_RESULT $BLKSNAP_SNAPSHOT_ID" >> ${log}`,
  ]);
  expect(r.code).toBe(0);
  const id = JSON.parse(r.stdout).snapshot_id;
  expect(fs.readFileSync(log, 'utf8')).toBe(`pre pre ${dev}\npost post ok ${id}\n`);
});

test('--freeze runs fsfreeze between the pre-hook and the take, and unfreezes before the post-hook', async () => {
  const dev = await device('order.img', 6);
  const log = path.join(tmp, 'order.log');
  const bin = path.join(tmp, 'fakebin');
  fs.mkdirSync(bin, { recursive: true });
  // A stand-in fsfreeze first in PATH: logs how it was called (and whether a snapshot is taken yet).
  fs.writeFileSync(path.join(bin, 'fsfreeze'), `#!/bin/sh\necho "fsfreeze $*" >> ${log}\n`, { mode: 0o755 });
  // Any directory on another filesystem than the repository (the stand-in freezes nothing).
  const mp = '/dev/shm';
  const r = await spawnCli(
    ['backup', dev, '--repo', path.join(tmp, 'repo-order'), '--diff-storage', storage, '--limit', '16M', '--freeze', mp,
      '--pre-hook', `echo pre >> ${log}`, '--post-hook', `echo "post $BLKSNAP_TAKE_RESULT" >> ${log}`],
    { env: { ...env, PATH: `${bin}:${process.env.PATH}` } },
  );
  expect(r.code).toBe(0);
  expect(fs.readFileSync(log, 'utf8')).toBe(`pre\nfsfreeze --freeze ${mp}\nfsfreeze --unfreeze ${mp}\npost ok\n`);
});

test('a failing pre-hook fails the backup (exit 1), runs the post-hook, leaves no snapshot and commits nothing', async () => {
  const dev = await device('prefail.img', 2);
  const marker = path.join(tmp, 'post-ran');
  const repo = path.join(tmp, 'repo-prefail');
  const r = await cli(['backup', dev, '--repo', repo, '--diff-storage', storage, '--limit', '16M', '--pre-hook', 'exit 3', '--post-hook', `touch ${marker}`]);
  expect(r.code).toBe(1);
  expect(r.stderr.split('\n')[0]).toBe('blksnap: pre-hook `exit 3` exited with status 3');
  expect(fs.existsSync(marker)).toBe(true);
  expect(await snapshots()).toBe(0);
  // Nothing committed, and the repository this failed first backup would have created is not left behind.
  expect(fs.existsSync(repo)).toBe(false);
});

test('two devices are backed up from one snapshot into two points', async () => {
  const a = await device('two-a.img', 3);
  const b = await device('two-b.img', 4);
  const repo = path.join(tmp, 'repo-two');
  const r = await cli(['backup', a, b, '--repo', repo, '--diff-storage', storage, '--limit', '16M', '--json']);
  expect(r.code).toBe(0);
  const s = JSON.parse(r.stdout);
  expect(s.devices.map((d: { device: string; point: number }) => [d.device, d.point])).toEqual([[a, 1], [b, 1]]);
  for (const [dev, fill] of [[a, 3], [b, 4]] as const) {
    const out = path.join(tmp, `two-${fill}.out`);
    expect((await cli(['restore', '--repo', repo, '--device', dev, '--to', out])).code).toBe(0);
    expect(fs.readFileSync(out).equals(Buffer.alloc(MiB, fill))).toBe(true);
  }
});

(isRoot() ? test : test.skip)('--freeze freezes a mounted filesystem only around the take and thaws it', async () => {
  const dev = await device('freeze.img', 5);
  const loop = createLoopDevice({ sizeBytes: 64 * MiB });
  const mount = mountExt4(loop);
  try {
    const repo = path.join(tmp, 'repo-freeze');
    const r = await cli(['backup', dev, '--repo', repo, '--diff-storage', storage, '--limit', '16M', '--freeze', mount.mountpoint]);
    expect([r.code, r.stderr]).toEqual([0, expect.any(String)]);
    // Thawed: a write completes (a frozen filesystem would block it until the timeout).
    execFileSync('timeout', ['10', 'sh', '-c', `echo x > ${mount.mountpoint}/after && sync`]);
    expect(fs.readFileSync(path.join(mount.mountpoint, 'after'), 'utf8')).toBe('x\n');
    // The repository's own filesystem is refused (freezing it would hang the backup).
    const bad = await cli(['backup', dev, '--repo', path.join(mount.mountpoint, 'repo'), '--diff-storage', storage, '--limit', '16M', '--freeze', mount.mountpoint]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/freezing it would hang the backup/);
  } finally {
    mount.cleanup();
    loop.cleanup();
  }
});
