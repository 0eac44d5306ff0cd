/**
 * The simulated kernel's state is shared by processes: a script creates a
 * snapshot in one process, takes it in the next and watches it in a third;
 * several processes hammering ioctls at once do not corrupt it.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as defs from '../../ioctl-defs';
import { DirLock } from '../../lib/kernel/sim/store';
import { cbtInfo, makeSim, readImage, snapshotInfo, type Sim } from './sim-helpers';

const ROOT = path.resolve(__dirname, '../..');
const HELPERS = path.join(__dirname, 'sim-helpers.ts');

/** Runs `body` (JS with `h` = sim-helpers, `sim` = the opened sim, `arg` = JSON) in a fresh node process. */
function child(sim: Sim, body: string, arg: unknown = null): Promise<{ code: number; out: string; err: string }> {
  const script = `
    const swc = require('@swc/core');
    const fs = require('fs');
    require.extensions['.ts'] = function (m, filename) {
      const out = swc.transformSync(fs.readFileSync(filename, 'utf8'), {
        filename, jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' },
      });
      m._compile(out.code, filename);
    };
    const h = require(${JSON.stringify(HELPERS)});
    const defs = require(${JSON.stringify(path.join(ROOT, 'ioctl-defs/index.ts'))});
    const sim = h.openSim(process.env.SIM_WORK, process.env.SIM_FLAVOUR);
    const arg = JSON.parse(process.env.SIM_ARG);
    (async () => { ${body} })().then(
      (r) => { process.stdout.write(JSON.stringify(r === undefined ? null : r)); },
      (e) => { process.stderr.write(String(e && e.stack || e)); process.exit(3); });
  `;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', script], {
      cwd: ROOT,
      env: { ...process.env, SIM_WORK: sim.dir, SIM_FLAVOUR: sim.flavour, SIM_ARG: JSON.stringify(arg) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

async function childOk(sim: Sim, body: string, arg: unknown = null): Promise<any> {
  const r = await child(sim, body, arg);
  if (r.code !== 0) throw new Error(`child failed (${r.code}): ${r.err}`);
  return JSON.parse(r.out);
}

describe.each(['upstream', 'standalone'] as const)('simulated %s kernel across processes', (flavour) => {
  let sim: Sim;
  beforeEach(async () => {
    sim = await makeSim(flavour);
  });
  afterEach(() => sim.cleanup());

  test('create in one process, take in the next, watch in a third, read in the parent', async () => {
    const dev = path.join(sim.dir, 'disk.img');
    await sim.admin.createDevice(dev, 1 << 20);
    await sim.admin.writeDevice(dev, 0, Buffer.alloc(64 * 1024, 0x61));
    const storage = path.join(sim.dir, 'diff');
    fs.mkdirSync(storage);

    const idHex: string = await childOk(sim, `
      h.filterCall(sim, arg.dev, 'attach');
      const id = h.createSnapshot(sim, arg.storage, 16n);
      h.snapshotAdd(sim, arg.dev, id);
      return id.toString('hex');
    `, { dev, storage });
    const image: string = await childOk(sim, `
      h.take(sim, Buffer.from(arg.id, 'hex'));
      return h.snapshotInfo(sim, arg.dev).image;
    `, { id: idHex, dev });
    expect(snapshotInfo(sim, dev).image).toBe(image);
    const atTake = fs.readFileSync(dev);

    const watcher = child(sim, `
      const ev = await h.waitEvent(sim, Buffer.from(arg.id, 'hex'), 2500);
      return { code: ev.code, data: defs.blksnap_event_corrupted.decode(ev.data) };
    `, { id: idHex });
    // The storage holds 16 sectors = two 4 KiB chunks: the write to a third chunk overflows it.
    for (let c = 0; c < 3; c++) await sim.admin.writeDevice(dev, c * 4096, Buffer.alloc(100, 0x62));
    const w = await watcher;
    expect(w.code).toBe(0);
    const st = await sim.admin.state();
    const d = st.devices.find((x) => x.path === fs.realpathSync(dev))!;
    expect(JSON.parse(w.out)).toEqual({ code: 0, data: { dev_id_mj: d.major, dev_id_mn: d.minor, err_code: 28 } });
    expect(snapshotInfo(sim, dev).error_code).toBe(-28);

    // A new snapshot, taken by a child, read here: the image is the device at TAKE.
    await childOk(sim, `h.destroy(sim, Buffer.from(arg.id, 'hex'));`, { id: idHex });
    const id2: string = await childOk(sim, `
      const id = h.createSnapshot(sim, arg.storage, 4096n);
      h.snapshotAdd(sim, arg.dev, id);
      h.take(sim, id);
      return id.toString('hex');
    `, { dev, storage });
    const frozen = fs.readFileSync(dev);
    expect(frozen.equals(atTake)).toBe(false);
    fs.writeFileSync(dev, Buffer.alloc(8192, 0x63), { flag: 'r+' });
    expect((await readImage(sim, snapshotInfo(sim, dev).image)).equals(frozen)).toBe(true);
    expect(cbtInfo(sim, dev).changes_number).toBe(2);
    await childOk(sim, `h.destroy(sim, Buffer.from(arg.id, 'hex'));`, { id: id2 });
    expect((await sim.admin.state()).snapshots).toEqual([]);
  }, 30_000);
});

test('several processes hammering ioctls at once leave a consistent state', async () => {
  const sim = await makeSim('upstream');
  try {
    const storage = path.join(sim.dir, 'diff');
    fs.mkdirSync(storage);
    const N = 4;
    const ROUNDS = 12;
    const devs: string[] = [];
    for (let i = 0; i < N; i++) {
      const p = path.join(sim.dir, `d${i}.img`);
      fs.writeFileSync(p, Buffer.alloc(256 * 1024));
      devs.push(p);
    }
    const results = await Promise.all(devs.map((dev, i) => childOk(sim, `
      h.filterCall(sim, arg.dev, 'attach');
      const seen = [];
      for (let r = 0; r < arg.rounds; r++) {
        await sim.admin.writeDevice(arg.dev, (r % 16) * 4096, Buffer.alloc(10, r + 1));
        const id = h.createSnapshot(sim, arg.storage, 4096n);
        h.snapshotAdd(sim, arg.dev, id);
        h.take(sim, id);
        seen.push(h.cbtInfo(sim, arg.dev).changes_number);
        const mem = sim.platform.transport.userMemory();
        const c = defs.blksnap_snapshot_collect.encode({ count: 0, ids: 0n });
        h.call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_COLLECT, c, mem);
        h.destroy(sim, id);
      }
      return seen;
    `, { dev, storage, rounds: ROUNDS, i })));
    for (const seen of results) expect(seen).toEqual(Array.from({ length: ROUNDS }, (_, r) => r + 1));
    const st = await sim.admin.state();
    expect(st.snapshots).toEqual([]);
    expect(st.devices.map((d) => d.minor).sort((a, b) => a - b)).toEqual([0, 1, 2, 3]);
    for (const dev of devs) {
      const info = cbtInfo(sim, fs.realpathSync(dev));
      expect(info.changes_number).toBe(ROUNDS);
      const m = (await sim.admin.cbtMaps(dev))!;
      // Every round wrote block r % 16 (4 KiB blocks) before its TAKE r+1.
      for (let b = 0; b < 12; b++) expect(m.read[b]).toBe(b + 1);
    }
    expect(fs.readdirSync(path.join(sim.dir, 'state', 'dev'))).toEqual([]);
  } finally {
    sim.cleanup();
  }
}, 60_000);

test('a lock left by a dead process is broken; a live holder makes others wait, then time out', async () => {
  const sim = await makeSim('upstream');
  try {
    const lockFile = path.join(sim.dir, 'state', 'lock');
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.on('close', r));
    fs.writeFileSync(lockFile, `${dead.pid} ${require('os').hostname()} ${Date.now()}\n`);
    const v = Buffer.alloc(8);
    sim.platform.transport.ioctl(sim.control, defs.IOCTL_BLKSNAP_VERSION, v, sim.platform.transport.userMemory());
    await sim.admin.setHz(100);
    expect((await sim.admin.state()).hz).toBe(100);
    expect(fs.existsSync(lockFile)).toBe(false);
    // A live holder (this very process, under another lock object).
    const held = new DirLock(lockFile);
    held.acquire();
    try {
      expect(() => new DirLock(lockFile).acquire({ timeoutMs: 100 })).toThrow(/locked by pid/);
    } finally {
      held.release();
    }
  } finally {
    sim.cleanup();
  }
});
