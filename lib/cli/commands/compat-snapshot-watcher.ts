/**
 * Reference form `blksnap snapshot_watcher --id ID` — `snapshot watch ID` with
 * the reference's words: a start line, one line per event
 * (`TIME - The snapshot was corrupted for device [MAJ:MIN] with error "STRERROR".`),
 * and `Snapshot watcher finished.` when the snapshot is destroyed.
 * JSON lines as `snapshot watch`.
 */
import { strerror, errnoName } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseId } from '../parse';
import { eventDoc, watchSnapshot } from './snapshot-watch';

interface Args extends GlobalArgs {
  id?: string;
}

export default defineCommand<Args>({
  command: 'snapshot_watcher',
  describe: false,
  builder: (y) => y.option('id', { alias: 'i', type: 'string', requiresArg: true, describe: 'snapshot uuid' }),
  exitCodes: [0, 2, 3, 4, 5, 130],
  async run(ctx, argv) {
    const id = parseId(argv.id);
    if (!ctx.out.json) ctx.out.text(`Start snapshot watcher for snapshot '${id}'.`);
    let events = 0;
    const end = await watchSnapshot(ctx, id, null, (ev) => {
      events++;
      if (ctx.out.json) return ctx.out.jsonLine(eventDoc(id, ev));
      if (ev.code === 'corrupted') {
        ctx.out.text(`${ev.timeLabel} - The snapshot was corrupted for device [${ev.devMajor}:${ev.devMinor}] with error "${strerror(errnoName(ev.errCode))}".`);
      } else if (ev.code === 'no_space') {
        ctx.out.text(`${ev.timeLabel} - The snapshot requests additional [${ev.requestedSectors}] sectors for difference storage space.`);
      } else ctx.out.text(`${ev.timeLabel} - unsupported event #${ev.rawCode}.`);
    });
    if (ctx.out.json) ctx.out.jsonLine({ type: 'end', id: id.toString(), reason: end, events });
    else ctx.out.text('Snapshot watcher finished.');
  },
});
