/**
 * `blksnap backup DEVICE... --repo DIR [--mode auto|full|incremental]
 *   [--diff-storage PATH] [--limit SIZE] [--pre-hook CMD] [--post-hook CMD] [--freeze MOUNTPOINT]...`
 * — one coherent snapshot of all devices, then a full or CBT-incremental
 * point per device in the repository (lib/backup/job.ts). Defaults for the
 * repository, devices, limit, difference storage directory, mode, hooks and
 * freeze come from the configuration file (BLKSNAP_CONFIG, /etc/blksnap/blksnap.conf).
 *
 * Text: the decision per device on stderr ("full backup: <reason>"), a
 * progress bar on a terminal, one summary line per device on stdout.
 * JSON (stdout, --json): { "repository": string, "snapshot_id": string, "started_at": string,
 *   "duration_ms": n, "bytes_read": n, "bytes_written": n, "changed_blocks": n,
 *   "devices": [ { "device", "key", "mode": "full"|"incremental", "reason", "point": n, "parent": n|null,
 *     "generation_id", "changes_number": n, "since_changes_number": n|null, "block_size": n, "capacity": n,
 *     "changed_blocks": n, "zero_blocks": n, "bytes_read": n, "bytes_written": n, "duration_ms": n } ],
 *   "points": [ { "device": string, "key": string, "point": n } ] }
 * Exit status: 0; 1; 2 usage; 3 no module; 4; 5 device not found; 6 busy; 7 repository locked;
 * 8 snapshot overflow (nothing committed); 9 --mode incremental impossible; 10 repository damaged;
 * 130/143 interrupted (snapshot destroyed, temp files removed).
 */
import { InterruptedError, UsageError } from '../../errors';
import { defineCommand } from '../command';
import type { GlobalArgs } from '../context';
import { parseSizeArg } from '../parse';

export interface BackupArgs extends GlobalArgs {
  devices?: string[];
  repo?: string;
  mode?: string;
  diffStorage?: string;
  limit?: string;
  preHook?: string;
  postHook?: string;
  freeze?: string[];
}

const MODES = ['auto', 'full', 'incremental'] as const;

/** Aborts on the first SIGINT/SIGTERM with an InterruptedError (exit 130/143) as the reason. */
export function interruptController(onClose: (fn: () => void) => void, say?: (msg: string) => void): AbortController {
  const controller = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      say?.(`${sig} again: still cleaning up (destroying the snapshot, removing temp files)`);
      return;
    }
    say?.(`${sig}: stopping; destroying the snapshot and removing temp files`);
    controller.abort(new InterruptedError(sig));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  onClose(() => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  });
  return controller;
}

export default defineCommand<BackupArgs>({
  command: 'backup [devices..]',
  describe: 'Back up devices into a repository: full, or only the blocks changed since the last backup',
  builder: (y) =>
    y
      .positional('devices', { type: 'string', array: true, describe: 'block devices, snapshotted together (default: devices in the config file)' })
      .option('repo', { alias: 'r', type: 'string', requiresArg: true, describe: 'repository directory, created 0700 if missing (default: repository in the config file)' })
      .option('mode', { type: 'string', choices: MODES as unknown as string[], describe: 'auto: incremental when the change tracker allows it, else full (default auto)' })
      .option('diff-storage', { type: 'string', requiresArg: true, describe: 'difference storage for the snapshot: directory, existing file or block device' })
      .option('limit', { alias: 'l', type: 'string', requiresArg: true, describe: 'difference storage limit, e.g. 4G: must hold all writes made during the backup' })
      .option('pre-hook', { type: 'string', requiresArg: true, describe: 'shell command run before the snapshot is taken' })
      .option('post-hook', { type: 'string', requiresArg: true, describe: 'shell command run after the take (also when it failed)' })
      .option('freeze', { type: 'string', array: true, requiresArg: true, describe: 'mount point to fsfreeze around the take (repeatable)' })
      .example('$0 backup /dev/sdb1 --repo /backup --limit 4G', 'incremental when possible, else full')
      .example('$0 backup /dev/vg0/db --repo /backup --freeze /srv/db --json', 'JSON summary for scripts'),
  exitCodes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130, 143],
  async run(ctx, argv) {
    const { loadConfig, formatSize } = await import('../../config');
    const config = await loadConfig(undefined, { env: ctx.io.env });
    const devices = (argv.devices && argv.devices.length ? argv.devices : [...config.devices]).map(String);
    if (devices.length === 0) {
      throw new UsageError('backup: no device given', { hint: `name block devices (blksnap backup /dev/sdb1 --repo DIR), or set devices in ${config.path}` });
    }
    const repository = argv.repo ?? config.repository;
    if (!repository) throw new UsageError('backup: no repository given', { hint: `add --repo DIR, or set repository in ${config.path}` });
    const limitBytes = argv.limit !== undefined ? parseSizeArg(argv.limit, '--limit') : config.diffStorageLimit;
    const mode = (argv.mode ?? config.mode) as (typeof MODES)[number];
    const freeze = argv.freeze && argv.freeze.length ? argv.freeze.map(String) : [...config.freeze];

    const { runBackup } = await import('../../backup/job');
    const { ByteProgressBar, humanBytes } = await import('../../backup/progress');
    const { toolVersion } = await import('../tool-version');
    const controller = interruptController((fn) => ctx.onClose(fn), (m) => ctx.out.warn(m));
    const showBar = ctx.io.stderrIsTTY && !ctx.out.options.quiet && !ctx.out.json;
    const bar = showBar ? new ByteProgressBar(ctx.io.stderr as NodeJS.WritableStream) : null;
    ctx.onClose(() => bar?.stop());
    const kernel = await ctx.kernel();
    let summary;
    try {
      summary = await runBackup({
        kernel,
        repository,
        devices,
        mode,
        diffStorage: argv.diffStorage,
        configuredDiffStorageDir: config.diffStorageDir ?? undefined,
        limitBytes,
        preHook: argv.preHook ?? config.preHook,
        postHook: argv.postHook ?? config.postHook,
        freeze,
        signal: controller.signal,
        tool: `blksnap-manager ${toolVersion()}`,
        onEvent: (e) => {
          switch (e.type) {
            case 'warning':
              bar?.stop();
              ctx.out.warn(e.message);
              break;
            case 'info':
              ctx.out.info(e.message);
              break;
            case 'cleanup':
              for (const id of e.destroyedSnapshots) ctx.out.info(`cleanup: destroyed snapshot ${id} left by a killed process`);
              for (const p of e.removedTemps) ctx.out.info(`cleanup: removed ${p}`);
              break;
            case 'snapshot':
              if (e.diffStorageReason && argv.diffStorage === undefined) ctx.out.info(e.diffStorageReason);
              ctx.out.info(`snapshot ${e.id} taken (difference storage ${e.diffStorage}, limit ${formatSize(limitBytes)})`);
              break;
            case 'decision':
              ctx.out.info(`${e.device}: ${e.reason}; point ${e.point}: ${e.blocksToCopy} blocks, ${humanBytes(e.bytesToCopy)} to copy`);
              break;
            case 'progress':
              if (bar) {
                if (e.bytesRead === 0) bar.start(e.device, e.bytesTotal);
                bar.update(e.bytesRead, e.bytesTotal);
              }
              break;
            case 'device-done':
              bar?.stop();
              break;
            case 'kernel-event':
              ctx.out.warn(`kernel event on the snapshot: ${e.event.code}`);
              break;
          }
        },
      });
    } finally {
      bar?.stop();
    }
    if (ctx.out.json) {
      return ctx.out.data({
        repository: summary.repository,
        snapshot_id: summary.snapshotId,
        started_at: summary.startedAt,
        duration_ms: summary.durationMs,
        bytes_read: summary.bytesRead,
        bytes_written: summary.bytesWritten,
        changed_blocks: summary.changedBlocks,
        devices: summary.devices.map((d) => ({
          device: d.device,
          key: d.key,
          mode: d.mode,
          reason: d.reason,
          point: d.point,
          parent: d.parent,
          generation_id: d.generationId,
          changes_number: d.changesNumber,
          since_changes_number: d.sinceChangesNumber,
          block_size: d.blockSize,
          capacity: d.capacity,
          changed_blocks: d.changedBlocks,
          zero_blocks: d.zeroBlocks,
          bytes_read: d.bytesRead,
          bytes_written: d.bytesWritten,
          duration_ms: d.durationMs,
        })),
        points: summary.devices.map((d) => ({ device: d.device, key: d.key, point: d.point })),
      });
    }
    for (const d of summary.devices) {
      const secs = Math.max(d.durationMs, 1) / 1000;
      ctx.out.text(
        `${d.device}: point ${d.point} (${d.mode}${d.parent ? ` on ${d.parent}` : ''}): ${d.changedBlocks} blocks of ${d.blockSize} bytes, ` +
          `${humanBytes(d.bytesRead)} read, ${humanBytes(d.bytesWritten)} written (${d.zeroBlocks} zero blocks), ` +
          `${secs.toFixed(1)} s, ${humanBytes(Math.round(d.bytesRead / secs))}/s`,
      );
    }
  },
});
