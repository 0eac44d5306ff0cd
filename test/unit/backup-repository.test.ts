import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';
import { LockHeldError, NotFoundError, RepositoryCorruptedError, UsageError } from '../../lib/errors';
import { Repository, deviceKey } from '../../lib/backup/repository';
import { restorePoint } from '../../lib/backup/restore';
import { verifyRepository } from '../../lib/backup/verify';
import { copyBlocks } from '../../lib/backup/copy';
import { RepositoryLock } from '../../lib/backup/lock';
import { encodeManifest } from '../../lib/backup/format';
import { BufferImageReader, fakeBackup, patternImage, tempDir } from './backup-helpers';

const BS = 65536;
let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function modeOf(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

/** Applies writes to an image and stamps the map like the kernel would (byte = the active number). */
function write(image: Buffer, map: Uint8Array, active: number, offset: number, data: Buffer): void {
  data.copy(image, offset);
  for (let b = Math.floor(offset / BS); b <= Math.floor((offset + data.length - 1) / BS); b++) map[b] = active;
}

describe('repository', () => {
  test('creates 0700 directories and 0600 files, and refuses a non-empty foreign directory', async () => {
    const repoDir = path.join(dir, 'repo');
    const repo = await Repository.open(repoDir, { create: true });
    expect(modeOf(repoDir)).toBe(0o700);
    expect(modeOf(path.join(repoDir, 'repository.json'))).toBe(0o600);
    const image = patternImage(5 * BS + 4096, 1);
    const m = await fakeBackup({ repo, image, blockSize: BS, map: null, since: null, changesNumber: 1 });
    const pdir = repo.pointDir(m.device.key, 1);
    expect(modeOf(repo.deviceDir(m.device.key))).toBe(0o700);
    expect(modeOf(pdir)).toBe(0o700);
    for (const f of ['manifest.json', 'index', 'data']) expect(modeOf(path.join(pdir, f))).toBe(0o600);

    const foreign = path.join(dir, 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'x'), 'x');
    await expect(Repository.open(foreign, { create: true })).rejects.toThrow(UsageError);
    await expect(Repository.open(path.join(dir, 'nothing'))).rejects.toThrow(NotFoundError);
  });

  test('warns when an existing repository is readable by others', async () => {
    const repoDir = path.join(dir, 'repo');
    await Repository.open(repoDir, { create: true });
    const warnings: string[] = [];
    await Repository.open(repoDir, { warn: (w) => warnings.push(w) });
    expect(warnings).toEqual([]);
    fs.chmodSync(repoDir, 0o755);
    await Repository.open(repoDir, { warn: (w) => warnings.push(w) });
    expect(warnings.join('\n')).toMatch(/accessible by other users \(mode 0755\).*chmod 700/);
  });

  test('full point stores zero blocks as flags only; restore equals the image', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    const image = patternImage(8 * BS + 512, 7, 0);
    image.fill(0, 2 * BS, 4 * BS); // blocks 2 and 3 all zero
    const m = await fakeBackup({ repo, image, blockSize: BS, map: null, since: null, changesNumber: 3 });
    expect(m.blocks).toBe(9);
    expect(m.zeroBlocks).toBe(2);
    expect(m.dataBytes).toBe(image.length - 2 * BS);
    expect(fs.statSync(path.join(repo.pointDir(m.device.key, 1), 'data')).size).toBe(m.dataBytes);
    const out = path.join(dir, 'restored.img');
    const s = await restorePoint(repo, { device: '/dev/fake', to: out });
    expect(s.chain).toEqual([1]);
    expect(fs.readFileSync(out).equals(image)).toBe(true);
    expect(modeOf(out)).toBe(0o600);
  });

  test('property: full + random incrementals restore every point byte for byte (several chunk sizes)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 20 }).map((blocks) => blocks * BS - (blocks > 1 ? 4096 : 0)),
        fc.array(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 3 * BS }), fc.boolean()), { maxLength: 6 }), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(BS, 2 * BS, 8 << 20),
        fc.boolean(),
        async (size, rounds, chunkSize, direct) => {
          const d = tempDir();
          try {
            const repo = await Repository.open(path.join(d, 'repo'), { create: true });
            const image = patternImage(size, size);
            const map = new Uint8Array(Math.ceil(size / BS));
            const states = [Buffer.from(image)];
            await fakeBackup({ repo, image, blockSize: BS, map: null, since: null, changesNumber: 1, chunkSize, direct });
            let c = 1;
            for (const writes of rounds) {
              for (const [off, len, zero] of writes) {
                const o = off % size;
                const n = Math.min(len, size - o);
                write(image, map, c + 1, o, zero ? Buffer.alloc(n) : patternImage(n, off + len, 0));
              }
              const m = await fakeBackup({ repo, image, blockSize: BS, map, since: c, changesNumber: c + 1, chunkSize, direct });
              c++;
              const changed = [...map].filter((x) => x > c - 1).length;
              expect(m.blocks).toBe(changed);
              states.push(Buffer.from(image));
            }
            const report = await verifyRepository(repo);
            expect(report.ok).toBe(true);
            for (let p = 1; p <= states.length; p++) {
              const out = path.join(d, `p${p}.img`);
              await restorePoint(repo, { device: '/dev/fake', point: p, to: out });
              expect(fs.readFileSync(out).equals(states[p - 1])).toBe(true);
            }
          } finally {
            fs.rmSync(d, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 15 },
    );
  }, 120_000);

  test('an incremental reads exactly the changed blocks, merged into large reads', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    const image = patternImage(64 * BS, 3);
    await fakeBackup({ repo, image, blockSize: BS, map: null, since: null, changesNumber: 1 });
    const map = new Uint8Array(64);
    map.fill(2, 10, 20);
    map[40] = 2;
    map[41] = 1; // not changed since 1
    const { scanChangedRuns } = await import('../../lib/cbt');
    const key = deviceKey({ path: '/dev/fake', stableId: 'fake-disk-1' });
    const writer = await repo.beginPoint({ path: '/dev/fake', stableId: 'fake-disk-1', key });
    const reader = new BufferImageReader(image);
    const stats = await copyBlocks({ reader, sink: writer, runs: scanChangedRuns(map, 1), blockSize: BS, capacity: image.length });
    await writer.abort();
    expect(reader.reads).toEqual([{ position: 10 * BS, length: 10 * BS }, { position: 40 * BS, length: BS }]);
    expect(stats.bytesRead).toBe(11 * BS);
    expect(fs.existsSync(writer.tempDir)).toBe(false);
  });

  test('tracking blocks larger than the chunk size are copied in parts, zero ones omitted', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    const big = 4 * BS;
    const image = patternImage(3 * big, 9, 0);
    image.fill(0, big, 2 * big); // block 1 all zero
    image.fill(0, 2 * big, 2 * big + BS); // block 2 starts with a zero part
    const m = await fakeBackup({ repo, image, blockSize: big, map: null, since: null, changesNumber: 1, chunkSize: BS });
    expect(m.zeroBlocks).toBe(1);
    expect(m.dataBytes).toBe(2 * big);
    const out = path.join(dir, 'r.img');
    await restorePoint(repo, { device: '/dev/fake', to: out });
    expect(fs.readFileSync(out).equals(image)).toBe(true);
    expect((await verifyRepository(repo)).ok).toBe(true);
  });
});

describe('lock', () => {
  test('a second writer gets LockHeldError naming the holder; release frees it', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    const lock = await repo.lock({ command: 'blksnap backup' });
    expect(modeOf(lock.file)).toBe(0o600);
    const held = await repo.lock({ command: 'other' }).catch((e) => e);
    expect(held).toBeInstanceOf(LockHeldError);
    expect(held.message).toContain(`pid ${process.pid}`);
    expect(held.message).toContain('blksnap backup');
    expect(held.hint).toContain('blksnap cleanup --repo');
    await lock.release();
    expect(fs.existsSync(lock.file)).toBe(false);
    const again = await repo.lock({ command: 'x' });
    await again.release();
  });

  test('a lock of a dead process is broken with a warning', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    const lock = await repo.lock({ command: 'blksnap backup' });
    // Pretend the holder was a process that has since exited.
    const info = { ...lock.holder, pid: 2 ** 22 + 12345, pidStartTime: '1' };
    fs.writeFileSync(lock.file, JSON.stringify(info));
    const warnings: string[] = [];
    const mine = await RepositoryLock.acquire(repo.dir, { command: 'new', warn: (w) => warnings.push(w) });
    expect(warnings.join()).toMatch(/removed a stale lock of pid 4206649.*no longer running/);
    expect(mine.holder.pid).toBe(process.pid);
    await mine.release();
    await lock.release(); // not ours any more: must not remove anything
  });

  test('a lock from another host is stale only when it has not been refreshed', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    const now = new Date().toISOString();
    const other = { pid: 1, pidStartTime: null, host: 'elsewhere', bootId: null, uid: 0, command: 'blksnap backup', createdAt: now, refreshedAt: now, nonce: 'x' };
    fs.writeFileSync(path.join(repo.dir, 'lock'), JSON.stringify(other));
    await expect(repo.lock({ command: 'x' })).rejects.toThrow(/locked by pid 1 on host elsewhere/);
    const old = new Date(Date.now() - 3600_000).toISOString();
    fs.writeFileSync(path.join(repo.dir, 'lock'), JSON.stringify({ ...other, refreshedAt: old }));
    const l = await repo.lock({ command: 'x' });
    await l.release();
  });
});

describe('damaged repositories', () => {
  async function setup() {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    const image = patternImage(6 * BS, 5);
    const m1 = await fakeBackup({ repo, image, blockSize: BS, map: null, since: null, changesNumber: 1 });
    const map = new Uint8Array(6);
    write(image, map, 2, BS, patternImage(2 * BS, 77, 0));
    await fakeBackup({ repo, image, blockSize: BS, map, since: 1, changesNumber: 2 });
    return { repo, key: m1.device.key, image };
  }

  test('a flipped byte in a data file is found by verify, naming the file and block', async () => {
    const { repo, key } = await setup();
    const data = path.join(repo.pointDir(key, 2), 'data');
    const fd = fs.openSync(data, 'r+');
    fs.writeSync(fd, Buffer.from([0xff ^ fs.readFileSync(data)[BS + 5]]), 0, 1, BS + 5);
    fs.closeSync(fd);
    const report = await verifyRepository(repo);
    expect(report.ok).toBe(false);
    const p2 = report.devices[0].points.find((p) => p.point === 2);
    expect(p2?.problems).toEqual([expect.stringMatching(new RegExp(`${data}: block 2 .*checksum mismatch`))]);
    expect(report.devices[0].points.find((p) => p.point === 1)?.ok).toBe(true);
    // Restore of point 2 stops at the bad block and leaves no file.
    const out = path.join(dir, 'out.img');
    await expect(restorePoint(repo, { device: '/dev/fake', to: out })).rejects.toThrow(RepositoryCorruptedError);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(dir).filter((n) => n.includes('blksnap-restore'))).toEqual([]);
  });

  const damages: [string, (pdir: string) => void, RegExp][] = [
    ['truncated manifest', (p) => fs.truncateSync(path.join(p, 'manifest.json'), 100), /manifest\.json: not valid JSON/],
    ['tampered manifest capacity', (p) => {
      const f = path.join(p, 'manifest.json');
      fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace(/"capacity": \d+/, '"capacity": 999999999999'));
    }, /manifest\.json: manifest checksum mismatch/],
    ['re-signed manifest claiming a bigger device', (p) => {
      const f = path.join(p, 'manifest.json');
      const { manifestSha256: _x, ...body } = JSON.parse(fs.readFileSync(f, 'utf8'));
      body.capacity *= 64;
      body.blockCount *= 64;
      fs.writeFileSync(f, encodeManifest(body));
    }, /index: index header does not belong to this point's manifest/],
    ['missing manifest', (p) => fs.rmSync(path.join(p, 'manifest.json')), /manifest\.json: missing/],
    ['truncated index', (p) => fs.truncateSync(path.join(p, 'index'), 64 + 48), /index: is 112 bytes.*truncated/],
    ['truncated data', (p) => fs.truncateSync(path.join(p, 'data'), 10), /data: is 10 bytes.*truncated/],
    ['tampered index record', (p) => {
      const f = path.join(p, 'index');
      const b = fs.readFileSync(f);
      b.writeUInt32LE(0xfffffff0, 64); // first record's block number: past the device
      fs.writeFileSync(f, b);
    }, /index: record 0: block 4294967280 is past the device/],
    ['index checksum tampered record', (p) => {
      const f = path.join(p, 'index');
      const b = fs.readFileSync(f);
      b[64 + 20] ^= 1; // inside a block checksum: structure fine, file hash not
      fs.writeFileSync(f, b);
    }, /index: index checksum mismatch/],
  ];

  test.each(damages)('%s: verify and restore name the file; restore writes nothing', async (_name, damage, pattern) => {
    const { repo, key } = await setup();
    const pdir = repo.pointDir(key, 2);
    damage(pdir);
    const report = await verifyRepository(repo);
    expect(report.ok).toBe(false);
    const problems = report.devices.flatMap((d) => d.points.flatMap((p) => p.problems)).join('\n');
    expect(problems).toMatch(pattern);
    expect(problems).toContain(pdir);
    const out = path.join(dir, 'out.img');
    const err = await restorePoint(repo, { device: '/dev/fake', point: 2, to: out }).catch((e) => e);
    expect(err).toBeInstanceOf(RepositoryCorruptedError);
    expect(err.message).toContain(pdir);
    expect(fs.existsSync(out)).toBe(false);
    // Point 1 is untouched and restorable.
    await restorePoint(repo, { device: '/dev/fake', point: 1, to: out });
    expect(fs.statSync(out).size).toBe(6 * BS);
  });

  test('a missing parent breaks the chain, reported for the child', async () => {
    const { repo, key } = await setup();
    fs.rmSync(repo.pointDir(key, 1), { recursive: true });
    const report = await verifyRepository(repo);
    expect(report.devices[0].points.map((p) => [p.point, p.ok])).toEqual([[2, false]]);
    expect(report.devices[0].points[0].problems.join()).toMatch(/parent point 1 is missing/);
  });

  test('an index that is self-consistent but was made for another point is refused', async () => {
    const { repo, key } = await setup();
    fs.copyFileSync(path.join(repo.pointDir(key, 1), 'index'), path.join(repo.pointDir(key, 2), 'index'));
    const report = await verifyRepository(repo, { device: '/dev/fake', point: 2 });
    expect(report.ok).toBe(false);
    expect(report.devices[0].points.find((p) => p.point === 2)?.problems.join()).toMatch(/index/);
  });

  test('stale temp points of a killed writer are not points and are removed by removeStaleTemps', async () => {
    const { repo, key } = await setup();
    const writer = await repo.beginPoint({ path: '/dev/fake', stableId: 'fake-disk-1', key });
    await writer.appendData(Buffer.alloc(BS, 1));
    expect((await repo.points(key)).map((p) => p.point)).toEqual([1, 2]);
    expect((await verifyRepository(repo)).ok).toBe(true);
    const removed = await repo.removeStaleTemps();
    expect(removed).toEqual([writer.tempDir]);
    await writer.abort();
  });
});
