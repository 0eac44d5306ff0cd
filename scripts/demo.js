#!/usr/bin/env node
'use strict';
// `npm start`: the main job on the built-in simulated kernel. Runs the real
// CLI (node bin/blksnap, built into dist/ by `npm ci`) against an image file
// acting as a block device, in a temporary directory that is removed at the
// end: a full backup, a write, an incremental backup (showing it copied only
// the changed tracking blocks), a verify and a restore (showing the restored
// image equals the snapshot image). Exits non-zero if any step fails.
const { spawnSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'blksnap');
const MiB = 1024 * 1024;

if (!fs.existsSync(path.join(ROOT, 'dist', 'lib', 'cli', 'main.js'))) {
  process.stderr.write('demo: dist/ is missing; run `npm ci` (or `npx tsc -p .`) first\n');
  process.exit(1);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-demo-'));
const env = {
  ...process.env,
  BLKSNAP_KERNEL: 'sim',
  BLKSNAP_SIM_DIR: path.join(tmp, 'sim'),
  BLKSNAP_RUN_DIR: path.join(tmp, 'run'),
  BLKSNAP_CONFIG: path.join(tmp, 'blksnap.conf'), // absent: built-in defaults
  NO_COLOR: '1',
};
delete env.BLKSNAP_SIM_FLAVOUR;

class DemoError extends Error {}

function step(title) {
  process.stdout.write(`\n== ${title}\n`);
}

function say(line) {
  process.stdout.write(`   ${line}\n`);
}

/** Runs `blksnap ARGS...`, shows the command, fails the demo on a non-zero exit. */
function blksnap(args, { json = false } = {}) {
  const shown = args.map((a) => (/[\s;&|]/.test(a) ? `'${a}'` : a)).join(' ').split(tmp).join('$DEMO');
  process.stdout.write(`   $ blksnap ${shown}\n`);
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.error) throw new DemoError(`cannot run ${BIN}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new DemoError(`blksnap ${args[0]} exited with status ${r.status}:\n${r.stderr}${r.stdout}`);
  }
  const indent = (text) => text.split(tmp).join('$DEMO').trimEnd().split('\n').filter(Boolean).map((l) => `     ${l}`).join('\n');
  if (!json && r.stdout.trim()) process.stdout.write(indent(r.stdout) + '\n');
  if (r.stderr.trim()) process.stdout.write(indent(r.stderr) + '\n');
  return json ? JSON.parse(r.stdout) : r.stdout;
}

function check(condition, what) {
  if (!condition) throw new DemoError(`check failed: ${what}`);
  say(`ok: ${what}`);
}

function sha(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function seeded(length, seed) {
  const key = crypto.createHash('sha256').update(`demo:${seed}`).digest().subarray(0, 16);
  return crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

function main() {
  const disk = path.join(tmp, 'disk0.img');
  const repo = path.join(tmp, 'repo');
  const storage = path.join(tmp, 'diff-storage');
  fs.mkdirSync(storage);
  const size = 64 * MiB;

  step('a simulated 64 MiB block device with 24 MiB of data');
  blksnap(['sim', 'create-device', disk, '64M']);
  const dataFile = path.join(tmp, 'data.bin');
  fs.writeFileSync(dataFile, seeded(24 * MiB, 1));
  blksnap(['sim', 'write', disk, '0', '--file', dataFile]);

  step('full backup');
  const full = blksnap(['backup', disk, '--repo', repo, '--diff-storage', storage, '--limit', '256M', '--json'], { json: true }).devices[0];
  const blockSize = full.block_size;
  say(`mode: ${full.mode} (${full.reason})`);
  say(`point ${full.point}: ${full.changed_blocks} tracking blocks of ${blockSize / 1024} KiB, ${full.bytes_read} bytes read, ${full.bytes_written} bytes stored (${full.zero_blocks} all-zero blocks stored as flags)`);
  check(full.mode === 'full' && full.bytes_read === size, 'the first backup is full and read the whole device');
  check(full.bytes_written === 24 * MiB, 'only the 24 MiB of non-zero data was stored');

  step('a write: 4 KiB at 10 MiB and 100 KiB at 40 MiB + 1000 (through the simulated block layer)');
  const w1 = path.join(tmp, 'w1.bin');
  const w2 = path.join(tmp, 'w2.bin');
  fs.writeFileSync(w1, seeded(4096, 2));
  fs.writeFileSync(w2, seeded(100 * 1024, 3));
  blksnap(['sim', 'write', disk, String(10 * MiB), '--file', w1]);
  blksnap(['sim', 'write', disk, String(40 * MiB + 1000), '--file', w2]);
  const changed = new Set();
  for (const [off, len] of [[10 * MiB, 4096], [40 * MiB + 1000, 100 * 1024]]) {
    for (let b = Math.floor(off / blockSize); b <= Math.floor((off + len - 1) / blockSize); b++) changed.add(b);
  }
  say(`tracking blocks written since the full backup: ${[...changed].sort((a, b) => a - b).join(', ')}`);

  // Nothing else writes to the device before the incremental's TAKE, so its
  // snapshot image is this content. The post-hook (run right after the take)
  // writes again, so the device itself moves on while the backup copies.
  const atTake = path.join(tmp, 'expected-at-take.img');
  fs.copyFileSync(disk, atTake);
  const w3 = path.join(tmp, 'w3.bin');
  fs.writeFileSync(w3, seeded(MiB, 4));
  const hook = `${process.execPath} ${BIN} sim write ${disk} ${20 * MiB} --file ${w3} >/dev/null`;

  step('incremental backup (with a write to the device while it runs)');
  const incr = blksnap(['backup', disk, '--repo', repo, '--diff-storage', storage, '--limit', '256M', '--post-hook', hook, '--json'], { json: true }).devices[0];
  say(`mode: ${incr.mode} (${incr.reason})`);
  say(`point ${incr.point}: ${incr.changed_blocks} tracking blocks, ${incr.bytes_read} bytes read (the full backup read ${full.bytes_read})`);
  check(incr.mode === 'incremental' && incr.parent === full.point, 'the second backup is an incremental on the full one');
  check(incr.changed_blocks === changed.size, `it copied exactly the ${changed.size} changed tracking blocks`);
  check(incr.bytes_read === changed.size * blockSize, `it read ${incr.bytes_read} bytes = ${changed.size} x ${blockSize}, ${(100 * incr.bytes_read / full.bytes_read).toFixed(2)}% of the full backup`);

  step('verify the repository (every block checksum, every file, the chain)');
  blksnap(['verify', '--repo', repo]);

  step('restore the incremental point into an image file');
  const restored = path.join(tmp, 'restored.img');
  blksnap(['restore', '--repo', repo, '--device', disk, '--to', restored]);
  check(sha(restored) === sha(atTake), `the restored image equals the snapshot image (sha256 ${sha(restored).slice(0, 16)}...)`);
  check(sha(disk) !== sha(atTake), 'the device itself changed after the take (the write during the backup is not in the point)');
  const restoredFull = path.join(tmp, 'restored-full.img');
  blksnap(['restore', '--repo', repo, '--device', disk, '--point', String(full.point), '--to', restoredFull]);
  const fullExpected = Buffer.alloc(size);
  seeded(24 * MiB, 1).copy(fullExpected);
  check(fs.readFileSync(restoredFull).equals(fullExpected), 'the full point restores to the device as it was at the first backup');

  step('done: no snapshot is left behind');
  const left = blksnap(['snapshot', 'list', '--json'], { json: true });
  const count = Array.isArray(left) ? left.length : Array.isArray(left.snapshots) ? left.snapshots.length : -1;
  check(count === 0, 'no snapshots remain in the (simulated) kernel');
}

let code = 0;
try {
  process.stdout.write('blksnap demo on the simulated kernel (no root, no module needed)\n');
  main();
  process.stdout.write('\nall steps passed\n');
} catch (err) {
  process.stderr.write(`\ndemo FAILED: ${err instanceof DemoError ? err.message : err && err.stack ? err.stack : err}\n`);
  code = 1;
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exitCode = code;
