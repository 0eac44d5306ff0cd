/**
 * `blksnap snapshot create DEVICE... [--diff-storage PATH] [--limit SIZE] [--no-take]`
 * — the one command that gives a usable snapshot (lib/snapshot's session):
 * attach where needed, create, add every device, take, and print the id and
 * each device's image. Anything created is destroyed again if a later step
 * fails. The difference storage is never put on a snapshotted device, its
 * partitions or its parent; without --diff-storage the configured
 * `diff_storage_dir` is used, else a safe directory, else it refuses with the
 * options — and it says on stderr what it chose.
 *
 * Text (stdout): the id on the first line, then `DEVICE IMAGE` per device (`-` before take).
 * JSON (stdout): { "id": string, "taken": boolean,
 *   "diff_storage": { "path": string, "kind": "directory"|"file"|"block", "chosen_by": "given"|"configured"|"automatic",
 *                     "device": string | null, "limit_bytes": n },
 *   "devices": [ { "device": string, "image": string | null, "newly_attached": boolean } ] }
 * Exit status: 0; 2 bad device, size, or diff storage (e.g. on a snapshotted device, none safe); 3; 4;
 * 5 device or storage path not found; 6 device busy in another snapshot or storage held.
 */
import type { CreateSnapshotOptions, SnapshotSession } from '../../snapshot';
import { defineCommand } from '../command';
import type { CliContext, GlobalArgs } from '../context';
import { parseSizeArg } from '../parse';

export interface SnapshotCreateArgs extends GlobalArgs {
  devices?: string[];
  diffStorage?: string;
  limit?: string;
  take?: boolean;
}

/** Creates a snapshot through lib/snapshot with the CLI's defaults (config file for storage and limit). */
export async function createSnapshot(
  ctx: CliContext,
  options: { devices: string[]; diffStorage?: string; limit?: string; noTake: boolean; purpose: string; limitWhat: string },
): Promise<{ session: SnapshotSession; limitBytes: bigint }> {
  let limitBytes = options.limit === undefined ? null : parseSizeArg(options.limit, options.limitWhat);
  let configuredDir: string | undefined;
  if (limitBytes === null || options.diffStorage === undefined) {
    const { loadConfig } = await import('../../config');
    const config = await loadConfig(undefined, { env: ctx.io.env });
    configuredDir = config.diffStorageDir ?? undefined;
    if (limitBytes === null) {
      limitBytes = config.diffStorageLimit;
      const { formatSize } = await import('../../config');
      ctx.out.info(`difference storage limit: ${formatSize(limitBytes)} (${config.exists && config.lines.diff_storage_limit ? `diff_storage_limit in ${config.path}` : 'default'}; set it with ${options.limitWhat})`);
    }
  }
  const { SnapshotSession } = await import('../../snapshot');
  const createOptions: CreateSnapshotOptions = {
    devices: options.devices,
    diffStorage: options.diffStorage,
    configuredDiffStorageDir: configuredDir,
    limitBytes,
    noTake: options.noTake,
    purpose: options.purpose,
    // The snapshot is handed to the user and outlives this process: its
    // record is marked kept once create (and take) succeeded, so `cleanup`
    // leaves it alone; a process killed before that point leaves a record
    // that cleanup does remove.
    keep: true,
  };
  const session = await SnapshotSession.create(await ctx.kernel(), createOptions);
  if (session.diffStorage.source !== 'given') ctx.out.info(session.diffStorage.reason);
  return { session, limitBytes };
}

export default defineCommand<SnapshotCreateArgs>({
  command: 'create [devices..]',
  describe: 'Snapshot devices: attach, create, add, take; print the id and images',
  builder: (y) =>
    y
      .positional('devices', { type: 'string', array: true, describe: 'block devices to snapshot together' })
      .option('diff-storage', { type: 'string', requiresArg: true, describe: 'directory (safest), existing file or block device for the difference storage; not on a snapshotted device' })
      .option('limit', { alias: 'l', type: 'string', requiresArg: true, describe: 'difference storage limit, e.g. 512M, 20G, 1T (default: diff_storage_limit, else 1G)' })
      .option('take', { type: 'boolean', default: true, describe: 'take the snapshot (--no-take: create and add only)' })
      .example('$0 snapshot create /dev/sdb1 --diff-storage /var/tmp --limit 4G', 'id on line 1, then DEVICE IMAGE')
      .example('ID=$(blksnap snapshot create /dev/sdb1 /dev/sdc1 | head -n1)', 'in a script'),
  exitCodes: [0, 2, 3, 4, 5, 6],
  async run(ctx, argv) {
    const { devicesOf } = await import('./devices');
    const devices = devicesOf({ devices: argv.devices }, 'snapshot create');
    const { session, limitBytes } = await createSnapshot(ctx, {
      devices,
      diffStorage: argv.diffStorage,
      limit: argv.limit,
      noTake: argv.take === false,
      purpose: 'snapshot create',
      limitWhat: '--limit',
    });
    if (ctx.out.json) {
      return ctx.out.data({
        id: session.id.toString(),
        taken: session.taken,
        diff_storage: {
          path: session.diffStorage.path,
          kind: session.diffStorage.kind,
          chosen_by: session.diffStorage.source,
          device: session.diffStorage.device?.path ?? null,
          limit_bytes: limitBytes,
        },
        devices: session.devices.map((d) => ({ device: d.identity.path, image: d.imagePath, newly_attached: d.newlyAttached })),
      });
    }
    ctx.out.text(session.id.toString());
    for (const d of session.devices) ctx.out.text(`${d.identity.path} ${d.imagePath ?? '-'}`);
  },
});
