import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';
import { makeSim, filterCall, createSnapshot, snapshotAdd, take, snapshotInfo, destroy, cbtMap } from '/work/main/test/sim/sim-helpers';
(async () => {
  const sim = await makeSim('upstream', null);
  const dev = path.join(sim.dir, 'dense.img');
  const pat = crypto.randomBytes(64 << 20);
  const fd = fs.openSync(dev, 'w');
  for (let i = 0; i < 32; i++) { pat.writeUInt32LE(i, 0); fs.writeSync(fd, pat, 0, pat.length, i * pat.length); }
  fs.closeSync(fd);
  let t = Date.now();
  filterCall(sim, dev, 'attach');
  console.log('attach (scan 2 GiB)', Date.now() - t); t = Date.now();
  fs.mkdirSync(path.join(sim.dir, 'diff'));
  const id = createSnapshot(sim, path.join(sim.dir, 'diff'), 1n << 22n);
  snapshotAdd(sim, dev, id); take(sim, id);
  console.log('take (copy 2 GiB)', Date.now() - t); t = Date.now();
  const p = await sim.platform.imagePath(snapshotInfo(sim, dev).image, 1000);
  const r = await sim.platform.openImage(p, {});
  const buf = Buffer.alloc(4 << 20);
  for (let pos = 0n; pos < r.size; pos += BigInt(buf.length)) await r.read(buf, buf.length, pos);
  await r.close();
  console.log('read image', Date.now() - t); t = Date.now();
  // external write of 10 MiB, then second take
  const fd2 = fs.openSync(dev, 'r+'); fs.writeSync(fd2, crypto.randomBytes(10 << 20), 0, 10 << 20, 100 << 20); fs.closeSync(fd2);
  destroy(sim, id);
  console.log('destroy (+scan after external write)', Date.now() - t); t = Date.now();
  const id2 = createSnapshot(sim, path.join(sim.dir, 'diff'), 1n << 22n);
  snapshotAdd(sim, dev, id2); take(sim, id2);
  console.log('take 2', Date.now() - t, 'changed blocks', cbtMap(sim, dev).filter((b) => b === 2).length);
  destroy(sim, id2);
  console.log('rss MiB', Math.round(process.memoryUsage().rss / 1048576));
  sim.cleanup();
})();
