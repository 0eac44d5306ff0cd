/**
 * `blksnap snapshot watch ID [--timeout MS]` (also `snapshot_watcher --id ID`)
 * — prints the snapshot's events as they arrive until it is destroyed (or
 * the timeout passes). The kernel reports an overflow as a `corrupted` event
 * with err_code 28 (blksnap-abi.md §7).
 *
 * Text: one line per event, `TIME corrupted device MAJ:MIN error ENOSPC (28)`
 * or `TIME no_space requested SECTORS sectors`; a last line on stderr says why it ended.
 * JSON lines (stdout), each tagged with "type":
 *   { "type": "event", "id": string, "code": "corrupted", "time_label": n, "dev_major": n, "dev_minor": n, "err_code": n, "errno": string }
 *   { "type": "event", "id": string, "code": "no_space", "time_label": n, "requested_sectors": n }
 *   { "type": "event", "id": string, "code": "unknown", "time_label": n, "raw_code": n }
 *   { "type": "end", "id": string, "reason": "destroyed" | "timeout", "events": n }
 * Exit status: 0 destroyed or timed out without a failure event; 2 bad id or timeout; 5 no such snapshot;
 * 8 a corrupted/no_space event arrived; 130/143 interrupted.
 */
import { errnoName, NotFoundError, SnapshotOverflowError } from '../../errors';
import type { SnapshotEvent } from '../../kernel/types';
import type { SnapshotId } from '../../kernel/snapshot-id';
import { defineCommand } from '../command';
import type { CliContext, GlobalArgs } from '../context';
import { parseId, parseTimeoutMs } from '../parse';

export interface SnapshotWatchArgs extends GlobalArgs {
  id: string;
  timeout?: string;
}

/** One wait; the kernel counts jiffies and does not wake a waiter on DESTROY (§7), so keep each short. */
const WAIT_SLICE_MS = 1000;

export function eventDoc(id: SnapshotId, ev: SnapshotEvent): Record<string, unknown> {
  const base = { type: 'event', id: id.toString(), code: ev.code, time_label: ev.timeLabel };
  switch (ev.code) {
    case 'corrupted':
      return { ...base, dev_major: ev.devMajor, dev_minor: ev.devMinor, err_code: ev.errCode, errno: errnoName(ev.errCode) };
    case 'no_space':
      return { ...base, requested_sectors: ev.requestedSectors };
    default:
      return { ...base, raw_code: ev.rawCode };
  }
}

export function eventLine(ev: SnapshotEvent): string {
  switch (ev.code) {
    case 'corrupted':
      return `${ev.timeLabel} corrupted device ${ev.devMajor}:${ev.devMinor} error ${errnoName(ev.errCode)} (${ev.errCode})`;
    case 'no_space':
      return `${ev.timeLabel} no_space requested ${ev.requestedSectors} sectors`;
    default:
      return `${ev.timeLabel} event ${ev.rawCode}`;
  }
}

export type WatchEnd = 'destroyed' | 'timeout';

/**
 * Calls `onEvent` for each event until the snapshot is destroyed or
 * `timeoutMs` (null: no limit) passes. A snapshot that does not exist at the
 * start (COLLECT) is a NotFoundError; one that disappears later ends the watch.
 */
export async function watchSnapshot(
  ctx: CliContext,
  id: SnapshotId,
  timeoutMs: number | null,
  onEvent: (ev: SnapshotEvent) => void,
): Promise<WatchEnd> {
  const control = await ctx.control();
  if (!(await control.collectSnapshots()).some((p) => p.equals(id))) {
    throw new NotFoundError(`snapshot ${id} not found`, { path: id.toString(), hint: 'see blksnap snapshot list' });
  }
  const { signal, interruption } = ctx.interruptSignal();
  const deadline = timeoutMs === null ? Infinity : Date.now() + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) return 'timeout';
    let ev: SnapshotEvent | null;
    try {
      ev = await control.waitEvent(id, Math.min(WAIT_SLICE_MS, remaining), signal);
    } catch (err) {
      // It existed when the watch began: gone now means destroyed.
      if (err instanceof NotFoundError) return 'destroyed';
      throw err;
    }
    const stop = interruption();
    if (stop) throw stop;
    if (ev) onEvent(ev);
  }
}

export default defineCommand<SnapshotWatchArgs>({
  command: 'watch <id>',
  describe: 'Print snapshot events as they arrive, until it is destroyed',
  builder: (y) =>
    y
      .positional('id', { type: 'string', demandOption: true, describe: 'snapshot id' })
      .option('timeout', { type: 'string', requiresArg: true, describe: 'stop after MS milliseconds (default: until destroyed)' })
      .example('$0 snapshot watch 3f2a8c1e-1b2c-4d5e-8f90-123456789abc --json &', 'watch in the background during a backup'),
  exitCodes: [0, 2, 5, 8, 130],
  async run(ctx, argv) {
    const id = parseId(argv.id);
    const timeoutMs = argv.timeout === undefined ? null : parseTimeoutMs(argv.timeout);
    let events = 0;
    let failed: SnapshotEvent | null = null;
    const end = await watchSnapshot(ctx, id, timeoutMs, (ev) => {
      events++;
      if (ev.code !== 'unknown') failed = failed ?? ev;
      if (ctx.out.json) ctx.out.jsonLine(eventDoc(id, ev));
      else ctx.out.text(eventLine(ev));
    });
    if (ctx.out.json) ctx.out.jsonLine({ type: 'end', id: id.toString(), reason: end, events });
    else ctx.out.info(end === 'destroyed' ? `snapshot ${id} destroyed; ${events} event(s)` : `timeout; ${events} event(s)`);
    if (failed) {
      throw new SnapshotOverflowError(`snapshot ${id} reported ${eventLine(failed)}`, {
        path: id.toString(),
        hint: 'the snapshot images are unusable; destroy it and retry with a larger difference storage',
      });
    }
  },
});
