/**
 * `blksnap verify --repo DIR [--device D] [--point N]` — recomputes every
 * block checksum and checks every file and the chain of points (for
 * --point: that point and the points it needs). Reports every problem found.
 *
 * Text (stdout): one line per point (`DEVICE point N (KIND): ok` or the problems), then a summary.
 * JSON (stdout, --json): { "repository": string, "ok": boolean, "points_checked": n, "blocks_checked": n,
 *   "bytes_checked": n, "problems": n, "devices": [ { "device": string|null, "key": string,
 *   "points": [ { "point": n, "kind": "full"|"incremental"|null, "parent": n|null, "blocks": n, "ok": boolean, "problems": [string] } ] } ] }
 * Exit status: 0 all good; 2 usage; 5 no repository, device or point; 10 a problem was found; 130/143.
 */
import { RepositoryCorruptedError, UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseCount } from '../parse';

export interface VerifyArgs extends GlobalArgs {
  repo?: string;
  device?: string;
  point?: string;
}

export default defineCommand<VerifyArgs>({
  command: 'verify',
  describe: 'Check a backup repository: every block checksum, every file, the chain of points',
  builder: (y) =>
    y
      .option('repo', { alias: 'r', type: 'string', requiresArg: true, describe: 'repository directory (default: repository in the config file)' })
      .option('device', { alias: 'd', type: 'string', requiresArg: true, describe: 'only this device (path at backup time, stable id or key)' })
      .option('point', { alias: 'p', type: 'string', requiresArg: true, describe: 'only this point and the points it needs' })
      .example('$0 verify --repo /backup', 'every point of every device')
      .example('$0 verify --repo /backup --device /dev/sdb1 --point 7 --json', 'what restoring point 7 needs'),
  exitCodes: [0, 2, 5, 10, 130, 143],
  async run(ctx, argv) {
    const point = argv.point === undefined ? undefined : parseCount(argv.point, 'point', 'expected a point number, e.g. --point 3 (see the backup summary)');
    if (point === 0) throw new UsageError('invalid point "0"', { hint: 'points are numbered from 1' });
    const { loadConfig } = await import('../../config');
    const repoDir = argv.repo ?? (await loadConfig(undefined, { env: ctx.io.env })).repository;
    if (!repoDir) throw new UsageError('verify: no repository given', { hint: 'add --repo DIR' });
    const { Repository } = await import('../../backup/repository');
    const { verifyRepository } = await import('../../backup/verify');
    const { interruptController } = await import('./backup');
    const controller = interruptController((fn) => ctx.onClose(fn));
    const repo = await Repository.open(repoDir, { warn: (m) => ctx.out.warn(m) });
    const report = await verifyRepository(repo, { device: argv.device, point, signal: controller.signal });
    if (ctx.out.json) {
      ctx.out.data({
        repository: report.repository,
        ok: report.ok,
        points_checked: report.pointsChecked,
        blocks_checked: report.blocksChecked,
        bytes_checked: report.bytesChecked,
        problems: report.problems,
        devices: report.devices.map((d) => ({
          device: d.path,
          key: d.key,
          points: d.points.map((p) => ({ point: p.point, kind: p.kind, parent: p.parent, blocks: p.blocks, ok: p.ok, problems: p.problems })),
        })),
      });
    } else {
      for (const d of report.devices) {
        for (const p of d.points) {
          const head = `${d.path ?? d.key} point ${p.point}${p.kind ? ` (${p.kind}${p.parent ? ` on ${p.parent}` : ''})` : ''}`;
          if (p.ok) ctx.out.text(`${head}: ok, ${p.blocks} blocks`);
          else for (const problem of p.problems) ctx.out.text(`${head}: ${problem}`);
        }
      }
      ctx.out.say(`${report.pointsChecked} points, ${report.blocksChecked} blocks, ${report.bytesChecked} bytes checked: ${report.ok ? 'no problems' : `${report.problems} problems`}`);
    }
    if (!report.ok) {
      throw new RepositoryCorruptedError(`verify found ${report.problems} problem${report.problems === 1 ? '' : 's'} in ${report.repository}`, {
        path: report.repository,
        hint: 'points with problems cannot be restored; the next backup of a damaged device is a full one',
      });
    }
  },
});
