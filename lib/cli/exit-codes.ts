/**
 * The one table of `blksnap` exit codes. Scripts depend on these numbers, so
 * the table only grows: a code, once given a meaning, keeps it. Unknown codes
 * mean failure. Every error path of the CLI ends in `exitCodeFor()`.
 */
import type { ErrorKind } from '../errors';
import { BlksnapError, InterruptedError } from '../errors';

export interface ExitCodeRow {
  code: number;
  /** The ErrorKind that maps to this code (`ok` for success, `signal` for 130/143). */
  kind: ErrorKind | 'ok';
  /** Short name used in docs and JSON. */
  name: string;
  /** One line for --help. */
  short: string;
  meaning: string;
}

export const EXIT_CODES: readonly ExitCodeRow[] = [
  { code: 0, kind: 'ok', name: 'ok', short: 'success', meaning: 'success' },
  { code: 1, kind: 'failure', name: 'failure', short: 'failure', meaning: 'failure not covered below (kernel error, I/O error)' },
  { code: 2, kind: 'usage', name: 'usage', short: 'usage error (bad command, option or value)', meaning: 'usage error: unknown command or option, malformed value (size, id, range), bad device argument, a difference storage on a device being snapshotted' },
  { code: 3, kind: 'module_missing', name: 'module_missing', short: 'module missing / kernel unsupported', meaning: 'blksnap kernel module not loaded, or kernel without block device filter support' },
  { code: 3, kind: 'unsupported_kernel', name: 'unsupported_kernel', short: 'module missing / kernel unsupported', meaning: 'kernel without block device filter support (same code as module missing)' },
  { code: 4, kind: 'permission', name: 'permission', short: 'permission denied (not root)', meaning: 'permission denied (not root, EACCES/EPERM)' },
  { code: 5, kind: 'not_found', name: 'not_found', short: 'not found (device, snapshot, repository point)', meaning: 'not found: device, snapshot, repository point' },
  { code: 6, kind: 'busy', name: 'busy', short: 'busy / conflict', meaning: 'busy or conflict: device in another snapshot, storage held by another snapshot, already taken' },
  { code: 7, kind: 'lock_held', name: 'lock_held', short: 'lock held', meaning: 'lock held by another process' },
  { code: 8, kind: 'overflow', name: 'overflow', short: 'snapshot overflowed or corrupted', meaning: 'snapshot overflowed its difference storage, or is corrupted' },
  { code: 9, kind: 'incremental_impossible', name: 'incremental_impossible', short: 'incremental impossible (CBT generation changed)', meaning: 'incremental impossible: CBT generation, capacity or block size changed' },
  { code: 10, kind: 'repository_corrupted', name: 'repository_corrupted', short: 'repository corrupted / verify failed', meaning: 'repository corrupted or verify failed' },
  { code: 130, kind: 'interrupted', name: 'interrupted', short: 'interrupted (SIGINT; 143 SIGTERM)', meaning: 'interrupted by SIGINT (143 for SIGTERM)' },
];

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_MODULE_MISSING = 3;
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;

const CODE_BY_KIND = new Map<string, number>(EXIT_CODES.map((row) => [row.kind, row.code]));

/** Exit code of a signal by the shell convention 128 + signal number. */
export function exitCodeForSignal(signal: NodeJS.Signals): number {
  if (signal === 'SIGTERM') return EXIT_SIGTERM;
  if (signal === 'SIGINT') return EXIT_SIGINT;
  const n = (require('os').constants.signals as Record<string, number>)[signal];
  return n ? 128 + n : EXIT_SIGINT;
}

export function exitCodeForKind(kind: ErrorKind): number {
  return CODE_BY_KIND.get(kind) ?? EXIT_FAILURE;
}

/** The exit code for anything thrown by a command. Non-Blksnap errors are failures (1). */
export function exitCodeFor(err: unknown): number {
  if (err instanceof InterruptedError) return exitCodeForSignal(err.signal);
  if (err instanceof BlksnapError) return exitCodeForKind(err.kind);
  return EXIT_FAILURE;
}
