/**
 * Snapshots left behind: a process that created a snapshot and was killed
 * before destroying it leaves its record. `cleanupSnapshots` destroys those
 * snapshots (only those whose creator is dead, and only while the module
 * still holds them) and removes their records; `listSnapshots` joins the
 * module's list with what the records say about each snapshot.
 */
import * as os from 'os';
import { NotFoundError } from '../errors';
import { isProcessDead } from '../kernel/records';
import type { SnapshotRecord } from '../kernel/records';
import { SnapshotId } from '../kernel/snapshot-id';
import type { Kernel } from '../kernel/types';
import { recordsOf } from './diff-storage';

export interface CleanupResult {
  /** Snapshots destroyed because their creator is dead. */
  destroyed: string[];
  /** Records of dead creators whose snapshot was already gone. */
  staleRecords: string[];
  /** Records left alone, with the reason (kept on purpose, creator alive, other host). */
  kept: { id: string; reason: string }[];
}

export async function cleanupSnapshots(kernel: Kernel): Promise<CleanupResult> {
  const records = recordsOf(kernel);
  const result: CleanupResult = { destroyed: [], staleRecords: [], kept: [] };
  const all = records.list();
  if (all.length === 0) return result;
  const host = os.hostname();
  const control = kernel.control();
  try {
    const live = new Set((await control.collectSnapshots()).map(String));
    for (const r of all) {
      if (r.keep) {
        result.kept.push({ id: r.id, reason: `kept on purpose (made by \`${r.purpose || 'snapshot create'}\`); destroy it with \`blksnap snapshot destroy ${r.id}\`` });
        continue;
      }
      if (r.host !== host) {
        result.kept.push({ id: r.id, reason: `created on host ${r.host}` });
        continue;
      }
      if (!isProcessDead(r.pid, r.pidStartTime)) {
        result.kept.push({ id: r.id, reason: `creator process ${r.pid} is running` });
        continue;
      }
      if (live.has(r.id) && SnapshotId.isValid(r.id)) {
        try {
          await control.destroySnapshot(SnapshotId.parse(r.id));
          result.destroyed.push(r.id);
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
          result.staleRecords.push(r.id);
        }
      } else {
        result.staleRecords.push(r.id);
      }
      records.remove(r.id);
    }
  } finally {
    control.close();
  }
  return result;
}

export interface ListedSnapshot {
  id: SnapshotId;
  /** What this tool recorded when it created the snapshot; null for snapshots made by something else. */
  record: SnapshotRecord | null;
  /** Devices this tool put in the snapshot (empty when unknown). */
  devices: string[];
  /** Image paths by device, once taken (empty when unknown). */
  images: Record<string, string>;
  /** The recorded creator is gone: `cleanup` would destroy this snapshot. */
  orphaned: boolean;
}

/** Every snapshot the module holds (COLLECT order), with what our records know. */
export async function listSnapshots(kernel: Kernel): Promise<ListedSnapshot[]> {
  const control = kernel.control();
  let ids: SnapshotId[];
  try {
    ids = await control.collectSnapshots();
  } finally {
    control.close();
  }
  const byId = new Map(recordsOf(kernel).list().map((r) => [r.id, r]));
  const host = os.hostname();
  return ids.map((id) => {
    const record = byId.get(id.toString()) ?? null;
    return {
      id,
      record,
      devices: record ? [...record.devices] : [],
      images: record ? { ...record.images } : {},
      orphaned: record !== null && !record.keep && record.host === host && isProcessDead(record.pid, record.pidStartTime),
    };
  });
}
