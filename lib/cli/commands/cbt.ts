/** `blksnap cbt ...` — change-block tracking: info, map, changes, mark-dirty. */
import { defineGroup } from '../command';
import info from './cbt-info';
import map from './cbt-map';
import changes from './cbt-changes';
import markDirty from './cbt-mark-dirty';

export default defineGroup({
  command: 'cbt',
  describe: 'Change tracking: info, map, changes, mark-dirty',
  subcommands: [info, map, changes, markDirty],
});
