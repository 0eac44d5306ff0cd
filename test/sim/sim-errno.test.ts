/**
 * Every ioctl and every errno case of blksnap-abi.md (§2, §3, §7) on the
 * simulated kernel, through the real codecs, in both flavours.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as defs from '../../ioctl-defs';
import { ioctl as ioctlDef, struct, u32 } from '../../ioctl-defs';
import { errnoName } from '../../lib/errors';
import {
  attachedDevice, call, cbtInfo, cbtMap, createSnapshot, cstr, ctl, destroy, errnoOf, errnoOfAsync, filterCall, makeSim,
  markDirty, readImage, snapshotAdd, snapshotInfo, take, waitEvent, type Sim,
} from './sim-helpers';

const MiB = 1 << 20;

describe.each(['upstream', 'standalone'] as const)('simulated %s kernel', (flavour) => {
  let sim: Sim;
  let storageDir: string;
  beforeEach(async () => {
    sim = await makeSim(flavour);
    storageDir = path.join(sim.dir, 'diff');
    fs.mkdirSync(storageDir);
  });
  afterEach(() => sim.cleanup());

  const t = () => sim.platform.transport;

  describe('control device', () => {
    test('an unknown request or a wrong size answers ENOTTY', () => {
      const wrongSize = ioctlDef('IOCTL_BLKSNAP_VERSION', 'read', 'V', 0, struct('v16', [['a', u32], ['b', u32], ['c', u32], ['d', u32]]));
      expect(errnoOf(() => call(sim, sim.control, wrongSize, Buffer.alloc(16)))).toBe('ENOTTY');
      expect(errnoOf(() => call(sim, sim.control, defs.BLKFILTER_CTL, Buffer.alloc(48)))).toBe('ENOTTY');
      const nr9 = ioctlDef('X', 'read', 'V', 9, defs.blksnap_version);
      expect(errnoOf(() => call(sim, sim.control, nr9, Buffer.alloc(8)))).toBe('ENOTTY');
    });

    test('the other flavour\'s control device does not exist', () => {
      const other = flavour === 'upstream' ? '/dev/veeamblksnap' : '/dev/blksnap-control';
      expect(errnoOf(() => t().open(other, { access: 'readwrite' }))).toBe('ENOENT');
      if (flavour === 'upstream') expect(errnoOf(() => t().open('/dev/bdevfilter', { access: 'readwrite' }))).toBe('ENOENT');
    });

    test('IOCTL_BLKSNAP_MOD: standalone answers "standalone" with flags 0x2; upstream has none', () => {
      const arg = Buffer.alloc(defs.blksnap_mod.size, 0xee);
      if (flavour === 'standalone') {
        expect(call(sim, sim.control, defs.IOCTL_BLKSNAP_MOD, arg)).toBe(0);
        expect(defs.blksnap_mod.decode(arg)).toEqual({ compatibility_flags: 2n, name: 'standalone' });
      } else {
        expect(errnoOf(() => call(sim, sim.control, defs.IOCTL_BLKSNAP_MOD, arg))).toBe('ENOTTY');
      }
    });

    test('IOCTL_BLKSNAP_SETLOG: validated and recorded (standalone), ENOTTY upstream', async () => {
      const mem = t().userMemory();
      const logPath = path.join(sim.dir, 'module.log');
      const p = cstr(logPath);
      const setlog = (v: Partial<defs.BlksnapSetlog>) => call(sim, sim.control, defs.IOCTL_BLKSNAP_SETLOG, defs.blksnap_setlog.encode(v), mem);
      if (flavour === 'upstream') {
        expect(errnoOf(() => setlog({ level: 6, filepath_size: p.length, filepath: mem.pin(p) }))).toBe('ENOTTY');
        return;
      }
      expect(errnoOf(() => setlog({ level: 6, filepath_size: 0, filepath: mem.pin(p) }))).toBe('EINVAL');
      expect((await sim.admin.state()).setlog).toBeNull();
      expect(setlog({ level: 6, tz_minuteswest: -60, filepath_size: p.length - 1, filepath: mem.pin(p) })).toBe(0);
      expect((await sim.admin.state()).setlog).toEqual({ level: 6, tzMinutesWest: -60, filePath: logPath, enabled: true });
      expect(fs.existsSync(logPath)).toBe(true);
      expect(setlog({ level: -1, filepath_size: 0, filepath: 0n })).toBe(0);
      expect((await sim.admin.state()).setlog!.enabled).toBe(false);
      expect(setlog({ level: 7, filepath_size: 0, filepath: 0n })).toBe(0);
      expect((await sim.admin.state()).setlog!.enabled).toBe(false);
    });

    test('SNAPSHOT_CREATE: storage path errors', () => {
      expect(errnoOf(() => createSnapshot(sim, path.join(sim.dir, 'missing'), 100n))).toBe('ENOENT');
      expect(errnoOf(() => createSnapshot(sim, '/dev/null', 100n))).toBe('EINVAL');
      const mem = t().userMemory();
      const arg = defs.blksnap_snapshot_create.encode({ diff_storage_limit_sect: 8n, diff_storage_filename: 0n });
      expect(errnoOf(() => call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_CREATE, arg, mem))).toBe('EFAULT');
    });

    test('SNAPSHOT_CREATE: "" and relative paths are resolved against the caller\'s cwd; the id is written back', async () => {
      const cwd = process.cwd();
      try {
        process.chdir(storageDir);
        fs.writeFileSync(path.join(storageDir, 'rel.diff'), '');
        const mem = t().userMemory();
        const arg = defs.blksnap_snapshot_create.encode({ diff_storage_limit_sect: 64n, diff_storage_filename: mem.pin(cstr('rel.diff')) });
        const sent = Buffer.from(arg);
        expect(call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_CREATE, arg, mem)).toBe(0);
        const got = defs.blksnap_snapshot_create.decode(arg);
        expect(got.id.b.equals(Buffer.alloc(16))).toBe(false);
        expect(arg.subarray(0, 16).equals(sent.subarray(0, 16))).toBe(true);
        createSnapshot(sim, '', 64n);
      } finally {
        process.chdir(cwd);
      }
      const s = await sim.admin.state();
      expect(s.snapshots.map((x) => [x.storage.kind, x.storage.path])).toEqual([
        ['file', fs.realpathSync(path.join(storageDir, 'rel.diff'))],
        ['directory', fs.realpathSync(storageDir)],
      ]);
    });

    test('SNAPSHOT_CREATE: a regular file is grown to the limit, never shrunk; the same file twice is accepted', () => {
      const f = path.join(storageDir, 'grow.diff');
      fs.writeFileSync(f, '');
      createSnapshot(sim, f, 40n);
      expect(fs.statSync(f).size).toBe(40 * 512);
      createSnapshot(sim, f, 40n);
      expect(fs.statSync(f).size).toBe(40 * 512);
      const g = path.join(storageDir, 'over.diff');
      fs.writeFileSync(g, Buffer.alloc(30 * 512));
      expect(errnoOf(() => createSnapshot(sim, g, 20n))).toBe('ENOSPC');
      expect(fs.statSync(g).size).toBe(30 * 512);
    });

    test('SNAPSHOT_CREATE: a block device is held exclusively; too small a limit is ENOSPC', async () => {
      const dev = path.join(sim.dir, 'store.img');
      await sim.admin.createDevice(dev, 16 * 1024);
      expect(errnoOf(() => createSnapshot(sim, dev, 8n))).toBe('ENOSPC');
      const id = createSnapshot(sim, dev, 32n);
      expect(errnoOf(() => createSnapshot(sim, dev, 32n))).toBe('EBUSY');
      expect(errnoOf(() => t().open(dev, { access: 'readwrite', exclusive: true }))).toBe('EBUSY');
      expect((await sim.admin.state()).snapshots[0].storage.kind).toBe('block_device');
      destroy(sim, id);
      const fd = t().open(dev, { access: 'readwrite', exclusive: true });
      t().close(fd);
    });

    test('TAKE, DESTROY: ESRCH, EALREADY, ENODEV; a snapshot with no device stays usable', async () => {
      const dev = await attachedDevice(sim, 'd.img', MiB);
      const unknown = Buffer.alloc(16, 7);
      expect(errnoOf(() => take(sim, unknown))).toBe('ESRCH');
      expect(errnoOf(() => destroy(sim, unknown))).toBe('ENODEV');
      const id = createSnapshot(sim, storageDir, 64n);
      expect(errnoOf(() => take(sim, id))).toBe('ENODEV');
      snapshotAdd(sim, dev, id);
      expect(take(sim, id)).toBe(0);
      expect(errnoOf(() => take(sim, id))).toBe('EALREADY');
      expect(destroy(sim, id)).toBe(0);
      expect(errnoOf(() => destroy(sim, id))).toBe('ENODEV');
    });

    test('COLLECT: ids 0 gives the count; a short array is ENODATA with count unchanged and filled', () => {
      const ids = [createSnapshot(sim, storageDir, 8n), createSnapshot(sim, storageDir, 8n), createSnapshot(sim, storageDir, 8n)];
      const mem = t().userMemory();
      const a0 = defs.blksnap_snapshot_collect.encode({ count: 99, ids: 0n });
      expect(call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_COLLECT, a0, mem)).toBe(0);
      expect(defs.blksnap_snapshot_collect.decode(a0).count).toBe(3);
      const arr = Buffer.alloc(2 * 16);
      const a1 = defs.blksnap_snapshot_collect.encode({ count: 2, ids: mem.pin(arr) });
      expect(errnoOf(() => call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_COLLECT, a1, mem))).toBe('ENODATA');
      expect(defs.blksnap_snapshot_collect.decode(a1).count).toBe(2);
      expect(arr.equals(Buffer.concat(ids.slice(0, 2)))).toBe(true);
      const big = Buffer.alloc(5 * 16);
      const a2 = defs.blksnap_snapshot_collect.encode({ count: 5, ids: mem.pin(big) });
      expect(call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_COLLECT, a2, mem)).toBe(0);
      expect(defs.blksnap_snapshot_collect.decode(a2).count).toBe(3);
      expect(big.subarray(0, 48).equals(Buffer.concat(ids))).toBe(true);
    });

    test('WAIT_EVENT: ESRCH for an unknown id; ENOENT after the timeout counted in jiffies', async () => {
      expect(await errnoOfAsync(() => waitEvent(sim, Buffer.alloc(16, 1), 1))).toBe('ESRCH');
      const id = createSnapshot(sim, storageDir, 8n);
      const start = Date.now();
      expect(await errnoOfAsync(() => waitEvent(sim, id, 50))).toBe('ENOENT');
      // 50 jiffies at HZ 250 are 200 ms, not 50 ms (§7): a lower bound only.
      expect(Date.now() - start).toBeGreaterThanOrEqual(190);
      const arg = defs.blksnap_snapshot_event.encode({ id: { b: id }, timeout_ms: 0 });
      expect(errnoOf(() => call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, arg))).toBe('ENOENT');
    });

    test('WAIT_EVENT: a waiter blocked during DESTROY is not woken; it ends at its own timeout', async () => {
      const id = createSnapshot(sim, storageDir, 8n);
      const start = Date.now();
      const waiting = errnoOfAsync(() => waitEvent(sim, id, 75));
      await new Promise((r) => setTimeout(r, 50));
      destroy(sim, id);
      expect(await waiting).toBe('ENOENT');
      expect(Date.now() - start).toBeGreaterThanOrEqual(290);
      expect(await errnoOfAsync(() => waitEvent(sim, id, 1))).toBe('ESRCH');
    });
  });

  describe('filter', () => {
    test('ATTACH: EALREADY twice; another filter name ENOENT', async () => {
      const dev = path.join(sim.dir, 'a.img');
      await sim.admin.createDevice(dev, MiB);
      expect(errnoOf(() => filterCall(sim, dev, 'attach', 'dm-snap'))).toBe('ENOENT');
      expect(filterCall(sim, dev, 'attach')).toBe(0);
      expect(errnoOf(() => filterCall(sim, dev, 'attach'))).toBe('EALREADY');
    });

    test('device paths: standalone ENOTBLK / ENOENT / EINVAL; upstream ENOTTY on a non-device fd', () => {
      if (flavour === 'standalone') {
        // Node's errno table lacks ENOTBLK; lib/errors names errno 15 itself.
        const ENOTBLK = errnoName(15);
        expect(ENOTBLK).toBe('ENOTBLK');
        expect(errnoOf(() => filterCall(sim, storageDir, 'attach'))).toBe(ENOTBLK);
        expect(errnoOf(() => filterCall(sim, '/dev/null', 'attach'))).toBe(ENOTBLK);
        expect(errnoOf(() => filterCall(sim, path.join(sim.dir, 'nope'), 'attach'))).toBe('ENOENT');
        expect(errnoOf(() => filterCall(sim, '', 'attach'))).toBe('EINVAL');
      } else {
        const fd = t().open(storageDir, { access: 'read' });
        expect(errnoOf(() => call(sim, fd, defs.BLKFILTER_ATTACH, defs.blkfilter_attach.encode({ name: 'blksnap' })))).toBe('ENOTTY');
        t().close(fd);
        expect(errnoOf(() => call(sim, sim.control, defs.BLKFILTER_ATTACH, defs.blkfilter_attach.encode({ name: 'blksnap' })))).toBe('ENOTTY');
      }
    });

    test('DETACH: ENOENT when nothing is attached; another name is EINVAL and recorded as a hazard', async () => {
      const dev = path.join(sim.dir, 'a.img');
      await sim.admin.createDevice(dev, MiB);
      expect(errnoOf(() => filterCall(sim, dev, 'detach'))).toBe('ENOENT');
      filterCall(sim, dev, 'attach');
      expect((await sim.admin.state()).realKernelCorrupted).toBe(false);
      expect(errnoOf(() => filterCall(sim, dev, 'detach', 'other'))).toBe('EINVAL');
      const s = await sim.admin.state();
      expect(s.realKernelCorrupted).toBe(true);
      expect(s.hazards[0].path).toBe(fs.realpathSync(dev));
      expect(filterCall(sim, dev, 'detach')).toBe(0);
      expect(errnoOf(() => cbtInfo(sim, dev))).toBe('ENOENT');
    });

    test('CTL: ENOENT without a filter; another name ENOENT (standalone) / EINVAL (upstream)', async () => {
      const dev = path.join(sim.dir, 'a.img');
      await sim.admin.createDevice(dev, MiB);
      const buf = Buffer.alloc(40);
      expect(errnoOf(() => ctl(sim, dev, defs.BLKSNAP_CTL.CBTINFO, buf))).toBe('ENOENT');
      filterCall(sim, dev, 'attach');
      expect(errnoOf(() => ctl(sim, dev, defs.BLKSNAP_CTL.CBTINFO, buf, { name: 'other' }))).toBe(flavour === 'upstream' ? 'EINVAL' : 'ENOENT');
    });

    test('CTL: optlen smaller than the struct EINVAL, opt NULL ENODATA (all five); unknown cmd ENOTTY; optlen never written back', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const sizes = [40, 16, 16, 16, 36];
      for (let cmd = 0; cmd < 5; cmd++) {
        expect(errnoOf(() => ctl(sim, dev, cmd, Buffer.alloc(sizes[cmd]), { optlen: sizes[cmd] - 1 }))).toBe('EINVAL');
        expect(errnoOf(() => ctl(sim, dev, cmd, Buffer.alloc(sizes[cmd]), { opt: null }))).toBe('ENODATA');
      }
      expect(errnoOf(() => ctl(sim, dev, 5, Buffer.alloc(64)))).toBe('ENOTTY');
      expect(errnoOf(() => ctl(sim, dev, 99, Buffer.alloc(64)))).toBe('ENOTTY');
      const { arg } = ctl(sim, dev, defs.BLKSNAP_CTL.CBTINFO, Buffer.alloc(40), { optlen: 1000 });
      const optlenAt = (flavour === 'upstream' ? defs.blkfilter_ctl : defs.bdevfilter_ctl).field('optlen').offset;
      expect(arg.readUInt32LE(optlenAt)).toBe(1000);
    });

    test('CBTINFO geometry follows the module parameters (§4, §6 defaults)', async () => {
      const dflt = await makeSim(flavour, null);
      try {
        const dev = await attachedDevice(dflt, 'big.img', 512 * MiB);
        const i = cbtInfo(dflt, dev);
        expect([i.block_size, i.block_count, i.changes_number, i.device_capacity]).toEqual([65536, 8192, 0, 512n * BigInt(MiB)]);
        await dflt.admin.setModuleParameters({ tracking_block_maximum_count: 1000 });
        const dev2 = await attachedDevice(dflt, 'big2.img', 512 * MiB);
        const i2 = cbtInfo(dflt, dev2);
        expect([i2.block_size, i2.block_count]).toEqual([1 << 20, 512]);
        expect(i2.generation_id.b.equals(i.generation_id.b)).toBe(false);
      } finally {
        dflt.cleanup();
      }
    });

    test('write granularity (§7): 4 KiB at 655360 marks block 10; 8 KiB across a boundary both; the last sector the last block', async () => {
      const dflt = await makeSim(flavour, null);
      try {
        const dev = await attachedDevice(dflt, 'g.img', 4 * MiB);
        await dflt.admin.writeDevice(dev, 655360, Buffer.alloc(4096, 1));
        await dflt.admin.writeDevice(dev, 3 * 65536 - 4096, Buffer.alloc(8192, 1));
        await dflt.admin.writeDevice(dev, 4 * MiB - 512, Buffer.alloc(512, 1));
        const maps = (await dflt.admin.cbtMaps(dev))!;
        expect([...maps.live.keys()].filter((b) => maps.live[b])).toEqual([2, 3, 10, 63]);
      } finally {
        dflt.cleanup();
      }
    });

    test('CBTMAP: ENODATA past the end, length 0 answers 0 anywhere, NULL buffer EINVAL, corrupted map EFAULT', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const mem = t().userMemory();
      const out = Buffer.alloc(300);
      const req = (offset: number, length: number, buffer: bigint) => defs.blksnap_cbtmap.encode({ offset, length, buffer });
      expect(errnoOf(() => ctl(sim, dev, 1, req(200, 57, mem.pin(out)), { memory: mem }))).toBe('ENODATA');
      expect(ctl(sim, dev, 1, req(200, 56, mem.pin(out)), { memory: mem }).result).toBe(0);
      expect(ctl(sim, dev, 1, req(100000, 0, 0n), { memory: mem }).result).toBe(0);
      expect(errnoOf(() => ctl(sim, dev, 1, req(0, 10, 0n), { memory: mem }))).toBe('EINVAL');
      await sim.admin.corruptCbt(dev);
      expect(errnoOf(() => cbtMap(sim, dev))).toBe('EFAULT');
      expect(errnoOf(() => markDirty(sim, dev, [[0n, 8n]]))).toBe('EINVAL');
    });

    test('CBTDIRTY: both maps; past the end EINVAL; a straddling range marks the last live block; {0,0} marks all live blocks then EINVAL', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB); // 256 blocks of 8 sectors
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id); // previous 1, active 2
      expect(markDirty(sim, dev, [[8n, 8n], [80n, 1n]])).toBe(0);
      let m = (await sim.admin.cbtMaps(dev))!;
      expect([m.live[1], m.read[1], m.live[10], m.read[10], m.live[2], m.read[2]]).toEqual([2, 1, 2, 1, 0, 0]);
      expect(cbtMap(sim, dev)[1]).toBe(1);
      expect(errnoOf(() => markDirty(sim, dev, [[2048n, 8n]]))).toBe('EINVAL');
      expect(errnoOf(() => markDirty(sim, dev, [[2040n, 16n]]))).toBe('EINVAL');
      m = (await sim.admin.cbtMaps(dev))!;
      expect([m.live[255], m.read[255]]).toEqual([2, 0]);
      expect(errnoOf(() => markDirty(sim, dev, [[0n, 0n]]))).toBe('EINVAL');
      m = (await sim.admin.cbtMaps(dev))!;
      expect(m.live.every((b) => b === 2)).toBe(true);
      expect(m.read[3]).toBe(0);
      expect(markDirty(sim, dev, [])).toBe(0);
      destroy(sim, id);
    });

    test('SNAPSHOTADD: ESRCH, ENOENT, EALREADY, EBUSY (taken or not); after TAKE a member without image', async () => {
      const a = await attachedDevice(sim, 'a.img', MiB);
      const b = await attachedDevice(sim, 'b.img', MiB);
      const c = path.join(sim.dir, 'c.img');
      await sim.admin.createDevice(c, MiB);
      const s1 = createSnapshot(sim, storageDir, 1000n);
      const s2 = createSnapshot(sim, storageDir, 1000n);
      expect(errnoOf(() => snapshotAdd(sim, a, Buffer.alloc(16, 3)))).toBe('ESRCH');
      expect(errnoOf(() => snapshotAdd(sim, c, s1))).toBe('ENOENT');
      expect(snapshotAdd(sim, a, s1)).toBe(0);
      expect(errnoOf(() => snapshotAdd(sim, a, s1))).toBe('EALREADY');
      expect(errnoOf(() => snapshotAdd(sim, a, s2))).toBe('EBUSY');
      take(sim, s1);
      expect(errnoOf(() => snapshotAdd(sim, a, s2))).toBe('EBUSY');
      expect(snapshotAdd(sim, b, s1)).toBe(0);
      const st = await sim.admin.state();
      expect(st.snapshots[0].members.map((m) => [m.device, m.image === null])).toEqual([[a, false], [b, true]]);
      expect(snapshotInfo(sim, b).image).toBe('');
      expect(snapshotInfo(sim, a).image).not.toBe('');
    });

    test('SNAPSHOTADD of the difference storage\'s own device returns 0 and does nothing; TAKE then ENODEV', async () => {
      const store = await attachedDevice(sim, 'store.img', MiB);
      const id = createSnapshot(sim, store, 2048n);
      expect(snapshotAdd(sim, store, id)).toBe(0);
      expect((await sim.admin.state()).snapshots[0].members).toEqual([]);
      expect(errnoOf(() => take(sim, id))).toBe('ENODEV');
      expect(snapshotInfo(sim, store).image).toBe('');
      // A file storage on a device's filesystem counts as living on that device.
      const mnt = path.join(sim.dir, 'mnt');
      fs.mkdirSync(mnt);
      const fsdev = await attachedDevice(sim, 'fs.img', MiB);
      await sim.admin.addDevice(fsdev, { mountpoint: mnt });
      fs.writeFileSync(path.join(mnt, 'diff'), '');
      const id2 = createSnapshot(sim, path.join(mnt, 'diff'), 64n);
      expect(snapshotAdd(sim, fsdev, id2)).toBe(0);
      expect(errnoOf(() => take(sim, id2))).toBe('ENODEV');
    });

    test('SNAPSHOTINFO copies the caller\'s struct in and sets only what it knows', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const garbage = Buffer.alloc(36, 0x41);
      const r = snapshotInfo(sim, dev, garbage);
      expect(r.error_code).toBe(0);
      expect(r.raw.subarray(4).equals(garbage.subarray(4))).toBe(true);
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const r2 = snapshotInfo(sim, dev, garbage);
      const name = r2.image;
      expect(name.length).toBeGreaterThan(0);
      // strscpy: name and one NUL, the rest as sent.
      expect(r2.raw[4 + name.length]).toBe(0);
      expect(r2.raw[4 + name.length + 1]).toBe(0x41);
    });

    test('DETACH of a device in a taken snapshot succeeds; SNAPSHOTINFO then ENOENT and copy-on-write stops', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      await sim.admin.writeDevice(dev, 0, Buffer.alloc(MiB, 0x10));
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const name = snapshotInfo(sim, dev).image;
      await sim.admin.writeDevice(dev, 0, Buffer.alloc(4096, 0x20)); // copied before the detach
      expect(filterCall(sim, dev, 'detach')).toBe(0);
      expect(errnoOf(() => snapshotInfo(sim, dev))).toBe('ENOENT');
      await sim.admin.writeDevice(dev, 8192, Buffer.alloc(4096, 0x30));
      fs.writeFileSync(dev, Buffer.alloc(4096, 0x40), { flag: 'r+', encoding: null } as never);
      const image = await readImage(sim, name);
      expect(image[0]).toBe(0x10); // chunk copied while attached
      expect(image[8192]).toBe(0x30); // new data shows through
      expect(image[20000]).toBe(0x10);
      expect((await sim.admin.state()).snapshots[0].members[0].image!.errorCode).toBe(0);
      expect(destroy(sim, id)).toBe(0);
    });
  });

  describe('change tracking', () => {
    test('writes before the first TAKE show as 1 after it; writes under a snapshot after the next', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      await sim.admin.writeDevice(dev, 0, Buffer.alloc(512, 1));
      expect(cbtMap(sim, dev)[0]).toBe(0);
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      await sim.admin.writeDevice(dev, 4096, Buffer.alloc(512, 1));
      const m = cbtMap(sim, dev);
      expect([m[0], m[1]]).toEqual([1, 0]);
    });

    test('writes to an image mark both maps', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const img = await sim.platform.imagePath(snapshotInfo(sim, dev).image, 0);
      await sim.admin.writeDevice(img, 3 * 4096, Buffer.alloc(100, 9));
      const m = (await sim.admin.cbtMaps(dev))!;
      expect([m.live[3], m.read[3]]).toEqual([2, 1]);
      expect((await readImage(sim, snapshotInfo(sim, dev).image))[3 * 4096]).toBe(9);
      expect(fs.readFileSync(dev)[3 * 4096]).toBe(0);
    });

    test('the tracker resets with a new generation when active would reach 256; the read map is left as it was', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const gen0 = cbtInfo(sim, dev).generation_id.b;
      let lastMap: Buffer = Buffer.alloc(0);
      for (let i = 1; i <= 255; i++) {
        await sim.admin.writeDevice(dev, (i % 200) * 4096, Buffer.alloc(1, i));
        const id = createSnapshot(sim, storageDir, 1000n);
        snapshotAdd(sim, dev, id);
        take(sim, id);
        destroy(sim, id);
        const info = cbtInfo(sim, dev);
        expect(info.changes_number).toBe(i);
        if (i < 255) {
          expect(info.generation_id.b.equals(gen0)).toBe(true);
          if (i === 254) lastMap = cbtMap(sim, dev);
        } else {
          expect(info.generation_id.b.equals(gen0)).toBe(false);
          expect(cbtMap(sim, dev).equals(lastMap)).toBe(true);
        }
      }
      await sim.admin.writeDevice(dev, 4096 * 7, Buffer.alloc(1, 1));
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const info = cbtInfo(sim, dev);
      expect(info.changes_number).toBe(1);
      const m = cbtMap(sim, dev);
      expect([...m.keys()].filter((b) => m[b])).toEqual([7]);
    });

    test('a capacity change recreates the tracker with a new generation at the next TAKE', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const i0 = cbtInfo(sim, dev);
      await sim.admin.resizeDevice(dev, 2 * MiB);
      expect(cbtInfo(sim, dev).device_capacity).toBe(BigInt(MiB));
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const i1 = cbtInfo(sim, dev);
      expect(i1.device_capacity).toBe(2n * BigInt(MiB));
      expect(i1.block_count).toBe(512);
      expect(i1.generation_id.b.equals(i0.generation_id.b)).toBe(false);
      expect(i1.changes_number).toBe(1);
    });
  });

  describe('copy-on-write and overflow', () => {
    test('overflow: error_code -28, one code-0 event with +28 and the device, image reads EIO, data intact, DESTROY works', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB); // chunks of 4 KiB = 8 sectors
      const id = createSnapshot(sim, storageDir, 24n); // three chunks
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const name = snapshotInfo(sim, dev).image;
      for (let c = 0; c < 3; c++) await sim.admin.writeDevice(dev, c * 4096, Buffer.alloc(10, 1));
      await sim.admin.writeDevice(dev, 100, Buffer.alloc(10, 2)); // same chunk again: no new space
      expect(snapshotInfo(sim, dev).error_code).toBe(0);
      expect((await readImage(sim, name))[0]).toBe(0);
      await sim.admin.writeDevice(dev, 3 * 4096, Buffer.alloc(10, 3));
      await sim.admin.writeDevice(dev, 9 * 4096, Buffer.alloc(10, 3));
      expect(snapshotInfo(sim, dev).error_code).toBe(-28);
      const st = await sim.admin.state();
      const d = st.devices.find((x) => x.path === dev)!;
      expect(st.snapshots[0].pendingEvents.length).toBe(1);
      const ev = await waitEvent(sim, id, 1);
      expect(ev.code).toBe(0);
      expect(defs.blksnap_event_corrupted.decode(ev.data)).toEqual({ dev_id_mj: d.major, dev_id_mn: d.minor, err_code: 28 });
      expect(ev.id.b.equals(id)).toBe(true);
      expect(ev.time_label).toBeGreaterThan(0n);
      expect(ev.data.subarray(12).every((x) => x === 0)).toBe(true);
      expect(await errnoOfAsync(() => waitEvent(sim, id, 1))).toBe('ENOENT');
      expect(await errnoOfAsync(() => readImage(sim, name))).toBe('EIO');
      expect(fs.readFileSync(dev)[9 * 4096]).toBe(3);
      expect(destroy(sim, id)).toBe(0);
    });

    test('an external write that overflows the storage is seen by a waiter', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const id = createSnapshot(sim, storageDir, 8n); // one chunk
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const waiting = waitEvent(sim, id, 2500); // ends as soon as the event is there
      const fd = fs.openSync(dev, 'r+');
      fs.writeSync(fd, Buffer.alloc(4096 * 4, 0x5a), 0, 4096 * 4, 0);
      fs.closeSync(fd);
      const ev = await waiting;
      expect(ev.code).toBe(0);
      expect(defs.blksnap_event_corrupted.decode(ev.data).err_code).toBe(28);
    });

    test('a file storage grows in steps of diff_storage_minimum up to the limit', async () => {
      const dev = await attachedDevice(sim, 'a.img', MiB);
      const f = path.join(storageDir, 'grow.diff');
      fs.writeFileSync(f, '');
      const id = createSnapshot(sim, f, 1000n);
      expect(fs.statSync(f).size).toBe(64 * 512); // diff_storage_minimum = 64 sectors
      snapshotAdd(sim, dev, id);
      take(sim, id);
      for (let c = 0; c < 4; c++) await sim.admin.writeDevice(dev, c * 4096, Buffer.alloc(1, 1));
      expect(fs.statSync(f).size).toBe(128 * 512);
      expect(snapshotInfo(sim, dev).error_code).toBe(0);
    });

    test('cow image mode: chunks copied on write; another program\'s write to an uncopied chunk corrupts the image (-EIO)', async () => {
      await sim.admin.setImageMode('cow');
      const dev = await attachedDevice(sim, 'a.img', MiB);
      await sim.admin.writeDevice(dev, 0, Buffer.alloc(MiB, 0x10));
      const id = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const name = snapshotInfo(sim, dev).image;
      const st0 = await sim.admin.state();
      expect(st0.snapshots[0].members[0].image!.mode).toBe('cow');
      await sim.admin.writeDevice(dev, 4096, Buffer.alloc(4096, 0x20));
      fs.writeFileSync(dev, Buffer.alloc(100, 0x30), { flag: 'r+' }); // chunk 0: not copied yet
      const fd = fs.openSync(dev, 'r+');
      fs.writeSync(fd, Buffer.alloc(10, 0x40), 0, 10, 4096 + 5); // chunk 1: copied already
      fs.closeSync(fd);
      expect(snapshotInfo(sim, dev).error_code).toBe(-5);
      const ev = await waitEvent(sim, id, 1);
      expect(defs.blksnap_event_corrupted.decode(ev.data).err_code).toBe(5);
      expect(await errnoOfAsync(() => readImage(sim, name))).toBe('EIO');
      destroy(sim, id);
      const id2 = createSnapshot(sim, storageDir, 1000n);
      snapshotAdd(sim, dev, id2);
      take(sim, id2);
      const atTake = fs.readFileSync(dev);
      await sim.admin.writeDevice(dev, 0, Buffer.alloc(3 * 4096 + 1, 0x50));
      expect((await readImage(sim, snapshotInfo(sim, dev).image)).equals(atTake)).toBe(true);
      expect((await sim.admin.state()).snapshots[0].members[0].image!.copiedChunks).toBe(4);
    });

    test('a queued no_space event is delivered with its payload', async () => {
      const id = createSnapshot(sim, storageDir, 8n);
      const text = [...id].map((b) => b.toString(16).padStart(2, '0')).join('');
      await sim.admin.queueEvent(`${text.slice(0, 8)}-${text.slice(8, 12)}-${text.slice(12, 16)}-${text.slice(16, 20)}-${text.slice(20)}`, { code: 'no_space', requestedSectors: 262144n });
      const arg = defs.blksnap_snapshot_event.encode({ id: { b: id }, timeout_ms: 10 });
      expect(call(sim, sim.control, defs.IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, arg)).toBe(0);
      const ev = defs.blksnap_snapshot_event.decode(arg);
      expect(ev.code).toBe(1);
      expect(defs.blksnap_event_no_space.decode(ev.data).requested_nr_sect).toBe(262144n);
    });
  });
});

describe('standalone only', () => {
  test('TAKE reopens the attach path: a symlink that has gone away gives ENOENT', async () => {
    const sim = await makeSim('standalone');
    try {
      const dev = path.join(sim.dir, 'real.img');
      await sim.admin.createDevice(dev, MiB);
      const link = path.join(sim.dir, 'link.img');
      fs.symlinkSync(dev, link);
      filterCall(sim, link, 'attach');
      const storage = path.join(sim.dir, 'd');
      fs.mkdirSync(storage);
      const id = createSnapshot(sim, storage, 100n);
      snapshotAdd(sim, dev, id);
      fs.unlinkSync(link);
      expect(errnoOf(() => take(sim, id))).toBe('ENOENT');
    } finally {
      sim.cleanup();
    }
  });

  test('defaults: an existing file over the limit is ENOSPC only up to 512 MiB', async () => {
    const sim = await makeSim('standalone', null);
    try {
      const small = path.join(sim.dir, 'small.diff');
      fs.writeFileSync(small, Buffer.alloc(8192));
      expect(errnoOf(() => createSnapshot(sim, small, 8n))).toBe('ENOSPC');
      const sparse = path.join(sim.dir, 'sparse.diff');
      fs.closeSync(fs.openSync(sparse, 'w'));
      fs.truncateSync(sparse, 2 * 1024 * MiB);
      createSnapshot(sim, sparse, 262144n); // 128 MiB limit, accepted (§7)
      expect(fs.statSync(sparse).size).toBe(2 * 1024 * MiB);
      const empty = path.join(sim.dir, 'empty.diff');
      fs.writeFileSync(empty, '');
      createSnapshot(sim, empty, 262144n);
      expect(fs.statSync(empty).size).toBe(128 * MiB);
      createSnapshot(sim, path.join(sim.dir), 0n);
    } finally {
      sim.cleanup();
    }
  });
});
