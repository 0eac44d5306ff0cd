/**
 * Reference form `blksnap snapshot_waitevent --id ID --timeout MS` — waits
 * once for one event and prints the reference's lines:
 *   result=ok | result=timeout | result=interrupted | result=not found
 *   time=TIME_LABEL          (ok only)
 *   event=corrupted | event=no_space | event=CODE
 * plus detail lines a key=value parser can ignore: for corrupted
 * `dev_id=MAJ:MIN` and `err_code=N`, for no_space `requested_nr_sect=N`.
 * JSON (stdout): { "result": "ok"|"timeout"|"interrupted"|"not found", "event": <snapshot watch event object> | null }
 * Exit status: 0 for every result above (as the reference), 130/143 after `result=interrupted`; 2 bad id/timeout; 3; 4.
 */
import { NotFoundError, UsageError } from '../../errors';
import type { SnapshotEvent } from '../../kernel/types';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseId, parseTimeoutMs } from '../parse';
import { eventDoc } from './snapshot-watch';

interface Args extends GlobalArgs {
  id?: string;
  timeout?: string;
}

export default defineCommand<Args>({
  command: 'snapshot_waitevent',
  describe: false,
  builder: (y) =>
    y
      .option('id', { alias: 'i', type: 'string', requiresArg: true, describe: 'snapshot uuid' })
      .option('timeout', { alias: 't', type: 'string', requiresArg: true, describe: 'the allowed waiting time for the event in milliseconds' }),
  exitCodes: [0, 2, 3, 4, 130],
  async run(ctx, argv) {
    const id = parseId(argv.id);
    if (argv.timeout === undefined) throw new UsageError("Argument 'timeout' is missed.", { hint: 'blksnap snapshot_waitevent --id ID --timeout 1000' });
    const timeoutMs = parseTimeoutMs(argv.timeout);
    const control = await ctx.control();
    const { signal, interruption } = ctx.interruptSignal();
    let result: 'ok' | 'timeout' | 'interrupted' | 'not found';
    let ev: SnapshotEvent | null = null;
    try {
      ev = await control.waitEvent(id, timeoutMs, signal);
      result = interruption() ? 'interrupted' : ev ? 'ok' : 'timeout';
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      result = 'not found';
    }
    if (ctx.out.json) ctx.out.data({ result, event: ev ? eventDoc(id, ev) : null });
    else {
      ctx.out.text(`result=${result}`);
      if (ev) {
        ctx.out.text(`time=${ev.timeLabel}`);
        if (ev.code === 'corrupted') {
          ctx.out.text('event=corrupted');
          ctx.out.text(`dev_id=${ev.devMajor}:${ev.devMinor}`);
          ctx.out.text(`err_code=${ev.errCode}`);
        } else if (ev.code === 'no_space') {
          ctx.out.text('event=no_space');
          ctx.out.text(`requested_nr_sect=${ev.requestedSectors}`);
        } else ctx.out.text(`event=${ev.rawCode}`);
      }
    }
    const stop = interruption();
    if (stop) throw stop;
  },
});
