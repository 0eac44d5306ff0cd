/** `blksnap debug ...` — diagnostics that need no snapshot. */
import { defineGroup } from '../command';
import abi from './debug-abi';

export default defineGroup({
  command: 'debug',
  describe: 'Diagnostics (debug abi: ioctl numbers and struct layouts)',
  subcommands: [abi],
});
