/**
 * Byte sizes as admins type them: `512M`, `20G`, `1T`, `1.5T`, `4096`.
 *
 * K, M, G, T, P, E (also Ki, Mi, ... and KiB, MiB, ...) are powers of 1024,
 * the unit the kernel and `lsblk` count in; KB, MB, GB, ... are powers of
 * 1000, as in util-linux (losetup, fallocate). Upper and lower case are the
 * same (the reference C++ tool silently reads `512m` as 512 bytes; we do not).
 * A trailing `B` alone means bytes. Zero, negative and malformed sizes are
 * refused: a limit of 0 makes the kernel accept a snapshot that overflows
 * almost at once (blksnap-abi.md §7).
 */
import { UsageError } from '../errors';

/** Largest size accepted: the kernel's limit field is a u64 of sectors; we keep bytes within a signed 64-bit value. */
export const MAX_SIZE_BYTES = (1n << 63n) - 1n;

const BINARY_EXPONENT: Record<string, bigint> = { k: 1n, m: 2n, g: 3n, t: 4n, p: 5n, e: 6n };

export const SIZE_SYNTAX_HINT =
  'a size is a number of bytes, or a number with a suffix K, M, G, T, P, E (powers of 1024, e.g. 512M, 20G, 1.5T; KB, MB, GB... are powers of 1000)';

const SIZE_PATTERN = /^([0-9]+)(?:\.([0-9]+))?\s*(?:([kmgtpe])(ib|i|b)?|b)?$/i;

/**
 * Parses `text` into a whole number of bytes (fractions round down to a
 * byte). `what` names the thing being sized in the error message, e.g.
 * `--limit` or `diff_storage_limit`. Throws UsageError naming the value.
 */
export function parseSize(text: string, what: string): bigint {
  const trimmed = text.trim();
  const refuse = (why: string): never => {
    throw new UsageError(`${what}: invalid size "${text}": ${why}`, { hint: SIZE_SYNTAX_HINT });
  };
  if (trimmed === '') refuse('empty');
  if (/^[-−]/.test(trimmed)) refuse('must be greater than zero');
  const m = SIZE_PATTERN.exec(trimmed);
  if (!m) refuse('expected a number with an optional suffix K, M, G, T, P or E');
  const [, whole, fraction = '', prefix, rest] = m as RegExpExecArray;

  let multiplier = 1n;
  if (prefix !== undefined) {
    const exponent = BINARY_EXPONENT[prefix.toLowerCase()];
    // "KB"/"MB" (no i) are decimal; "K", "Ki", "KiB" binary.
    const decimal = rest !== undefined && rest.toLowerCase() === 'b';
    multiplier = (decimal ? 1000n : 1024n) ** exponent;
  }
  const scale = 10n ** BigInt(fraction.length);
  const bytes = (BigInt(whole + fraction) * multiplier) / scale;
  if (bytes === 0n) refuse('must be greater than zero');
  if (bytes > MAX_SIZE_BYTES) refuse('too large');
  return bytes;
}

const IEC_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** `21474836480n` → `20 GiB`; `1610612736n` → `1.5 GiB`; exact values below 1 KiB in bytes. */
export function formatSize(bytes: bigint): string {
  let unit = 0;
  while (unit < IEC_UNITS.length - 1 && bytes >= 1024n ** BigInt(unit + 1)) unit++;
  if (unit === 0) return `${bytes} B`;
  const divisor = 1024n ** BigInt(unit);
  const tenths = (bytes * 10n) / divisor;
  const text = tenths % 10n === 0n ? `${tenths / 10n}` : `${tenths / 10n}.${tenths % 10n}`;
  return `${text} ${IEC_UNITS[unit]}`;
}
