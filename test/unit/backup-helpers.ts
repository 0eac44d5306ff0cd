/**
 * Helpers for the backup unit tests: an in-memory "snapshot image" reader
 * and a tiny backup driver that uses the library's pieces directly (no
 * kernel): changed runs from a map, copy into a point, commit.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ShortReadError } from '../../lib/errors';
import type { ImageReader } from '../../lib/kernel/types';
import { scanChangedRuns } from '../../lib/cbt';
import { copyBlocks } from '../../lib/backup/copy';
import type { Manifest } from '../../lib/backup/format';
import { Repository, deviceKey } from '../../lib/backup/repository';

export class BufferImageReader implements ImageReader {
  readonly alignment: number;
  reads: { position: number; length: number }[] = [];
  /** `direct`: behave like an O_DIRECT reader (the copy engine then uses page-aligned buffers and O_DIRECT writes). */
  constructor(readonly image: Buffer, readonly path = '/dev/fake-image', readonly direct = false) {
    this.alignment = direct ? 512 : 1;
  }
  get size(): bigint {
    return BigInt(this.image.length);
  }
  async read(buf: Buffer, length: number, position: bigint): Promise<void> {
    const p = Number(position);
    this.reads.push({ position: p, length });
    if (p + length > this.image.length) throw new ShortReadError(`${this.path}: short read at ${p}`);
    await new Promise((r) => setImmediate(r));
    this.image.copy(buf, 0, p, p + length);
  }
  async close(): Promise<void> {}
}

export function tempDir(prefix = 'blksnap-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Deterministic bytes: each 4 KiB page filled from a seed, some pages zero. */
export function patternImage(size: number, seed: number, zeroEvery = 5): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let page = 0; page * 4096 < size; page++) {
    if (zeroEvery && page % zeroEvery === 0) continue;
    for (let i = page * 4096; i < Math.min(size, (page + 1) * 4096); i += 4) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      for (let k = 0; k < 4 && i + k < size; k++) b[i + k] = (x >>> (8 * k)) & 0xff;
    }
  }
  return b;
}

export interface FakeBackupArgs {
  repo: Repository;
  image: Buffer;
  blockSize: number;
  /** null: full backup. */
  map: Uint8Array | null;
  since: number | null;
  changesNumber: number;
  generationId?: string;
  parent?: number | null;
  chunkSize?: number;
  devicePath?: string;
  direct?: boolean;
}

export const GENERATION = '11111111-2222-3333-4444-555555555555';

export async function fakeBackup(a: FakeBackupArgs): Promise<Manifest> {
  const capacity = a.image.length;
  const blockCount = Math.ceil(capacity / a.blockSize);
  const device = { path: a.devicePath ?? '/dev/fake', stableId: 'fake-disk-1' };
  const ref = { ...device, key: deviceKey(device) };
  const writer = await a.repo.beginPoint(ref);
  const runs = a.map ? scanChangedRuns(a.map, a.since as number, blockCount) : scanChangedRuns(new Uint8Array(blockCount), -1, blockCount);
  try {
    await copyBlocks({ reader: new BufferImageReader(a.image, '/dev/fake-image', a.direct ?? false), sink: writer, runs, blockSize: a.blockSize, capacity, chunkSize: a.chunkSize });
    const now = new Date().toISOString();
    return await writer.commit({
      kind: a.map ? 'incremental' : 'full',
      parent: a.map ? (a.parent ?? writer.point - 1) : null,
      reason: 'test',
      capacity,
      blockSize: a.blockSize,
      blockCount,
      generationId: a.generationId ?? GENERATION,
      changesNumber: a.changesNumber,
      sinceChangesNumber: a.map ? a.since : null,
      snapshotId: '00000000-0000-0000-0000-000000000001',
      startedAt: now,
      takenAt: now,
      tool: 'test',
    });
  } catch (err) {
    await writer.abort();
    throw err;
  }
}
