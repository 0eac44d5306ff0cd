import * as fs from 'fs';
import * as path from 'path';
import { UsageError } from '../../lib/errors';
import { bytesToSectors, parseCount, parseGeneration, parseId, parseRange, parseSizeArg, parseTimeoutMs } from '../../lib/cli/parse';
import { EXIT_CODES, exitCodeFor, exitCodeForKind, exitCodeForSignal } from '../../lib/cli/exit-codes';
import { InterruptedError, ModuleMissingError, NotFoundError, SnapshotOverflowError, SyscallError, UnsupportedKernelError, BusyError, IncrementalImpossibleError, LockHeldError, PermissionError, RepositoryCorruptedError } from '../../lib/errors';

function usageMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('size arguments', () => {
  test.each([
    ['512M', 512n << 20n],
    ['512m', 512n << 20n],
    ['512MiB', 512n << 20n],
    ['20G', 20n << 30n],
    ['20g', 20n << 30n],
    ['1T', 1n << 40n],
    ['1t', 1n << 40n],
    ['4096', 4096n],
    ['1KB', 1000n],
    ['1.5G', 3n << 29n],
  ])('%s = %s bytes', (text, bytes) => {
    expect(parseSizeArg(text, '--limit')).toBe(bytes);
  });

  test.each(['0', '0M', '-5G', '-1', 'abc', '12X', '', 'M', '5 G G'])('%p is refused naming the value', (text) => {
    const msg = usageMessage(() => parseSizeArg(text, '--limit'));
    expect(msg).toContain('--limit');
    expect(msg).toContain(`"${text}"`);
  });

  test('zero and negative say why', () => {
    expect(usageMessage(() => parseSizeArg('0', '--limit'))).toMatch(/greater than zero/);
    expect(usageMessage(() => parseSizeArg('-1G', '--limit'))).toMatch(/greater than zero/);
  });

  test('sectors round up', () => {
    expect(bytesToSectors(512n)).toBe(1n);
    expect(bytesToSectors(513n)).toBe(2n);
    expect(bytesToSectors(1n << 30n)).toBe(2097152n);
  });
});

describe('ranges, ids, counts', () => {
  test('START:COUNT', () => {
    expect(parseRange('2048:8')).toEqual({ offset: 2048n, count: 8n });
    expect(parseRange(' 0 : 1 ')).toEqual({ offset: 0n, count: 1n });
  });
  test.each(['2048', '2048:', ':8', 'a:b', '1:2:3', '-1:5'])('malformed range %p', (text) => {
    expect(usageMessage(() => parseRange(text))).toContain(`"${text}"`);
  });
  test('zero count is refused (the real module marks the whole map for {0,0})', () => {
    expect(usageMessage(() => parseRange('0:0'))).toMatch(/count must be greater than zero/);
  });
  test('snapshot ids', () => {
    expect(parseId('3F2A8C1E-1B2C-4D5E-8F90-123456789ABC').toString()).toBe('3f2a8c1e-1b2c-4d5e-8f90-123456789abc');
    expect(usageMessage(() => parseId('not-a-uuid'))).toContain('"not-a-uuid"');
    expect(usageMessage(() => parseId(undefined))).toMatch(/invalid snapshot id/);
  });
  test('generation ids', () => {
    expect(parseGeneration('0B6E8F3C-1D2E-4F50-8A9B-0C1D2E3F4A5B')).toBe('0b6e8f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b');
    expect(usageMessage(() => parseGeneration('xyz'))).toContain('"xyz"');
  });
  test('timeouts and counts', () => {
    expect(parseTimeoutMs('1000')).toBe(1000);
    expect(usageMessage(() => parseTimeoutMs('-1'))).toContain('"-1"');
    expect(usageMessage(() => parseTimeoutMs('1s'))).toContain('"1s"');
    expect(usageMessage(() => parseCount('x', 'level', 'hint'))).toContain('level');
  });
});

/** The exit codes a document's table lists: from `start` to the next heading. */
function documentedCodes(file: string, start: RegExp, end: RegExp, row: RegExp): number[] {
  const text = fs.readFileSync(path.join(__dirname, '..', '..', file), 'utf8');
  const from = text.search(start);
  if (from < 0) throw new Error(`${file}: no ${start}`);
  const rest = text.slice(from).replace(start, '');
  const stop = rest.search(end);
  const section = stop < 0 ? rest : rest.slice(0, stop);
  const codes = new Set<number>();
  for (const m of section.matchAll(row)) for (const n of m.slice(1).join(' ').match(/\d+/g) ?? []) codes.add(Number(n));
  return [...codes].sort((a, b) => a - b);
}

describe('exit codes', () => {
  test('README, blksnap(8), operations.md and the --help table list the same codes', () => {
    const all = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130, 143];
    expect(documentedCodes('README.md', /^## Exit codes$/m, /^## /m, /^\| (\d+(?: \/ \d+)?) \|/gm)).toEqual(all);
    expect(documentedCodes('docs/operations.md', /^\*\*Exit status\*\*/m, /^\*\*/m, /^\| (\d+(?:, \d+)?) \|/gm)).toEqual(all);
    expect(documentedCodes('docs/blksnap.8', /^\.SH EXIT STATUS$/m, /^\.SH /m, /^\.B (\d+)$|\((\d+): SIGTERM\)/gm)).toEqual(all);
    expect([...new Set(EXIT_CODES.map((r) => r.code))].sort((a, b) => a - b)).toEqual(all.filter((c) => c !== 143));
  });
  test('the table of the briefing', () => {
    const byKind = Object.fromEntries(EXIT_CODES.map((r) => [r.kind, r.code]));
    expect(byKind).toEqual({
      ok: 0, failure: 1, usage: 2, module_missing: 3, unsupported_kernel: 3, permission: 4, not_found: 5,
      busy: 6, lock_held: 7, overflow: 8, incremental_impossible: 9, repository_corrupted: 10, interrupted: 130,
    });
  });
  test('errors map through their kind', () => {
    expect(exitCodeFor(new UsageError('x'))).toBe(2);
    expect(exitCodeFor(new ModuleMissingError('x'))).toBe(3);
    expect(exitCodeFor(new UnsupportedKernelError('x'))).toBe(3);
    expect(exitCodeFor(new PermissionError('x'))).toBe(4);
    expect(exitCodeFor(new NotFoundError('x'))).toBe(5);
    expect(exitCodeFor(new BusyError('x'))).toBe(6);
    expect(exitCodeFor(new LockHeldError('x'))).toBe(7);
    expect(exitCodeFor(new SnapshotOverflowError('x'))).toBe(8);
    expect(exitCodeFor(new IncrementalImpossibleError('x'))).toBe(9);
    expect(exitCodeFor(new RepositoryCorruptedError('x'))).toBe(10);
    expect(exitCodeFor(new SyscallError('EBUSY', 'ioctl', '/dev/x'))).toBe(6);
    expect(exitCodeFor(new SyscallError('EACCES', 'open', '/dev/x'))).toBe(4);
    expect(exitCodeFor(new Error('plain'))).toBe(1);
    expect(exitCodeFor('string')).toBe(1);
  });
  test('signals', () => {
    expect(exitCodeFor(new InterruptedError('SIGINT'))).toBe(130);
    expect(exitCodeFor(new InterruptedError('SIGTERM'))).toBe(143);
    expect(exitCodeForSignal('SIGHUP')).toBe(129);
    expect(exitCodeForKind('interrupted')).toBe(130);
  });
});
