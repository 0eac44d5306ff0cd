#!/usr/bin/env node
'use strict';
/**
 * `npm run bench` — issue 6: the blksnap manager measured side by side with
 * baselines, all in one run on this machine (docs/benchmarks.md).
 *
 *   node scripts/bench.js [--quick] [--json] [--json-file FILE] [--dir DIR] [--only LIST]
 *
 * --quick   small sizes (256 MiB device, 1 GiB memory case) for development
 * --json    the results as one JSON document on stdout (progress on stderr)
 * --json-file  also write that JSON document to FILE (with the table on stdout)
 * --dir     parent of the temp directory (default $TMPDIR or /tmp)
 * --only    comma list of sections: cbt,startup,copy,memory (copy = 1, 2, 4)
 *
 * The real blksnap module is not on this machine: every `blksnap` command
 * runs on the simulated kernel (--kernel sim), whose TAKE materialises the
 * snapshot image as a full copy of the device. That copy is measured on its
 * own (the pre/post hooks stamp the time around the TAKE) and reported, so
 * the engine's share can be told apart from the simulator's.
 *
 * Everything the run creates (temp dir, images, repositories, loop devices)
 * is removed at the end, on failure, and on SIGINT/SIGTERM.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { MiB, GiB, resources, installSignalHandlers, run, evict, evictShell, hardware, human, median, isStopping } = require('./bench/util');
const { makeDenseImage, makeSparseImage, pickBlocks } = require('./bench/data');
const { measureStartup } = require('./bench/startup');

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'blksnap');

function parseArgs(argv) {
  const opts = { quick: false, json: false, jsonFile: null, dir: os.tmpdir(), only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--json') opts.json = true;
    else if (a === '--json-file') opts.jsonFile = argv[++i];
    else if (a === '--dir') opts.dir = argv[++i];
    else if (a === '--only') opts.only = new Set(String(argv[++i]).split(','));
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node scripts/bench.js [--quick] [--json] [--json-file FILE] [--dir DIR] [--only cbt,startup,copy,memory]\n');
      process.exit(0);
    } else {
      process.stderr.write(`bench: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!opts.dir || !fs.existsSync(opts.dir)) {
    process.stderr.write(`bench: --dir ${opts.dir}: no such directory\n`);
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const log = (msg) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const mibps = (bytes, ms) => bytes / MiB / (ms / 1000);
const round = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : +x.toFixed(d));

const results = [];
const notes = [];
const details = {};

/**
 * One table row. `better`: 'higher' (ratio ≥ goal passes) or 'lower'
 * (value or ratio ≤ goal passes); `goalOn`: whether the goal is on the
 * ratio or on the value itself.
 */
function row(r) {
  const target = r.goalOn === 'value' ? r.value : r.ratio;
  let verdict = 'info';
  if (r.goal !== null && r.goal !== undefined) {
    if (target === null || target === undefined) verdict = 'ERROR';
    else if (r.better === 'higher') verdict = target >= r.goal ? 'PASS' : 'MISS';
    else if (r.strict) verdict = target < r.goal ? 'PASS' : 'MISS';
    else verdict = target <= r.goal ? 'PASS' : 'MISS';
  }
  results.push({ ...r, value: round(r.value, 3), baseline: round(r.baseline, 3), ratio: round(r.ratio, 3), result: verdict });
}

function errorRow(id, name, err) {
  results.push({ id, name, value: null, unit: '', baseline: null, baselineName: '', ratio: null, goal: null, goalText: '', result: 'ERROR', error: String(err && err.message ? err.message : err) });
  log(`${id} ${name}: ERROR ${err && err.stack ? err.stack : err}`);
}

// ------------------------------------------------------------------ sections

function cbtSection() {
  log('3. CBT scan: lib/cbt over a 2,097,152-entry map');
  return run(process.execPath, [path.join(__dirname, 'bench', 'cbt-scan.js')]).then((r) => {
    const d = JSON.parse(r.stdout);
    details.cbt = d;
    const label = { sparse: 'realistic sparse (~1% changed, clustered)', 'random-half': 'worst case: 50% changed at random', alternating: 'worst case: every other block (max ranges)' };
    for (const [name, p] of Object.entries(d.patterns)) {
      row({ id: '3', name: `CBT changedRanges, ${label[name]}: ${p.ranges} ranges`, value: p.changedRanges.medianMs, unit: 'ms', baseline: p.plainLoop.medianMs, baselineName: 'plain byte loop', ratio: p.changedRanges.medianMs / p.plainLoop.medianMs, goal: 20, goalText: '< 20 ms', goalOn: 'value', better: 'lower', strict: true });
      row({ id: '3', name: `CBT scanChangedRuns (engine's path), ${name}`, value: p.scanChangedRuns.medianMs, unit: 'ms', baseline: p.plainLoop.medianMs, baselineName: 'plain byte loop', ratio: p.scanChangedRuns.medianMs / p.plainLoop.medianMs, goal: 20, goalText: '< 20 ms', goalOn: 'value', better: 'lower', strict: true });
    }
  });
}

function startupSection(work) {
  log('5. CLI start-up: blksnap version --kernel sim vs node -e 0 (20 runs each, interleaved)');
  const simDir = path.join(work, 'startup-sim');
  const s = measureStartup({ runs: 20, simDir });
  details.startup = { cliMs: s.cliAll.map((x) => round(x)), nodeMs: s.nodeAll.map((x) => round(x)) };
  row({ id: '5', name: 'CLI start-up: blksnap version --kernel sim (median of 20)', value: s.cliMs, unit: 'ms', baseline: s.nodeMs, baselineName: 'node -e 0', ratio: s.cliMs / s.nodeMs, goal: 1.5, goalText: '≤ 1.5×', goalOn: 'ratio', better: 'lower' });
}

/** `blksnap` on the simulated kernel of `simDir`. */
function blksnapEnv(simDir, work) {
  return { ...process.env, BLKSNAP_KERNEL: 'sim', BLKSNAP_SIM_DIR: simDir, BLKSNAP_CONFIG: path.join(work, 'no-such-blksnap.conf'), NO_COLOR: '1' };
}

async function blksnap(env, args, extra = {}) {
  return run(process.execPath, [BIN, ...args], { env, ...extra });
}

/**
 * One `blksnap backup --json`, caches dropped first. The pre/post hooks
 * stamp the clock right before and right after the TAKE, so the simulated
 * TAKE's cost (a full copy of the device into the image) is known. The
 * post-hook also flushes that copy to disk and evicts it from the page
 * cache, so the copy phase starts as dd does — clean, cold — instead of
 * competing with the simulator's writeback; that flush is counted in the
 * TAKE window, not in the engine's share.
 */
async function timedBackup(ctx, image, repo, mode) {
  const pre = path.join(ctx.work, 'take.pre');
  const post = path.join(ctx.work, 'take.post');
  fs.rmSync(pre, { force: true });
  fs.rmSync(post, { force: true });
  evict(image);
  const flush = `${evictShell(path.join(ctx.simDir, 'dev'))}; `;
  const r = await blksnap(ctx.env, [
    'backup', image, '--repo', repo, '--mode', mode, '--diff-storage', ctx.diffDir, '--limit', '4G', '--json',
    '--pre-hook', `date +%s%N > ${pre}`, '--post-hook', `${flush}date +%s%N > ${post}`,
  ], { rss: true, rssDir: ctx.work });
  const summary = JSON.parse(r.stdout);
  const takeMs = Number(BigInt(fs.readFileSync(post, 'utf8').trim()) - BigInt(fs.readFileSync(pre, 'utf8').trim())) / 1e6;
  const dev = summary.devices[0];
  return { wallMs: r.ms, takeMs, copyMs: dev.duration_ms, rssKiB: r.maxRssKiB, summary, dev };
}

async function ddFile(ctx, src, label) {
  const out = path.join(ctx.work, 'dd.out');
  evict(src.startsWith('/dev/') ? ctx.image : src);
  const r = await run('dd', [`if=${src}`, `of=${out}`, 'bs=4M', 'iflag=direct', 'oflag=direct']);
  fs.rmSync(out, { force: true });
  log(`   ${label}: ${r.ms.toFixed(0)} ms`);
  return r.ms;
}

async function cpSparse(ctx, src) {
  const out = path.join(ctx.work, 'cp.out');
  evict(src);
  const r = await run('sh', ['-c', 'cp --sparse=always "$0" "$1" && sync "$1"', src, out]);
  fs.rmSync(out, { force: true });
  log(`   cp --sparse=always + sync: ${r.ms.toFixed(0)} ms`);
  return r.ms;
}

async function ddLoop(ctx, image) {
  const loop = resources.attachLoop(image);
  try {
    return await ddFile(ctx, loop, `dd ${loop}→file`);
  } finally {
    resources.detachLoop(loop);
  }
}

/**
 * Changes 1% of the tracking blocks at random through the simulated block
 * layer (admin API writeDevice: change tracking and copy-on-write see it):
 * 4 KiB of new random data at a random 4 KiB-aligned offset inside each block.
 */
async function changeOnePercent(ctx, image, blockSize, capacity) {
  const { openSimAdmin } = require(path.join(ROOT, 'dist', 'lib', 'kernel', 'sim'));
  const admin = openSimAdmin(ctx.simDir);
  const blockCount = Math.ceil(capacity / blockSize);
  const blocks = pickBlocks(blockCount, Math.ceil(blockCount / 100));
  let roundedBytes = 0;
  for (const b of blocks) {
    const blockLen = Math.min(blockSize, capacity - b * blockSize);
    const slots = Math.max(1, Math.floor(blockLen / 4096));
    const offset = b * blockSize + crypto.randomInt(slots) * 4096;
    await admin.writeDevice(image, offset, crypto.randomBytes(Math.min(4096, blockLen)));
    roundedBytes += blockLen;
  }
  return { blocks: blocks.length, changedBytes: blocks.length * 4096, roundedBytes };
}

const ROUNDS = 3;
const INCREMENTALS = 5;

/** The run whose wall time is the median (odd counts). */
const medianRun = (runs) => [...runs].sort((a, b) => a.wallMs - b.wallMs)[runs.length >> 1];

async function copySection(ctx, size) {
  const image = path.join(ctx.work, 'device.img');
  log(`1. making a ${human(size)} device image (dense pseudo-random data, no zero region)`);
  makeDenseImage(image, size);
  ctx.image = image;
  await blksnap(ctx.env, ['sim', 'add-device', image]);
  const repo = path.join(ctx.work, 'repo');
  log('1. blksnap backup #0 (full; attaches change tracking: the simulator hashes the whole device)');
  const first = await timedBackup(ctx, image, repo, 'full');
  log(`   ${first.wallMs.toFixed(0)} ms (TAKE ${first.takeMs.toFixed(0)} ms, copy ${first.copyMs} ms), peak RSS ${first.rssKiB} KiB`);

  // Rounds interleave every contender, so a slow spell of the disk hits all alike; medians of ROUNDS.
  const dd = [];
  const loop = [];
  const cp = [];
  const fulls = [];
  for (let i = 1; i <= ROUNDS; i++) {
    log(`1. round ${i} of ${ROUNDS}: dd (file), dd (loop device), cp --sparse=always, blksnap backup --mode full`);
    dd.push(await ddFile(ctx, image, 'dd file→file'));
    try {
      loop.push(await ddLoop(ctx, image));
    } catch (err) {
      if (i === 1) notes.push(`dd through a loop device was not measured: ${err.message}`);
    }
    cp.push(await cpSparse(ctx, image));
    const f = await timedBackup(ctx, image, repo, 'full');
    log(`   blksnap full: ${f.wallMs.toFixed(0)} ms (TAKE+flush ${f.takeMs.toFixed(0)} ms, copy ${f.copyMs} ms), peak RSS ${f.rssKiB} KiB`);
    fulls.push(f);
  }
  const ddMs = median(dd);
  const ddRate = mibps(size, ddMs);
  const full = medianRun(fulls);
  const medFullWall = median(fulls.map((f) => f.wallMs));
  const medFullNoTake = median(fulls.map((f) => f.wallMs - f.takeMs));
  const medFullCopy = median(fulls.map((f) => f.copyMs));
  details.copy = {
    sizeBytes: size, rounds: ROUNDS, ddFileMs: dd.map((x) => round(x)), ddLoopMs: loop.map((x) => round(x)), cpMs: cp.map((x) => round(x)),
    firstFull: pick(first), fulls: fulls.map(pick),
  };

  const e2e = mibps(size, medFullWall);
  const dn = `dd file (median of ${ROUNDS})`;
  row({ id: '1', name: `full backup ${human(size)}, end to end on the sim (incl. simulated TAKE = full copy)`, value: e2e, unit: 'MiB/s', baseline: ddRate, baselineName: dn, ratio: e2e / ddRate, goal: 0.9, goalText: '≥ 0.9× dd', goalOn: 'ratio', better: 'higher' });
  if (loop.length) {
    const loopRate = mibps(size, median(loop));
    row({ id: '1', name: 'full backup, end to end on the sim, vs dd from a loop device', value: e2e, unit: 'MiB/s', baseline: loopRate, baselineName: `dd /dev/loopN (median of ${loop.length})`, ratio: e2e / loopRate, goal: 0.9, goalText: '≥ 0.9× dd', goalOn: 'ratio', better: 'higher' });
  }
  const cpRate = mibps(size, median(cp));
  row({ id: '1', name: 'full backup, end to end on the sim, vs cp', value: e2e, unit: 'MiB/s', baseline: cpRate, baselineName: `cp --sparse=always+sync (median of ${ROUNDS})`, ratio: e2e / cpRate, goal: null, goalText: '—' });
  const noTake = mibps(size, medFullNoTake);
  row({ id: '1', name: 'full backup minus the simulated TAKE (what a real module would cost)', value: noTake, unit: 'MiB/s', baseline: ddRate, baselineName: dn, ratio: noTake / ddRate, goal: 0.9, goalText: '≥ 0.9× dd', goalOn: 'ratio', better: 'higher' });
  if (loop.length) {
    const loopRate = mibps(size, median(loop));
    row({ id: '1', name: 'full backup minus the simulated TAKE, vs dd from a loop device', value: noTake, unit: 'MiB/s', baseline: loopRate, baselineName: `dd /dev/loopN (median of ${loop.length})`, ratio: noTake / loopRate, goal: 0.9, goalText: '≥ 0.9× dd', goalOn: 'ratio', better: 'higher' });
  }
  const copyPhase = mibps(size, medFullCopy);
  row({ id: '1', name: 'full backup, copy phase only (engine: read image, hash, write point)', value: copyPhase, unit: 'MiB/s', baseline: ddRate, baselineName: dn, ratio: copyPhase / ddRate, goal: 0.9, goalText: '≥ 0.9× dd', goalOn: 'ratio', better: 'higher' });

  // 2. Incrementals after 1% of the tracking blocks changed (each), then 4. restore of full + 5 incrementals.
  const blockSize = full.dev.block_size;
  const capacity = full.dev.capacity;
  const incs = [];
  let change = null;
  for (let i = 1; i <= INCREMENTALS; i++) {
    log(`2. changing 1% of the tracking blocks at random through the simulated block layer; incremental ${i} of ${INCREMENTALS}`);
    change = await changeOnePercent(ctx, image, blockSize, capacity);
    const inc = await timedBackup(ctx, image, repo, 'incremental');
    log(`   ${change.blocks} blocks of ${human(blockSize)} changed (${human(change.roundedBytes)} rounded up); incremental ${inc.wallMs.toFixed(0)} ms (TAKE+flush ${inc.takeMs.toFixed(0)} ms, copy ${inc.copyMs} ms), read ${inc.dev.bytes_read} bytes`);
    if (inc.dev.mode !== 'incremental') throw new Error(`backup ${i} after the full was ${inc.dev.mode}: ${inc.dev.reason}`);
    incs.push({ ...inc, change });
  }
  details.incrementals = incs.map((x) => ({ ...pick(x), change: x.change }));
  const medIncWall = median(incs.map((x) => x.wallMs));
  const medIncNoTake = median(incs.map((x) => x.wallMs - x.takeMs));
  const medIncCopy = median(incs.map((x) => x.copyMs));
  const worstBytes = incs.reduce((w, x) => (x.dev.bytes_read / x.change.roundedBytes > w.dev.bytes_read / w.change.roundedBytes ? x : w), incs[0]);
  const nm = `median of ${INCREMENTALS}`;
  row({ id: '2', name: `incremental (1% of blocks changed) time, end to end on the sim (${nm})`, value: medIncWall, unit: 'ms', baseline: medFullWall, baselineName: `full backup (median of ${ROUNDS})`, ratio: medIncWall / medFullWall, goal: 0.05, goalText: '≤ 0.05× full', goalOn: 'ratio', better: 'lower' });
  row({ id: '2', name: 'incremental time minus the simulated TAKE, vs full minus TAKE', value: medIncNoTake, unit: 'ms', baseline: medFullNoTake, baselineName: 'full minus TAKE', ratio: medIncNoTake / medFullNoTake, goal: 0.05, goalText: '≤ 0.05× full', goalOn: 'ratio', better: 'lower' });
  row({ id: '2', name: 'incremental copy phase vs full copy phase', value: medIncCopy, unit: 'ms', baseline: medFullCopy, baselineName: 'full copy phase', ratio: medIncCopy / medFullCopy, goal: 0.05, goalText: '≤ 0.05× full', goalOn: 'ratio', better: 'lower' });
  row({ id: '2', name: `incremental bytes read (--json bytes_read, worst of ${INCREMENTALS}) vs changed bytes rounded up to tracking blocks`, value: worstBytes.dev.bytes_read / MiB, unit: 'MiB', baseline: worstBytes.change.roundedBytes / MiB, baselineName: `${worstBytes.change.blocks} blocks × ${human(blockSize)}`, ratio: worstBytes.dev.bytes_read / worstBytes.change.roundedBytes, goal: 1.1, goalText: '≤ 1.1×', goalOn: 'ratio', better: 'lower' });

  const restored = path.join(ctx.work, 'restored.img');
  const restores = [];
  for (let i = 1; i <= ROUNDS; i++) {
    log(`4. blksnap restore of the newest point (full + ${INCREMENTALS} incrementals), ${i} of ${ROUNDS}`);
    evict(repo);
    const rr = await blksnap(ctx.env, ['restore', '--repo', repo, '--device', image, '--to', restored, '--json']);
    const rs = JSON.parse(rr.stdout);
    log(`   ${rr.ms.toFixed(0)} ms, chain ${rs.chain.join(',')}; comparing with the device`);
    const same = await run('cmp', ['-s', restored, image], { check: false });
    fs.rmSync(restored, { force: true });
    if (same.code !== 0) throw new Error('the restored image differs from the device: restore timing is meaningless');
    restores.push({ wallMs: rr.ms, summary: rs });
  }
  const chain = restores[0].summary.chain;
  if (chain.length !== INCREMENTALS + 1) notes.push(`restore chain was ${chain.join(',')}, not a full + ${INCREMENTALS} incrementals`);
  details.restore = { wallMs: restores.map((x) => round(x.wallMs)), chain, summaries: restores.map((x) => x.summary), identical: true };
  const restoreRate = mibps(capacity, median(restores.map((x) => x.wallMs)));
  row({ id: '4', name: `restore full + ${INCREMENTALS} incrementals (chain ${chain.join(',')}, ${human(capacity)}, checked equal; median of ${ROUNDS})`, value: restoreRate, unit: 'MiB/s', baseline: ddRate, baselineName: dn, ratio: restoreRate / ddRate, goal: 0.9, goalText: '≥ 0.9× dd (as in 1)', goalOn: 'ratio', better: 'higher' });

  // 6 (first size): peak RSS of the full backups above.
  ctx.rss2 = { first: first.rssKiB, full: Math.max(...fulls.map((f) => f.rssKiB || 0)), size };
  fs.rmSync(repo, { recursive: true, force: true });
  fs.rmSync(image, { force: true });
}

function pick(b) {
  return { wallMs: round(b.wallMs), takeMs: round(b.takeMs), copyMs: b.copyMs, jobMs: b.summary.duration_ms, outsideJobMs: round(b.wallMs - b.summary.duration_ms), maxRssKiB: b.rssKiB, bytesRead: b.dev.bytes_read, bytesWritten: b.dev.bytes_written, mode: b.dev.mode, point: b.dev.point, changedBlocks: b.dev.changed_blocks, zeroBlocks: b.dev.zero_blocks };
}

async function memorySection(ctx, smallSize, bigSize) {
  // The small size: measured in copySection when it ran, else here.
  if (!ctx.rss2) {
    const image = path.join(ctx.work, 'mem-small.img');
    log(`6. making a ${human(smallSize)} dense image`);
    makeDenseImage(image, smallSize);
    await blksnap(ctx.env, ['sim', 'add-device', image]);
    const b = await timedBackup(ctx, image, path.join(ctx.work, 'repo-mem-small'), 'full');
    ctx.rss2 = { first: b.rssKiB, full: null, size: smallSize };
    fs.rmSync(path.join(ctx.work, 'repo-mem-small'), { recursive: true, force: true });
    fs.rmSync(image, { force: true });
  }
  const image = path.join(ctx.work, 'mem-big.img');
  const stride = 512 * MiB;
  const dataPer = 32 * MiB;
  log(`6. making a ${human(bigSize)} sparse-ish image (${human(dataPer)} of data every ${human(stride)})`);
  const written = makeSparseImage(image, bigSize, stride, dataPer);
  await blksnap(ctx.env, ['sim', 'add-device', image]);
  const repo = path.join(ctx.work, 'repo-mem-big');
  log(`6. blksnap backup (full, first: attaches change tracking) of ${human(bigSize)}`);
  const b = await timedBackup(ctx, image, repo, 'full');
  log(`   ${b.wallMs.toFixed(0)} ms, peak RSS ${b.rssKiB} KiB`);
  details.memory = { small: { sizeBytes: ctx.rss2.size, firstFullMaxRssKiB: ctx.rss2.first, fullMaxRssKiB: ctx.rss2.full }, big: { sizeBytes: bigSize, dataBytes: written, ...pick(b) } };
  const small = ctx.rss2.first / 1024;
  const big = b.rssKiB / 1024;
  row({ id: '6', name: `peak RSS, first full backup of ${human(ctx.rss2.size)} (dense)`, value: small, unit: 'MiB', baseline: null, baselineName: '', ratio: null, goal: 150, goalText: '< 150 MiB', goalOn: 'value', better: 'lower', strict: true });
  row({ id: '6', name: `peak RSS, first full backup of ${human(bigSize)} (${human(written)} data, rest holes)`, value: big, unit: 'MiB', baseline: small, baselineName: `${human(ctx.rss2.size)} backup`, ratio: big / small, goal: 150, goalText: '< 150 MiB', goalOn: 'value', better: 'lower', strict: true });
  row({ id: '6', name: `peak RSS ${human(bigSize)} vs ${human(ctx.rss2.size)} ("the same")`, value: big, unit: 'MiB', baseline: small, baselineName: `${human(ctx.rss2.size)} backup`, ratio: big / small, goal: 1.1, goalText: '≤ 1.1× (same)', goalOn: 'ratio', better: 'lower' });
  fs.rmSync(repo, { recursive: true, force: true });
  fs.rmSync(image, { force: true });
}

// ------------------------------------------------------------------ output

function table(hw, sizes, startedMs) {
  const fmt = (v, unit) => (v === null || v === undefined ? '—' : `${v < 10 ? v.toFixed(2) : v < 1000 ? v.toFixed(1) : v.toFixed(0)} ${unit}`.trim());
  const lines = [];
  lines.push('blksnap manager benchmark (issue 6) — one run, baselines measured in the same run');
  lines.push(`machine: ${hw.nproc} CPUs (${hw.cpuModel}), ${human(hw.memoryBytes)} RAM, ${hw.kernel}, node ${hw.node}`);
  lines.push(`work dir: ${hw.workDir} on ${hw.filesystem.type} (${hw.filesystem.source || '?'})`);
  lines.push(`sizes: device ${human(sizes.device)} (dense pseudo-random, no zero region), memory case ${human(sizes.big)} (sparse-ish)${opts.quick ? '  [--quick]' : ''}`);
  lines.push(`kernel: simulated (--kernel sim; the blksnap module is not on this machine); data files synced and evicted from the page cache before each timed run (dd iflag=nocache)`);
  lines.push('');
  const head = ['#', 'measure', 'value', 'baseline', 'ratio', 'goal', 'result'];
  const rows = results.map((r) => [
    r.id,
    r.name,
    fmt(r.value, r.unit),
    r.baseline === null || r.baseline === undefined ? '—' : `${fmt(r.baseline, r.unit === 'ms' || r.unit === 'MiB' || r.unit === 'MiB/s' ? r.unit : '')} (${r.baselineName})`,
    r.ratio === null || r.ratio === undefined ? '—' : `${r.ratio.toFixed(r.ratio < 0.1 ? 3 : 2)}×`,
    r.goalText || '—',
    r.result + (r.error ? `: ${r.error}` : ''),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const widthCap = [2, 90, 14, 46, 8, 22, 200];
  const line = (cells) => cells.map((c, i) => String(c).padEnd(Math.min(widths[i], widthCap[i]))).join('  ').trimEnd();
  lines.push(line(head));
  lines.push(line(widths.map((w, i) => '-'.repeat(Math.min(w, widthCap[i])))));
  for (const r of rows) lines.push(line(r));
  lines.push('');
  for (const n of notes) lines.push(`note: ${n}`);
  lines.push(`total run time ${((Date.now() - startedMs) / 1000).toFixed(0)} s`);
  return lines.join('\n') + '\n';
}

// ------------------------------------------------------------------ main

async function main() {
  const startedMs = Date.now();
  installSignalHandlers();
  if (!fs.existsSync(path.join(ROOT, 'dist', 'lib', 'cli', 'main.js'))) {
    process.stderr.write('bench: dist/ is missing: run `npx tsc -p .` (npm run bench does)\n');
    process.exit(1);
  }
  const work = resources.tempDir(opts.dir);
  const hw = hardware(work);
  const sizes = { device: opts.quick ? 256 * MiB : 2 * GiB, big: opts.quick ? 1 * GiB : 8 * GiB };
  const need = sizes.device * 4 + 2 * GiB;
  if (hw.freeBytesAtStart !== null && hw.freeBytesAtStart < need) {
    throw new Error(`${work}: ${human(hw.freeBytesAtStart)} free, the run needs about ${human(need)}`);
  }
  const simDir = path.join(work, 'sim');
  const diffDir = path.join(work, 'diff');
  fs.mkdirSync(diffDir);
  const ctx = { work, simDir, diffDir, env: blksnapEnv(simDir, work), rss2: null, image: null };
  const want = (s) => !opts.only || opts.only.has(s);
  log(`bench: work dir ${work}; device ${human(sizes.device)}, memory case ${human(sizes.big)}`);

  const sections = [
    ['cbt', '3', 'CBT scan', () => cbtSection()],
    ['startup', '5', 'CLI start-up', () => startupSection(work)],
    ['copy', '1', 'full copy / incremental / restore', () => copySection(ctx, sizes.device)],
    ['memory', '6', 'memory', () => memorySection(ctx, sizes.device, sizes.big)],
  ];
  for (const [key, id, name, fn] of sections) {
    if (!want(key)) continue;
    if (isStopping()) break;
    try {
      await fn();
    } catch (err) {
      if (isStopping()) break;
      errorRow(id, name, err);
    }
  }
  notes.push('the simulated TAKE copies the whole device into the snapshot image (a real module only starts copy-on-write); the post-hook then syncs that copy and evicts it from the page cache so the copy phase starts clean and cold like dd; "minus the simulated TAKE" rows subtract the pre-hook to post-hook window (TAKE + that flush + ~10 ms of hook start-up)');
  notes.push('restore and dd baselines write to the same filesystem as they read from; cp is timed with a sync of its copy, dd with oflag=direct');
  const doc = { hardware: hw, sizes, quick: opts.quick, results, notes, details, runSeconds: round((Date.now() - startedMs) / 1000, 1) };
  resources.cleanup();
  if (opts.jsonFile) fs.writeFileSync(opts.jsonFile, JSON.stringify(doc, null, 2) + '\n');
  if (opts.json) process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  else process.stdout.write(table(hw, sizes, startedMs));
  return results.some((r) => r.result === 'ERROR') ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`bench: ${err && err.stack ? err.stack : err}\n`);
    resources.cleanup();
    process.exitCode = 1;
  },
);
