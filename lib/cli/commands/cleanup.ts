/**
 * `blksnap cleanup [--repo DIR]` — destroys the snapshots this tool created
 * whose process has died (from the records in BLKSNAP_RUN_DIR; never
 * anyone else's), and with --repo removes what a killed backup left in the
 * repository: temp points, temp files, and a stale lock (a live holder's
 * lock is left alone). `blksnap backup` does the same first.
 *
 * Text (stdout): one line per thing done, or "nothing to clean up".
 * JSON (stdout, --json): { "destroyed_snapshots": [string], "stale_records": [string],
 *   "kept": [ { "id": string, "reason": string } ], "repository": string|null, "removed": [string],
 *   "repository_locked_by": string|null }
 * Exit status: 0; 2 usage; 3 no module; 4 permission; 5 no repository; 10 repository damaged.
 */
import { LockHeldError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';

export interface CleanupArgs extends GlobalArgs {
  repo?: string;
}

export default defineCommand<CleanupArgs>({
  command: 'cleanup',
  describe: 'Destroy snapshots left by killed blksnap processes; with --repo, remove their temp files and stale lock',
  builder: (y) =>
    y
      .option('repo', { alias: 'r', type: 'string', requiresArg: true, describe: 'also clean this repository' })
      .example('$0 cleanup', 'after a crash or kill -9 of a backup')
      .example('$0 cleanup --repo /backup --json', 'also the repository'),
  exitCodes: [0, 2, 3, 4, 5, 10],
  async run(ctx, argv) {
    const { cleanupSnapshots } = await import('../../snapshot/cleanup');
    const result = await cleanupSnapshots(await ctx.kernel());
    let removed: string[] = [];
    let lockedBy: string | null = null;
    const warnings: string[] = [];
    if (argv.repo) {
      const { Repository } = await import('../../backup/repository');
      const repo = await Repository.open(argv.repo, { warn: (m) => warnings.push(m) });
      try {
        const lock = await repo.lock({ command: 'blksnap cleanup', warn: (m) => warnings.push(m) });
        try {
          removed = await repo.removeStaleTemps();
        } finally {
          await lock.release();
        }
      } catch (err) {
        if (!(err instanceof LockHeldError)) throw err;
        lockedBy = err.message;
      }
    }
    for (const w of warnings) ctx.out.warn(w);
    if (ctx.out.json) {
      return ctx.out.data({
        destroyed_snapshots: result.destroyed,
        stale_records: result.staleRecords,
        kept: result.kept,
        repository: argv.repo ?? null,
        removed,
        repository_locked_by: lockedBy,
      });
    }
    for (const id of result.destroyed) ctx.out.text(`destroyed snapshot ${id} (its creator is gone)`);
    for (const id of result.staleRecords) ctx.out.text(`removed the record of snapshot ${id} (already gone)`);
    for (const k of result.kept) ctx.out.say(`kept snapshot ${k.id}: ${k.reason}`);
    for (const p of removed) ctx.out.text(`removed ${p}`);
    if (lockedBy) ctx.out.say(`repository left alone: ${lockedBy}`);
    if (!result.destroyed.length && !result.staleRecords.length && !removed.length && !warnings.length) ctx.out.say('nothing to clean up');
  },
});
