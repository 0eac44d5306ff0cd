/**
 * The backup engine end to end on the simulated kernel, through the real CLI
 * as a spawned process (node bin/blksnap; needs `npx tsc -p .` first), with
 * real files: the devices are image files, the repository a directory.
 *
 * "The image at a point" is read by the post-hook (which runs right after
 * the TAKE) with test/scenarios/sim-image-tool.js, through the library's
 * ImageReader — independent of the backup's own copy. Hooks also write to
 * the device while the backup runs.
 */
import { spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BIN, ROOT, spawnCli, simCliEnv } from '../unit/cli-harness';
import type { CliResult } from '../unit/cli-harness';

const MiB = 1024 * 1024;
const BS = 65536;
const IMAGE_TOOL = path.join(ROOT, 'test', 'scenarios', 'sim-image-tool.js');

let tmp: string;
let env: NodeJS.ProcessEnv;
let storage: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-backup-'));
  storage = path.join(tmp, 'storage');
  fs.mkdirSync(storage);
  env = simCliEnv(tmp);
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function admin() {
  const { openSimAdmin } = await import('../../lib/kernel/sim');
  return openSimAdmin(env.BLKSNAP_SIM_DIR as string);
}

function cli(argv: string[]): Promise<CliResult> {
  return spawnCli(argv, { env });
}

async function ok(argv: string[]): Promise<CliResult> {
  const r = await cli(argv);
  if (r.code !== 0) throw new Error(`blksnap ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** Deterministic pseudo-random bytes (AES-CTR keystream of the seed). */
function seeded(length: number, seed: number): Buffer {
  const key = crypto.createHash('sha256').update(`seed:${seed}`).digest().subarray(0, 16);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(length));
}

/** A simulated device filled with non-zero data except a zero gap (so full points have zero blocks). */
async function makeDevice(name: string, size: number, seed: number): Promise<string> {
  const p = path.join(tmp, name);
  const data = seeded(size, seed);
  data.fill(0, size / 4, size / 4 + 4 * BS);
  fs.writeFileSync(p, data);
  await (await admin()).addDevice(p);
  return p;
}

function patternFile(length: number, seed: number): string {
  const f = path.join(tmp, `pattern-${length}-${seed}`);
  if (!fs.existsSync(f)) fs.writeFileSync(f, seeded(length, seed));
  return f;
}

function simWriteCommand(device: string, offset: number, length: number, seed: number): string {
  return `${process.execPath} ${BIN} sim write ${device} ${offset} --file ${patternFile(length, seed)}`;
}

function copyImageCommand(device: string, out: string): string {
  return `${process.execPath} ${IMAGE_TOOL} copy ${device} ${out}`;
}

function blocksOf(offset: number, length: number): number[] {
  const out: number[] = [];
  for (let b = Math.floor(offset / BS); b <= Math.floor((offset + length - 1) / BS); b++) out.push(b);
  return out;
}

/** Every file under `dir` with its size and sha256 (what a failed backup must not change). */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(dir, p), crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

function withoutLock(t: Map<string, string>): string[] {
  return [...t.entries()].filter(([k]) => k !== 'lock').map(([k, v]) => `${k}=${v}`).sort();
}

async function liveSnapshots(): Promise<string[]> {
  return (await (await admin()).state()).snapshots.map((s) => s.id);
}

function backupArgs(device: string, repo: string, extra: string[] = []): string[] {
  return ['backup', device, '--repo', repo, '--diff-storage', storage, '--limit', '64M', '--json', ...extra];
}

describe('backup, verify, restore on the simulated kernel', () => {
  test('full then incrementals with writes between and during backups: exact blocks copied, every point restores to its image', async () => {
    const size = 8 * MiB;
    const dev = await makeDevice('chain.img', size, 1);
    const repo = path.join(tmp, 'repo-chain');
    const sim = await admin();
    // Writes between backups (applied before the backup's take) and writes by the post-hook (after the take).
    const rounds: { between: [number, number][]; during: [number, number] }[] = [
      { between: [], during: [3 * MiB + 100, 5000] },
      { between: [[0, 4096], [2 * MiB, 3 * BS + 1]], during: [7 * MiB, BS] },
      { between: [[size - 512, 512]], during: [BS * 10, 10] },
      { between: [[5 * MiB + 7, 200 * 1024], [6 * MiB, 1]], during: [0, 1] },
    ];
    let pending = new Set<number>(); // blocks written since the last take
    for (let i = 0; i < rounds.length; i++) {
      const r = rounds[i];
      for (const [off, len] of r.between) {
        await sim.writeDevice(dev, off, seeded(len, 100 + i));
        for (const b of blocksOf(off, len)) pending.add(b);
      }
      const image = path.join(tmp, `chain-image-${i + 1}.img`);
      const hook = `${copyImageCommand(dev, image)} && ${simWriteCommand(dev, r.during[0], r.during[1], 200 + i)}`;
      const res = JSON.parse((await ok(backupArgs(dev, repo, ['--post-hook', hook]))).stdout);
      const d = res.devices[0];
      expect(d.point).toBe(i + 1);
      if (i === 0) {
        expect(d.mode).toBe('full');
        expect(d.reason).toMatch(/no previous backup/);
        expect(d.changed_blocks).toBe(size / BS);
        expect(d.zero_blocks).toBeGreaterThanOrEqual(4);
        expect(d.bytes_written).toBe(size - d.zero_blocks * BS);
      } else {
        expect(d.mode).toBe('incremental');
        expect(d.parent).toBe(i);
        expect(d.since_changes_number).toBe(d.changes_number - 1);
        // Exactly the tracking blocks written since the previous take, nothing else.
        expect(d.changed_blocks).toBe(pending.size);
        expect(d.bytes_read).toBe(pending.size * BS);
      }
      expect(fs.statSync(image).size).toBe(size);
      pending = new Set(blocksOf(r.during[0], r.during[1]));
    }
    expect(await liveSnapshots()).toEqual([]);

    const v = JSON.parse((await ok(['verify', '--repo', repo, '--json'])).stdout);
    expect(v.ok).toBe(true);
    expect(v.points_checked).toBe(rounds.length);

    for (let p = 1; p <= rounds.length; p++) {
      const out = path.join(tmp, `chain-restored-${p}.img`);
      const r = JSON.parse((await ok(['restore', '--repo', repo, '--device', dev, '--point', String(p), '--to', out, '--json'])).stdout);
      expect(r.chain).toEqual(Array.from({ length: p }, (_, k) => k + 1));
      const expected = fs.readFileSync(path.join(tmp, `chain-image-${p}.img`));
      expect(fs.readFileSync(out).equals(expected)).toBe(true);
      expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    }
    // The device itself moved on after the last take (the hook wrote to it).
    expect(fs.readFileSync(dev).equals(fs.readFileSync(path.join(tmp, `chain-image-${rounds.length}.img`)))).toBe(false);

    // Repository modes: directories 0700, files 0600.
    const walk = (d: string) => {
      expect(fs.statSync(d).mode & 0o777).toBe(0o700);
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else expect([p, fs.statSync(p).mode & 0o777]).toEqual([p, 0o600]);
      }
    };
    walk(repo);
  }, 120_000);

  test('a tracker reset (new generation) forces a full backup; --mode incremental refuses with exit 9 and commits nothing', async () => {
    const dev = await makeDevice('reset.img', 2 * MiB, 2);
    const repo = path.join(tmp, 'repo-reset');
    await ok(backupArgs(dev, repo));
    const second = JSON.parse((await ok(backupArgs(dev, repo))).stdout).devices[0];
    expect(second.mode).toBe('incremental');

    await (await admin()).reloadModule(); // as after a reboot: trackers gone
    const before = tree(repo);
    const refused = await cli(backupArgs(dev, repo, ['--mode', 'incremental']));
    expect(refused.code).toBe(9);
    expect(refused.stderr).toMatch(/incremental backup is impossible: change tracker generation changed \(tracker was reset or the machine rebooted\)/);
    expect(withoutLock(tree(repo))).toEqual(withoutLock(before));
    expect(await liveSnapshots()).toEqual([]);
    // Refused before anything was attached: the device is still untracked.
    expect((await cli(['cbt', 'info', dev])).code).toBe(5);

    const human = await ok(['backup', dev, '--repo', repo, '--diff-storage', storage, '--limit', '64M']);
    expect(human.stderr).toMatch(/full backup: change tracker generation changed \(tracker was reset or the machine rebooted\)/);
    expect(human.stdout).toMatch(/point 3 \(full\)/);
    const v = await ok(['verify', '--repo', repo]);
    expect(v.stdout).toMatch(/point 3 \(full\): ok/);
  }, 60_000);

  test('--mode incremental on a tracker whose generation changed refuses before hooks run or a snapshot is made', async () => {
    const dev = await makeDevice('regen.img', 2 * MiB, 12);
    const repo = path.join(tmp, 'repo-regen');
    await ok(backupArgs(dev, repo));
    // Stop and restart tracking: the device keeps a tracker, with a new generation.
    await ok(['detach', dev]);
    await ok(['attach', dev]);
    const marker = path.join(tmp, 'regen-pre-hook-ran');
    const before = tree(repo);
    const r = await cli(backupArgs(dev, repo, ['--mode', 'incremental', '--pre-hook', `touch ${marker}`]));
    expect(r.code).toBe(9);
    expect(JSON.parse(r.stderr).error.message).toBe(`${dev}: an incremental backup is impossible: change tracker generation changed (tracker was reset or the machine rebooted)`);
    expect(fs.existsSync(marker)).toBe(false);
    expect(withoutLock(tree(repo))).toEqual(withoutLock(before));
    expect(await liveSnapshots()).toEqual([]);
  }, 60_000);

  test('an overflow of the difference storage fails the backup with exit 8, commits nothing, leaves no snapshot', async () => {
    const dev = await makeDevice('overflow.img', 8 * MiB, 3);
    const repo = path.join(tmp, 'repo-overflow');
    await ok(backupArgs(dev, repo));
    const before = tree(repo);
    const hook = simWriteCommand(dev, 0, 8 * MiB, 33);
    const r = await cli(['backup', dev, '--repo', repo, '--diff-storage', storage, '--limit', '1M', '--post-hook', hook]);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/nothing was committed: the difference storage overflowed/);
    expect(r.stderr).toMatch(/--limit/);
    expect(withoutLock(tree(repo))).toEqual(withoutLock(before));
    expect(fs.existsSync(path.join(repo, 'lock'))).toBe(false);
    expect(await liveSnapshots()).toEqual([]);
    await ok(['verify', '--repo', repo]);
    // The next backup copies what changed since the last committed point.
    const next = JSON.parse((await ok(backupArgs(dev, repo))).stdout).devices[0];
    expect(next.mode).toBe('incremental');
    expect(next.changed_blocks).toBe(8 * MiB / BS);
  }, 60_000);

  /** Starts a backup and stops it (SIGSTOP) while its copy is in progress: the temp point has data, no manifest. */
  async function backupStoppedMidCopy(dev: string, repo: string): Promise<{ pid: number; done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; temp: string }> {
    const child = spawn(process.execPath, [BIN, ...backupArgs(dev, repo)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
    child.stdout.resume();
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    const deviceDirs = () => (fs.existsSync(path.join(repo, 'devices')) ? fs.readdirSync(path.join(repo, 'devices')).map((k) => path.join(repo, 'devices', k)) : []);
    const deadline = Date.now() + 60_000;
    for (;;) {
      for (const d of deviceDirs()) {
        for (const name of fs.readdirSync(d)) {
          const data = path.join(d, name, 'data');
          if (name.startsWith('.tmp-') && fs.existsSync(data) && fs.statSync(data).size > 0) {
            child.kill('SIGSTOP');
            if (fs.existsSync(path.join(d, name, 'manifest.json')) || !fs.existsSync(data)) throw new Error('the copy finished before the test could stop it; use a bigger device');
            return { pid: child.pid as number, done, temp: path.join(d, name) };
          }
        }
      }
      if (Date.now() > deadline) throw new Error(`the backup never started copying: ${Buffer.concat(stderr).toString()}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  test('SIGTERM in the middle of a copy: exit 143, snapshot destroyed, temp point removed, repository verifies', async () => {
    const dev = await makeDevice('sigterm.img', 64 * MiB, 4);
    const repo = path.join(tmp, 'repo-sigterm');
    // A repository with one committed point, then an interrupted full copy of a second device image.
    const small = await makeDevice('sigterm-small.img', 2 * MiB, 5);
    await ok(backupArgs(small, repo));
    const before = tree(repo);
    const run = await backupStoppedMidCopy(dev, repo);
    expect(await liveSnapshots()).toHaveLength(1);
    process.kill(run.pid, 'SIGTERM');
    process.kill(run.pid, 'SIGCONT');
    const end = await run.done;
    expect(end.code).toBe(143);
    expect(await liveSnapshots()).toEqual([]);
    expect(fs.existsSync(run.temp)).toBe(false);
    expect(withoutLock(tree(repo))).toEqual(withoutLock(before));
    expect(fs.existsSync(path.join(repo, 'lock'))).toBe(false);
    await ok(['verify', '--repo', repo]);
  }, 120_000);

  test('SIGKILL in the middle of a copy: verify accepts the repository, cleanup destroys the snapshot and removes the leftovers', async () => {
    const dev = await makeDevice('sigkill.img', 64 * MiB, 6);
    const repo = path.join(tmp, 'repo-sigkill');
    const small = await makeDevice('sigkill-small.img', 2 * MiB, 7);
    await ok(backupArgs(small, repo));
    const run = await backupStoppedMidCopy(dev, repo);
    process.kill(run.pid, 'SIGKILL');
    const end = await run.done;
    expect(end.signal).toBe('SIGKILL');
    const left = await liveSnapshots();
    expect(left).toHaveLength(1);
    expect(fs.existsSync(run.temp)).toBe(true);
    expect(fs.existsSync(path.join(repo, 'lock'))).toBe(true);

    const v = JSON.parse((await ok(['verify', '--repo', repo, '--json'])).stdout);
    expect(v.ok).toBe(true);
    expect(v.points_checked).toBe(1); // the half-written point is not a point

    const c = JSON.parse((await ok(['cleanup', '--repo', repo, '--json'])).stdout);
    expect(c.destroyed_snapshots).toEqual(left);
    expect(c.removed).toEqual([run.temp]);
    expect(await liveSnapshots()).toEqual([]);
    expect(fs.existsSync(path.join(repo, 'lock'))).toBe(false);
    // The killed run was the first of this device: its directory goes too.
    expect(fs.existsSync(path.dirname(run.temp))).toBe(false);

    // The killed device's next backup is a full one and works.
    const next = JSON.parse((await ok(backupArgs(dev, repo))).stdout).devices[0];
    expect(next.mode).toBe('full');
    await ok(['verify', '--repo', repo]);
  }, 120_000);

  test('a second backup while one holds the repository lock gets exit 7 naming the holder', async () => {
    const dev = await makeDevice('locked.img', 2 * MiB, 8);
    const repo = path.join(tmp, 'repo-locked');
    await ok(backupArgs(dev, repo));
    const marker = path.join(tmp, 'locked-hook');
    const child = spawn(process.execPath, [BIN, ...backupArgs(dev, repo, ['--pre-hook', `touch ${marker}; sleep 2`])], { env, stdio: 'ignore' });
    const done = new Promise((resolve) => child.on('close', resolve));
    while (!fs.existsSync(marker)) await new Promise((r) => setTimeout(r, 20));
    const r = await cli(backupArgs(dev, repo));
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(new RegExp(`locked by pid ${child.pid} on host `));
    expect(JSON.parse(r.stderr).error.hint).toMatch(/blksnap cleanup --repo/);
    expect(await done).toBe(0);
  }, 60_000);

  test('damage: a corrupted block is found by verify (exit 10); a tampered manifest stops restore naming the file', async () => {
    const dev = await makeDevice('damage.img', 2 * MiB, 9);
    const repo = path.join(tmp, 'repo-damage');
    await ok(backupArgs(dev, repo));
    const key = fs.readdirSync(path.join(repo, 'devices'))[0];
    const p1 = path.join(repo, 'devices', key, '00000001');
    const data = path.join(p1, 'data');
    const bytes = fs.readFileSync(data);
    bytes[3 * BS + 17] ^= 0x40;
    fs.writeFileSync(data, bytes);
    const v = await cli(['verify', '--repo', repo]);
    expect(v.code).toBe(10);
    expect(v.stdout).toContain(`${data}: block 3 `);
    expect(v.stderr).toMatch(/verify found 1 problem/);

    const manifest = path.join(p1, 'manifest.json');
    fs.writeFileSync(manifest, fs.readFileSync(manifest, 'utf8').replace('"blockSize": 65536', '"blockSize": 4096'));
    const out = path.join(tmp, 'damage-restored.img');
    const r = await cli(['restore', '--repo', repo, '--device', dev, '--to', out]);
    expect(r.code).toBe(10);
    expect(r.stderr.split('\n')[0]).toContain(manifest);
    expect(fs.existsSync(out)).toBe(false);

    fs.writeFileSync(manifest, '{"format": "blksnap-po');
    const r2 = await cli(['restore', '--repo', repo, '--device', dev, '--to', out]);
    expect(r2.code).toBe(10);
    expect(r2.stderr.split('\n')[0]).toMatch(new RegExp(`${manifest}: not valid JSON`));
    expect(fs.existsSync(out)).toBe(false);
  }, 60_000);

  test('bad input: restore onto an existing file needs --force; unknown device and point are exit 5; bad point is exit 2', async () => {
    const dev = await makeDevice('input.img', 1 * MiB, 10);
    const repo = path.join(tmp, 'repo-input');
    await ok(backupArgs(dev, repo));
    const existing = path.join(tmp, 'existing.img');
    fs.writeFileSync(existing, 'keep me');
    const r = await cli(['restore', '--repo', repo, '--device', dev, '--to', existing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/exists; add --force/);
    expect(fs.readFileSync(existing, 'utf8')).toBe('keep me');
    await ok(['restore', '--repo', repo, '--device', dev, '--to', existing, '--force']);
    expect(fs.readFileSync(existing).equals(fs.readFileSync(dev))).toBe(true);

    expect((await cli(['restore', '--repo', repo, '--device', '/dev/nothing', '--to', path.join(tmp, 'x.img')])).code).toBe(5);
    expect((await cli(['restore', '--repo', repo, '--device', dev, '--point', '9', '--to', path.join(tmp, 'x.img')])).code).toBe(5);
    expect((await cli(['restore', '--repo', repo, '--device', dev, '--point', 'x', '--to', path.join(tmp, 'x.img')])).code).toBe(2);
    expect((await cli(['verify', '--repo', path.join(tmp, 'no-repo')])).code).toBe(5);
    expect(fs.existsSync(path.join(tmp, 'x.img'))).toBe(false);
  }, 60_000);

  test('a first backup that fails leaves no repository behind; a failed backup into an existing repository keeps it', async () => {
    const fresh = path.join(tmp, 'new-parent', 'repo-never');
    const missing = await cli(backupArgs(path.join(tmp, 'no-such-device.img'), fresh));
    expect(missing.code).toBe(5);
    expect(JSON.parse(missing.stderr).error.message).toContain('no-such-device.img');
    expect(fs.existsSync(path.join(tmp, 'new-parent'))).toBe(false);

    const dev = await makeDevice('first-fail.img', 1 * MiB, 11);
    const emptyDir = path.join(tmp, 'repo-empty-dir');
    fs.mkdirSync(emptyDir);
    const refused = await cli(backupArgs(dev, emptyDir, ['--mode', 'incremental']));
    expect(refused.code).toBe(9);
    expect(fs.readdirSync(emptyDir)).toEqual([]); // the directory the user made stays, empty
    expect(await liveSnapshots()).toEqual([]);

    const repo = path.join(tmp, 'repo-kept');
    await ok(backupArgs(dev, repo));
    const before = tree(repo);
    expect((await cli(backupArgs(path.join(tmp, 'no-such-device.img'), repo))).code).toBe(5);
    expect(withoutLock(tree(repo))).toEqual(withoutLock(before));
    expect(fs.existsSync(path.join(repo, 'repository.json'))).toBe(true);
  }, 60_000);
});

test('a repository on a device being backed up is warned about (and the backup still works)', async () => {
  const dev = await makeDevice('repo-host.img', 4 * MiB, 77);
  const mnt = path.join(tmp, 'repo-host-mnt');
  fs.mkdirSync(mnt);
  // The simulated device "holds" the directory tree under mnt, like a mounted filesystem.
  await (await admin()).addDevice(dev, { mountpoint: mnt });
  const repo = path.join(mnt, 'repo');
  const r = await ok(['backup', dev, '--repo', repo, '--diff-storage', storage, '--limit', '64M']);
  expect(r.stderr).toContain(`the repository ${repo} is on ${dev}, which is being backed up`);
  const other = path.join(tmp, 'repo-elsewhere');
  const r2 = await ok(['backup', dev, '--repo', other, '--diff-storage', storage, '--limit', '64M']);
  expect(r2.stderr).not.toContain('which is being backed up');
});

test('a lock removed while the backup runs: nothing is committed, exit 7', async () => {
  const dev = await makeDevice('lock-gone.img', 2 * MiB, 31);
  const repo = path.join(tmp, 'repo-lock-gone');
  await ok(backupArgs(dev, repo));
  const before = tree(repo);
  // The post-hook runs after the take, before the copy: it plays an admin removing the lock.
  const r = await cli(backupArgs(dev, repo, ['--post-hook', `rm -f ${path.join(repo, 'lock')}`]));
  expect(r.code).toBe(7);
  expect(JSON.parse(r.stderr).error.message).toMatch(/nothing was committed: the lock of repository .* was removed while the backup ran/);
  expect(withoutLock(tree(repo))).toEqual(withoutLock(before));
  expect(await liveSnapshots()).toEqual([]);
  await ok(['verify', '--repo', repo]);
});
