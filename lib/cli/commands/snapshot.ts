/** `blksnap snapshot ...` — create, take, destroy, list, info, watch. */
import { defineGroup } from '../command';
import create from './snapshot-create';
import take from './snapshot-take';
import list from './snapshot-list';
import destroy from './snapshot-destroy';
import info from './snapshot-info';
import watch from './snapshot-watch';

export default defineGroup({
  command: 'snapshot',
  describe: 'Snapshots: create, take, destroy, list, info, watch',
  subcommands: [create, take, destroy, list, info, watch],
  examples: [
    ['$0 snapshot create /dev/sdb1 --diff-storage /var/tmp --limit 4G', 'snapshot a device; prints the id and image'],
    ['$0 snapshot destroy --all', 'release every snapshot'],
  ],
});
