/**
 * The snapshot domain on the simulated kernel: the one-call snapshot
 * (attach, create, add, take, images), its rollback when a device cannot be
 * added, difference storage placement, records, the event watcher and the
 * cleanup of snapshots left by a killed process.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BusyError, NotFoundError, SnapshotOverflowError, UsageError } from '../../lib/errors';
import { SnapshotId, newRecord } from '../../lib/kernel';
import { SnapshotSession, cleanupSnapshots, listSnapshots, recordsOf } from '../../lib/snapshot';
import { simFixture } from './kernel-fixture';
import type { SimFixture } from './kernel-fixture';

jest.setTimeout(60_000);

const MiB = 1024 * 1024;
const LIMIT = 64n * BigInt(MiB);

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 17 + seed) & 0xff;
  return b;
}

describe.each(['upstream', 'standalone'] as const)('snapshot session (%s sim)', (flavour) => {
  let fx: SimFixture;
  const sessions: SnapshotSession[] = [];

  beforeAll(async () => {
    fx = await simFixture(flavour);
  });
  afterEach(async () => {
    for (const s of sessions.splice(0)) await s.destroy().catch(() => undefined);
  });
  afterAll(async () => {
    expect(await fx.hazards()).toEqual([]);
    await fx.cleanup();
  });

  async function collect(): Promise<string[]> {
    const c = fx.kernel.control();
    try {
      return (await c.collectSnapshots()).map(String);
    } finally {
      c.close();
    }
  }

  async function start(options: Partial<Parameters<typeof SnapshotSession.create>[1]> & { devices: string[] }): Promise<SnapshotSession> {
    const s = await SnapshotSession.create(fx.kernel, { limitBytes: LIMIT, diffStorage: fx.storageDir, ...options });
    sessions.push(s);
    return s;
  }

  test('two devices (one named twice): attached, created, added, taken; images equal the devices at take', async () => {
    const a = await fx.makeDevice(4 * MiB);
    const b = await fx.makeDevice(8 * MiB);
    await fx.writeDevice(a, 0, pattern(4 * MiB, 1));
    await fx.writeDevice(b, 0, pattern(8 * MiB, 2));
    const link = path.join(fx.simDir, 'link-to-a');
    fs.symlinkSync(a, link);
    const s = await start({ devices: [a, b, link], purpose: 'test' });
    expect(s.devices.map((d) => d.identity.path)).toEqual([a, b]);
    expect(s.newlyAttached).toEqual([a, b]);
    expect(s.taken).toBe(true);
    expect(s.diffStorage).toMatchObject({ path: fx.storageDir, kind: 'directory', source: 'given' });
    await fx.writeDevice(a, 0, pattern(MiB, 99)); // after take
    for (const [d, seed, size] of [[s.devices[0], 1, 4 * MiB], [s.devices[1], 2, 8 * MiB]] as const) {
      const reader = await fx.kernel.openImage(d.imagePath as string);
      const got = Buffer.alloc(size);
      await reader.read(got, size, 0n);
      await reader.close();
      expect(got.equals(pattern(size, seed))).toBe(true);
    }
    const record = recordsOf(fx.kernel).read(s.id.toString());
    expect(record).toMatchObject({ id: s.id.toString(), pid: process.pid, host: os.hostname(), devices: [a, b], diffStorage: fx.storageDir, purpose: 'test' });
    expect(record?.images).toEqual({ [a]: s.devices[0].imagePath, [b]: s.devices[1].imagePath });
    expect(record?.takenAt).toBeTruthy();

    const listed = await listSnapshots(fx.kernel);
    expect(listed.map((l) => l.id.toString())).toEqual([s.id.toString()]);
    expect(listed[0]).toMatchObject({ devices: [a, b], orphaned: false });

    await s.destroy();
    await s.destroy(); // idempotent
    expect(s.destroyed).toBe(true);
    expect(await collect()).toEqual([]);
    expect(recordsOf(fx.kernel).read(s.id.toString())).toBeNull();
    // Tracking stays attached after the snapshot is gone.
    expect((await fx.kernel.device(a).cbtInfo()).changesNumber).toBe(1);
  });

  test('a device that was already attached is not reported as newly attached', async () => {
    const a = await fx.makeDevice(4 * MiB);
    await fx.kernel.device(a).attach();
    const s = await start({ devices: [a] });
    expect(s.devices[0].newlyAttached).toBe(false);
    expect(s.newlyAttached).toEqual([]);
  });

  test('if adding a device fails, the snapshot just created is destroyed before the error', async () => {
    const a = await fx.makeDevice(4 * MiB);
    const b = await fx.makeDevice(4 * MiB);
    const holder = await start({ devices: [b] }); // b now belongs to another snapshot
    const before = await collect();
    const err = await SnapshotSession.create(fx.kernel, { devices: [a, b], limitBytes: LIMIT, diffStorage: fx.storageDir }).catch((e) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect(err.message).toContain('belongs to another snapshot');
    expect(await collect()).toEqual(before);
    expect(recordsOf(fx.kernel).list().map((r) => r.id)).toEqual([holder.id.toString()]);
    // The failed create stopped the tracker it had started on `a`; `b` keeps its own.
    await expect(fx.kernel.device(a).cbtInfo()).rejects.toThrow(/no change tracker|not attached|attach/i);
    await expect(fx.kernel.device(b).cbtInfo()).resolves.toMatchObject({ blockCount: expect.any(Number) });
    // `a` was added to the destroyed snapshot; it is free again.
    await fx.kernel.device(a).attach();
    const control = fx.kernel.control();
    const probe = await control.createSnapshot(fx.storageDir, 2048n);
    await fx.kernel.device(a).addToSnapshot(probe);
    await control.destroySnapshot(probe);
    control.close();
  });

  test('difference storage on a snapshotted device is refused before anything changes', async () => {
    const a = await fx.makeDevice(4 * MiB);
    const mountpoint = await fx.dirOnDevice?.(a);
    const before = await collect();
    const err = await SnapshotSession.create(fx.kernel, { devices: [a], limitBytes: LIMIT, diffStorage: mountpoint as string }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain(`a device being snapshotted (${a})`);
    expect(await collect()).toEqual(before);
    await expect(fx.kernel.device(a).cbtInfo()).rejects.toThrow(/not attached/);
  });

  test('a regular file already used by a live snapshot is refused', async () => {
    const a = await fx.makeDevice(4 * MiB);
    const b = await fx.makeDevice(4 * MiB);
    const file = fx.storageFile(`shared-${flavour}.diff`);
    fs.writeFileSync(file, '');
    const first = await start({ devices: [a], diffStorage: file, limitBytes: 8n * BigInt(MiB) });
    const err = await SnapshotSession.create(fx.kernel, { devices: [b], diffStorage: file, limitBytes: 8n * BigInt(MiB) }).catch((e) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect(err.message).toContain(`already used by snapshot ${first.id}`);
    await first.destroy();
    await start({ devices: [b], diffStorage: file, limitBytes: 8n * BigInt(MiB) });
  });

  test('difference storage choice: configured dir, else the first safe candidate, else refuse listing the options', async () => {
    const a = await fx.makeDevice(4 * MiB);
    const configured = await start({ devices: [a], diffStorage: undefined, configuredDiffStorageDir: fx.storageDir });
    expect(configured.diffStorage).toMatchObject({ source: 'configured', path: fx.storageDir });
    expect(configured.diffStorage.reason).toContain('configured diff_storage_dir');
    await configured.destroy();

    const missing = path.join(fx.simDir, 'no-such-dir');
    const auto = await start({ devices: [a], diffStorage: undefined, diffStorageCandidates: [missing, fx.storageDir] });
    expect(auto.diffStorage).toMatchObject({ source: 'automatic', path: fx.storageDir, kind: 'directory' });
    expect(auto.diffStorage.reason).toContain(fx.storageDir);
    await auto.destroy();

    const onDevice = await fx.dirOnDevice?.(a);
    const err = await SnapshotSession.create(fx.kernel, { devices: [a], limitBytes: LIMIT, diffStorageCandidates: [missing, onDevice as string] }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain(`${missing}: does not exist`);
    expect(err.message).toContain(`${onDevice}: difference storage would be on`);
    expect(err.hint).toContain('--diff-storage');

    // A candidate without room for the limit is skipped, with the reason.
    const huge = await SnapshotSession.create(fx.kernel, { devices: [a], limitBytes: 1n << 60n, diffStorageCandidates: [fx.storageDir] }).catch((e) => e);
    expect(huge).toBeInstanceOf(UsageError);
    expect(huge.message).toMatch(new RegExp(`${fx.storageDir}: only \\d+ bytes free, the limit is ${1n << 60n}`));
  });

  test('bad input: no devices, zero limit, a missing device — nothing changes', async () => {
    const before = await collect();
    await expect(SnapshotSession.create(fx.kernel, { devices: [], limitBytes: LIMIT })).rejects.toThrow(UsageError);
    const a = await fx.makeDevice(4 * MiB);
    await expect(SnapshotSession.create(fx.kernel, { devices: [a], limitBytes: 0n, diffStorage: fx.storageDir })).rejects.toThrow(/must be greater than 0/);
    await expect(SnapshotSession.create(fx.kernel, { devices: [a, path.join(fx.simDir, 'nope.img')], limitBytes: LIMIT, diffStorage: fx.storageDir })).rejects.toThrow(NotFoundError);
    expect(await collect()).toEqual(before);
    await expect(fx.kernel.device(a).cbtInfo()).rejects.toThrow(/not attached/);
  });

  test('noTake: created and added, no images until take()', async () => {
    const a = await fx.makeDevice(4 * MiB);
    const s = await start({ devices: [a], noTake: true });
    expect(s.taken).toBe(false);
    expect(s.devices[0].imagePath).toBeNull();
    expect(await fx.kernel.device(a).snapshotInfo()).toMatchObject({ imageName: '' });
    await s.take();
    expect(s.taken).toBe(true);
    expect(s.devices[0].imagePath).toBeTruthy();
    expect(recordsOf(fx.kernel).read(s.id.toString())?.takenAt).toBeTruthy();
  });

  test('the watcher reports an overflow; checkHealth fails with SnapshotOverflowError; destroy ends the watcher', async () => {
    const a = await fx.makeDevice(16 * MiB);
    const seen: string[] = [];
    const s = await start({ devices: [a], limitBytes: BigInt(MiB), watch: true, onEvent: (e) => seen.push(e.code) });
    await fx.writeDevice(a, 0, pattern(16 * MiB, 4));
    for (let i = 0; i < 100 && !s.watcher?.failed; i++) await new Promise((r) => setTimeout(r, 100));
    expect(s.watcher?.overflowed).toBe(true);
    expect(seen.length).toBeGreaterThan(0);
    const err = await s.checkHealth().catch((e) => e);
    expect(err).toBeInstanceOf(SnapshotOverflowError);
    expect(err.message).toContain('overflowed its difference storage');
    await s.destroy();
    expect(s.watcher?.ended).not.toBeNull();
  });

  test('cleanup destroys only snapshots whose recorded creator is dead', async () => {
    const mine = await start({ devices: [await fx.makeDevice(4 * MiB)] });
    const records = recordsOf(fx.kernel);
    // A dead creator whose snapshot is already gone: a stale record.
    const gone = newRecord({ id: '0badc0de-0000-4000-8000-000000000000', devices: [], diffStorage: fx.storageDir, purpose: 'test' });
    gone.pid = await deadPid();
    records.write(gone);
    // A snapshot created by a child process that is then killed.
    const orphanDevice = await fx.makeDevice(4 * MiB);
    const orphanId = await createInChild(fx, orphanDevice);
    expect(await collect()).toContain(orphanId);
    const listed = await listSnapshots(fx.kernel);
    expect(listed.find((l) => l.id.toString() === orphanId)).toMatchObject({ orphaned: true, devices: [orphanDevice] });

    const result = await cleanupSnapshots(fx.kernel);
    expect(result.destroyed).toEqual([orphanId]);
    expect(result.staleRecords).toEqual([gone.id]);
    expect(result.kept).toEqual([{ id: mine.id.toString(), reason: `creator process ${process.pid} is running` }]);
    expect(await collect()).toEqual([mine.id.toString()]);
    expect(records.list().map((r) => r.id)).toEqual([mine.id.toString()]);
    expect(await fx.kernel.device(orphanDevice).snapshotInfo()).toEqual({ errorCode: 0, imageName: '', imagePath: null });
    // Running it again changes nothing.
    expect(await cleanupSnapshots(fx.kernel)).toEqual({ destroyed: [], staleRecords: [], kept: result.kept });
  });

  test('cleanup leaves alone a snapshot handed to the user (keep) whose creator exited', async () => {
    const device = await fx.makeDevice(4 * MiB);
    const id = await createInChild(fx, device, { keep: true, exit: 'normal' });
    const listed = await listSnapshots(fx.kernel);
    expect(listed.find((l) => l.id.toString() === id)).toMatchObject({ orphaned: false, devices: [device] });
    const result = await cleanupSnapshots(fx.kernel);
    expect(result.destroyed).toEqual([]);
    expect(result.kept.map((k) => k.id)).toEqual([id]);
    expect(result.kept[0].reason).toContain('kept on purpose');
    expect(await collect()).toEqual([id]);
    // The user ends it from any process; its record goes with it.
    const control = fx.kernel.control();
    await control.destroySnapshot(SnapshotId.parse(id));
    control.close();
    expect(recordsOf(fx.kernel).list()).toEqual([]);
  });
});

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  const pid = child.pid as number;
  await new Promise((r) => child.on('exit', r));
  return pid;
}

/**
 * A child process (TypeScript compiled on the fly by @swc/core) creates a
 * snapshot and prints its id; then it is SIGKILLed, or exits normally.
 */
async function createInChild(fx: SimFixture, device: string, how: { keep?: boolean; exit?: 'kill' | 'normal' } = {}): Promise<string> {
  const root = path.resolve(__dirname, '../..');
  const script = `
    const fs = require('fs');
    const swc = require(${JSON.stringify(require.resolve('@swc/core'))});
    require.extensions['.ts'] = (m, filename) => {
      const out = swc.transformSync(fs.readFileSync(filename, 'utf8'), { filename, jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } });
      m._compile(out.code, filename);
    };
    const { createKernel } = require(${JSON.stringify(path.join(root, 'lib/kernel/index.ts'))});
    const { SnapshotSession } = require(${JSON.stringify(path.join(root, 'lib/snapshot/index.ts'))});
    (async () => {
      const kernel = await createKernel({ kernel: 'sim', simDir: ${JSON.stringify(fx.simDir)}, simFlavour: ${JSON.stringify(fx.flavour)} });
      const s = await SnapshotSession.create(kernel, { devices: [${JSON.stringify(device)}], limitBytes: ${LIMIT}n, diffStorage: ${JSON.stringify(fx.storageDir)}, purpose: 'child', keep: ${!!how.keep} });
      process.stdout.write(s.id.toString() + '\\n');
      if (${how.exit === 'normal'}) process.exit(0);
      setInterval(() => {}, 1000);
    })().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BLKSNAP_RUN_DIR: '' } });
  const exited = new Promise((r) => child.on('close', r));
  let out = '';
  let err = '';
  child.stderr.on('data', (c) => { err += c; });
  const id = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (c) => {
      out += c;
      if (out.includes('\n')) resolve(out.trim());
    });
    // 'close' comes after stdout is drained, so a child that printed its id and exited has resolved first.
    child.on('close', (code) => reject(new Error(`child exited ${code} before printing an id: ${err}`)));
  });
  if (how.exit !== 'normal') child.kill('SIGKILL');
  await exited;
  expect(SnapshotId.isValid(id)).toBe(true);
  return id;
}
