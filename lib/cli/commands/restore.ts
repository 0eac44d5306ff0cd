/**
 * `blksnap restore --repo DIR --device D [--point N] --to FILE|DEVICE [--force]`
 * — rebuilds the device image as of a point (default the newest) from its
 * full point and incrementals, checking every block's checksum. A file
 * target is written to a temp file and renamed when complete; an existing
 * file or a block device is only replaced with --force; a mounted (or
 * otherwise used) target is refused.
 *
 * Text (stdout): one line: `restored DEVICE point N (chain 1,2,3) to TARGET: BYTES`.
 * JSON (stdout, --json): { "device": string, "key": string, "point": n, "chain": [n], "target": string,
 *   "target_kind": "file"|"block", "capacity": n, "bytes_read": n, "bytes_written": n, "zero_blocks": n, "duration_ms": n }
 * Exit status: 0; 2 usage (target exists without --force, too small, not a file or device);
 * 5 no repository, device or point; 6 target in use (mounted); 10 repository damaged; 130/143.
 */
import { UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseCount } from '../parse';

export interface RestoreArgs extends GlobalArgs {
  repo?: string;
  device?: string;
  point?: string;
  to?: string;
  force?: boolean;
}

export default defineCommand<RestoreArgs>({
  command: 'restore',
  describe: 'Rebuild a device image as of a backup point, into a file or onto a block device',
  builder: (y) =>
    y
      .option('repo', { alias: 'r', type: 'string', requiresArg: true, describe: 'repository directory (default: repository in the config file)' })
      .option('device', { alias: 'd', type: 'string', requiresArg: true, demandOption: true, describe: 'device as backed up (path at backup time, stable id or key)' })
      .option('point', { alias: 'p', type: 'string', requiresArg: true, describe: 'point number (default: the newest)' })
      .option('to', { type: 'string', requiresArg: true, demandOption: true, describe: 'target: a new file, an existing file (--force) or a block device (--force)' })
      .option('force', { alias: 'f', type: 'boolean', describe: 'replace an existing file or overwrite a block device' })
      .example('$0 restore --repo /backup --device /dev/sdb1 --to /var/tmp/sdb1.img', 'newest point into an image file')
      .example('$0 restore --repo /backup --device /dev/sdb1 --point 3 --to /dev/sdc1 --force', 'point 3 onto an unmounted device'),
  exitCodes: [0, 2, 5, 6, 10, 130, 143],
  async run(ctx, argv) {
    const point = argv.point === undefined ? undefined : parseCount(argv.point, 'point', 'expected a point number, e.g. --point 3');
    if (point === 0) throw new UsageError('invalid point "0"', { hint: 'points are numbered from 1' });
    if (!argv.to) throw new UsageError('restore: --to is empty', { hint: 'give a file name or a block device' });
    const { loadConfig } = await import('../../config');
    const repoDir = argv.repo ?? (await loadConfig(undefined, { env: ctx.io.env })).repository;
    if (!repoDir) throw new UsageError('restore: no repository given', { hint: 'add --repo DIR' });
    const { Repository } = await import('../../backup/repository');
    const { restorePoint } = await import('../../backup/restore');
    const { ByteProgressBar, humanBytes } = await import('../../backup/progress');
    const { interruptController } = await import('./backup');
    const controller = interruptController((fn) => ctx.onClose(fn), (m) => ctx.out.warn(m));
    const showBar = ctx.io.stderrIsTTY && !ctx.out.options.quiet && !ctx.out.json;
    const bar = showBar ? new ByteProgressBar(ctx.io.stderr as NodeJS.WritableStream) : null;
    ctx.onClose(() => bar?.stop());
    const repo = await Repository.open(repoDir, { warn: (m) => ctx.out.warn(m) });
    const s = await restorePoint(repo, {
      device: String(argv.device),
      point,
      to: argv.to,
      force: !!argv.force,
      signal: controller.signal,
      onPlan: (p) => {
        ctx.out.info(`restoring point ${p.chain[p.chain.length - 1]} (chain ${p.chain.join(', ')}) to ${p.target} (${humanBytes(p.capacity)})`);
        bar?.start('restore', p.capacity);
      },
      onProgress: (p) => bar?.update(p.bytesDone, p.bytesTotal),
    });
    bar?.stop();
    if (ctx.out.json) {
      return ctx.out.data({
        device: s.device,
        key: s.key,
        point: s.point,
        chain: s.chain,
        target: s.target,
        target_kind: s.targetKind,
        capacity: s.capacity,
        bytes_read: s.bytesRead,
        bytes_written: s.bytesWritten,
        zero_blocks: s.zeroBlocks,
        duration_ms: s.durationMs,
      });
    }
    ctx.out.text(`restored ${s.device} point ${s.point} (chain ${s.chain.join(',')}) to ${s.target}: ${s.capacity} bytes`);
  },
});
