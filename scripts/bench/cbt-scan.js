'use strict';
/**
 * CBT scan timing (run as its own process by scripts/bench.js; prints JSON).
 * lib/cbt changedRanges (the public API) and scanChangedRuns (what the backup
 * engine calls) over a 2,097,152-entry map — the kernel's default
 * tracking_block_maximum_count — against a plain byte loop over the same map.
 */
const path = require('path');
const cbt = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'cbt'));

const ENTRIES = 2097152;
const BLOCK = 64 << 10;
const CAPACITY = ENTRIES * BLOCK;
const SINCE = 7; // changes_number of the previous backup
const RUNS = 21;
const WARMUP = 5;

/** Deterministic PRNG (xorshift32) so every run scans the same maps. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

/**
 * A nightly map: bytes of earlier change numbers (0..SINCE) everywhere, and
 * about 1% of the blocks changed since the last backup, in clustered runs of
 * 1-32 blocks (files rewritten, journal areas) — what a real map looks like.
 */
function sparseMap() {
  const r = rng(1);
  const map = new Uint8Array(ENTRIES);
  for (let i = 0; i < ENTRIES; i++) map[i] = r() < 0.6 ? 0 : 1 + Math.floor(r() * SINCE);
  let changed = 0;
  while (changed < ENTRIES / 100) {
    const start = Math.floor(r() * ENTRIES);
    const len = 1 + Math.floor(r() * 32);
    for (let i = start; i < Math.min(ENTRIES, start + len); i++) {
      if (map[i] <= SINCE) changed++;
      map[i] = SINCE + 1 + Math.floor(r() * 3);
    }
  }
  return { map, changed };
}

/** Every other block changed: the most ranges a map can produce (1,048,576). */
function alternatingMap() {
  const map = new Uint8Array(ENTRIES);
  for (let i = 0; i < ENTRIES; i += 2) map[i] = SINCE + 1;
  return { map, changed: ENTRIES / 2 };
}

/** Half the blocks changed at random: defeats branch prediction and word skipping. */
function randomHalfMap() {
  const r = rng(2);
  const map = new Uint8Array(ENTRIES);
  let changed = 0;
  for (let i = 0; i < ENTRIES; i++) {
    if (r() < 0.5) { map[i] = SINCE + 1; changed++; } else map[i] = Math.floor(r() * (SINCE + 1));
  }
  return { map, changed };
}

function plainLoop(map, since) {
  let n = 0;
  for (let i = 0; i < map.length; i++) if (map[i] > since) n++;
  return n;
}

function time(fn) {
  for (let i = 0; i < WARMUP; i++) fn();
  const ms = [];
  let result;
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    result = fn();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  ms.sort((a, b) => a - b);
  return { medianMs: ms[RUNS >> 1], minMs: ms[0], maxMs: ms[RUNS - 1], result };
}

const out = { entries: ENTRIES, blockSize: BLOCK, since: SINCE, runs: RUNS, patterns: {} };
for (const [name, make] of [['sparse', sparseMap], ['random-half', randomHalfMap], ['alternating', alternatingMap]]) {
  const { map, changed } = make();
  const loop = time(() => plainLoop(map, SINCE));
  const ranges = time(() => cbt.changedRanges(map, SINCE, BLOCK, CAPACITY));
  const runs = time(() => cbt.scanChangedRuns(map, SINCE));
  // The three must agree, or the timing means nothing.
  const covered = cbt.totalLength(ranges.result) / BLOCK;
  let runBlocks = 0;
  for (let i = 1; i < runs.result.length; i += 2) runBlocks += runs.result[i];
  if (loop.result !== changed || covered !== changed || runBlocks !== changed) {
    throw new Error(`${name}: counts disagree: pattern ${changed}, loop ${loop.result}, changedRanges ${covered}, scanChangedRuns ${runBlocks}`);
  }
  out.patterns[name] = {
    changedBlocks: changed,
    ranges: ranges.result.length,
    plainLoop: { medianMs: loop.medianMs, minMs: loop.minMs, maxMs: loop.maxMs },
    changedRanges: { medianMs: ranges.medianMs, minMs: ranges.minMs, maxMs: ranges.maxMs },
    scanChangedRuns: { medianMs: runs.medianMs, minMs: runs.minMs, maxMs: runs.maxMs },
  };
}
process.stdout.write(JSON.stringify(out) + '\n');
