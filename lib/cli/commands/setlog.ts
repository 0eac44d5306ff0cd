/**
 * `blksnap setlog --level N --filepath FILE [--tz-minuteswest M]` and
 * `blksnap setlog --disable` — make the standalone module write its own log
 * file (IOCTL_BLKSNAP_SETLOG). The level is clamped to 0-7 (3 errors,
 * 4 warnings, 6 info, 7 debug); the path must be absolute (the module opens
 * it itself); `filepath_size` is the path's byte length. The time-zone
 * offset defaults to the local one, in minutes west of UTC as in
 * gettimeofday(2)'s struct timezone.
 * On a kernel without SETLOG (the upstream flavour answers ENOTTY) it prints
 * one warning on stderr and exits 0, so scripts written for the standalone
 * tool keep working.
 *
 * JSON (stdout): { "supported": boolean, "enabled": boolean, "level": n | null, "filepath": string | null, "tz_minuteswest": n }
 * Exit status: 0 (also when unsupported); 2 bad level, relative path, missing option; 3 no module; 4 not root.
 */
import * as path from 'path';
import { UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseInteger } from '../parse';

export interface SetlogArgs extends GlobalArgs {
  level?: string;
  filepath?: string;
  disable?: boolean;
  tzMinuteswest?: string;
}

export const MAX_LOG_LEVEL = 7;

/** Minutes west of UTC now (negative east of Greenwich), the struct timezone convention. */
export function localMinutesWest(now = new Date()): number {
  return now.getTimezoneOffset();
}

export function clampLevel(level: number): number {
  return Math.min(MAX_LOG_LEVEL, Math.max(0, level));
}

export default defineCommand<SetlogArgs>({
  command: 'setlog',
  describe: "Set the standalone module's own log file and level (or --disable)",
  builder: (y) =>
    y
      .option('level', { alias: 'l', type: 'string', requiresArg: true, describe: 'log level 0-7 (3 errors, 4 warnings, 6 info, 7 debug; clamped); default 6' })
      .option('filepath', { alias: 'f', type: 'string', requiresArg: true, describe: 'absolute path of the log file the module writes' })
      .option('tz-minuteswest', { type: 'string', requiresArg: true, describe: 'time-zone offset for the log, minutes west of UTC (default: local)' })
      .option('disable', { type: 'boolean', describe: 'stop the module logging' })
      .example('$0 setlog --level 7 --filepath /var/log/blksnap.log', 'debug log')
      .example('$0 setlog --disable', 'stop logging'),
  exitCodes: [0, 2, 3, 4],
  async run(ctx, argv) {
    const tz = argv.tzMinuteswest === undefined
      ? localMinutesWest()
      : parseInteger(argv.tzMinuteswest, '--tz-minuteswest', 'minutes west of UTC, e.g. -60 for UTC+1');
    let level: number | null;
    let filePath: string | null;
    if (argv.disable) {
      if (argv.level !== undefined || argv.filepath !== undefined) {
        throw new UsageError('--disable cannot be combined with --level or --filepath', { hint: 'blksnap setlog --disable' });
      }
      level = null;
      filePath = null;
    } else {
      if (argv.filepath === undefined) {
        throw new UsageError('setlog: missing --filepath', { hint: 'blksnap setlog --level 6 --filepath /var/log/blksnap.log, or blksnap setlog --disable' });
      }
      if (argv.filepath === '' || !path.isAbsolute(argv.filepath)) {
        throw new UsageError(`setlog: log file path "${argv.filepath}" is not absolute`, { hint: 'the module opens the file itself; give an absolute path such as /var/log/blksnap.log' });
      }
      filePath = argv.filepath;
      const requested = argv.level === undefined ? 6 : parseInteger(argv.level, '--level', 'a log level 0-7, e.g. --level 6');
      level = clampLevel(requested);
      if (level !== requested) ctx.out.info(`log level ${requested} clamped to ${level}`);
    }
    const control = await ctx.control();
    const supported = await control.setLog({ level, filePath, tzMinutesWest: tz });
    if (!supported) ctx.out.warn('module logging is not supported by this kernel; ignored');
    if (ctx.out.json) {
      return ctx.out.data({ supported, enabled: supported && level !== null, level, filepath: filePath, tz_minuteswest: tz });
    }
    if (supported) ctx.out.say(level === null ? 'module logging disabled' : `module logging at level ${level} to ${filePath}`);
  },
});
