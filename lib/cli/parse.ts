/**
 * Parsers for the values users type: sizes, sector ranges, snapshot ids,
 * timeouts. Each throws a UsageError whose message quotes the bad value and
 * whose hint shows a good one, before anything is sent to the kernel.
 */
import { UsageError } from '../errors';
import { SnapshotId } from '../kernel/snapshot-id';
import { parseSize, SIZE_SYNTAX_HINT } from '../config/size';

export { formatSize } from '../config/size';

export const SECTOR_BYTES = 512;

/**
 * A size argument (`--limit 20G`): the same syntax as the configuration file
 * (lib/config/size.ts): K M G T P E powers of 1024 in either case, KB MB GB
 * powers of 1000, fractions allowed, zero and negative refused.
 */
export function parseSizeArg(text: unknown, what: string): bigint {
  if (typeof text !== 'string' && typeof text !== 'number') {
    throw new UsageError(`${what}: missing size`, { hint: SIZE_SYNTAX_HINT });
  }
  return parseSize(String(text), what);
}

/** Bytes to 512-byte sectors, rounding up (the kernel counts the limit in sectors). */
export function bytesToSectors(bytes: bigint): bigint {
  return (bytes + BigInt(SECTOR_BYTES) - 1n) / BigInt(SECTOR_BYTES);
}

export interface ParsedRange {
  offset: bigint;
  count: bigint;
}

/** `START:COUNT` in 512-byte sectors; COUNT must be > 0. */
export function parseRange(text: string): ParsedRange {
  const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(String(text));
  if (!m) {
    throw new UsageError(`invalid sector range "${text}"`, {
      hint: 'expected START:COUNT in 512-byte sectors, e.g. --range 2048:8',
    });
  }
  const range = { offset: BigInt(m[1]), count: BigInt(m[2]) };
  if (range.count === 0n) {
    throw new UsageError(`invalid sector range "${text}": count must be greater than zero`, {
      hint: 'expected START:COUNT with COUNT >= 1, e.g. --range 2048:8',
    });
  }
  return range;
}

export function parseId(text: unknown): SnapshotId {
  if (typeof text !== 'string' || text === '') {
    throw new UsageError(`invalid snapshot id "${text ?? ''}"`, {
      hint: 'expected a UUID like 3f2a8c1e-1b2c-4d5e-8f90-123456789abc (see `blksnap snapshot list`)',
    });
  }
  return SnapshotId.parse(text);
}

/** A CBT generation id (same text form as a snapshot id). */
export function parseGeneration(text: string): string {
  if (!SnapshotId.isValid(text)) {
    throw new UsageError(`invalid generation id "${text}"`, {
      hint: 'expected the generation_id UUID printed by `blksnap cbt info`',
    });
  }
  return text.trim().toLowerCase();
}

/** A non-negative whole number (milliseconds, counts, levels). */
export function parseCount(text: unknown, what: string, hint: string): number {
  const t = String(text ?? '').trim();
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) {
    throw new UsageError(`invalid ${what} "${text ?? ''}"`, { hint });
  }
  return Number(t);
}

/** A signed whole number. */
export function parseInteger(text: unknown, what: string, hint: string): number {
  const t = String(text ?? '').trim();
  if (!/^[-+]?\d+$/.test(t) || !Number.isSafeInteger(Number(t))) {
    throw new UsageError(`invalid ${what} "${text ?? ''}"`, { hint });
  }
  return Number(t);
}

export function parseTimeoutMs(text: unknown): number {
  return parseCount(text, 'timeout', 'expected a whole number of milliseconds, e.g. --timeout 1000');
}
