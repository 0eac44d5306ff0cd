/**
 * Assertions for scenarios. Each failure message says what was expected and
 * what came back (exit code, the relevant stream); the runner appends the
 * full transcript, so these stay short.
 */
import { createHash } from 'crypto';
import type { CommandResult } from './process';

export class ScenarioFailure extends Error {}

export function fail(message: string): never {
  throw new ScenarioFailure(message);
}

export function check(condition: unknown, message: string): asserts condition {
  if (!condition) fail(message);
}

function describeResult(r: CommandResult): string {
  const out = r.stdout.trim() ? `\n  stdout: ${r.stdout.trim().slice(0, 1500)}` : '';
  const err = r.stderr.trim() ? `\n  stderr: ${r.stderr.trim().slice(0, 1500)}` : '';
  return `\`${r.argv.slice(1).join(' ')}\` exited ${r.code ?? `by signal ${r.signal}`}${out}${err}`;
}

/** The command succeeded (exit 0). Returns it for chaining. */
export function ok(r: CommandResult, what: string): CommandResult {
  if (r.code !== 0) fail(`${what}: expected exit 0, got ${describeResult(r)}`);
  return r;
}

/** The command failed with exactly `code`, and its stderr matches `stderrPattern` when given. */
export function exits(r: CommandResult, code: number, what: string, stderrPattern?: RegExp): CommandResult {
  if (r.code !== code) fail(`${what}: expected exit ${code}, got ${describeResult(r)}`);
  if (stderrPattern && !stderrPattern.test(r.stderr)) {
    fail(`${what}: expected stderr to match ${stderrPattern}, got ${describeResult(r)}`);
  }
  return r;
}

export function equal<T>(actual: T, expected: T, what: string): void {
  if (actual !== expected) fail(`${what}: expected ${String(expected)}, got ${String(actual)}`);
}

export function sameBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.length !== expected.length) fail(`${what}: lengths differ (${actual.length} vs expected ${expected.length})`);
  const i = firstDifference(actual, expected);
  if (i >= 0) {
    fail(`${what}: first difference at byte ${i} (0x${i.toString(16)}): got 0x${actual[i].toString(16)}, expected 0x${expected[i].toString(16)}; sha256 ${sha256(actual).slice(0, 16)} vs ${sha256(expected).slice(0, 16)}`);
  }
}

export function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  // Compare in 64 KiB slices first: devices are tens of MiB.
  for (let off = 0; off < n; off += 65536) {
    const end = Math.min(n, off + 65536);
    if (a.subarray(off, end).equals(b.subarray(off, end))) continue;
    for (let i = off; i < end; i++) if (a[i] !== b[i]) return i;
  }
  return a.length === b.length ? -1 : n;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Parses a command's stdout as one JSON document, naming the command when it is not JSON. */
export function json<T = any>(r: CommandResult, what: string): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    return fail(`${what}: stdout is not JSON: ${describeResult(r)}`);
  }
}

/** Parses stdout as JSON lines (one object per non-empty line). */
export function jsonLines<T = any>(r: CommandResult | string, what: string): T[] {
  const text = typeof r === 'string' ? r : r.stdout;
  return text.split('\n').filter((l) => l.trim()).map((line) => {
    try {
      return JSON.parse(line) as T;
    } catch {
      return fail(`${what}: a stdout line is not JSON: ${line}`);
    }
  });
}

/** Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced byte for byte. */
export function patternBytes(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(Math.ceil(length / 4) * 4);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  return buf.subarray(0, length);
}

/** First differing byte offset of two files (streamed, any size), -1 when equal; a size difference counts at the shorter length. */
export function firstFileDifference(a: string, b: string): number {
  const fs = require('fs') as typeof import('fs');
  const [sa, sb] = [fs.statSync(a).size, fs.statSync(b).size];
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    const piece = 4 * 1024 * 1024;
    const ba = Buffer.alloc(piece);
    const bb = Buffer.alloc(piece);
    for (let pos = 0; pos < Math.min(sa, sb); pos += piece) {
      const na = fs.readSync(fa, ba, 0, piece, pos);
      const nb = fs.readSync(fb, bb, 0, piece, pos);
      const i = firstDifference(ba.subarray(0, na), bb.subarray(0, nb));
      if (i >= 0) return pos + i;
    }
    return sa === sb ? -1 : Math.min(sa, sb);
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}

export function sameFiles(actual: string, expected: string, what: string): void {
  const i = firstFileDifference(actual, expected);
  if (i >= 0) fail(`${what}: ${actual} and ${expected} differ first at byte ${i} (sizes ${require('fs').statSync(actual).size} and ${require('fs').statSync(expected).size})`);
}
