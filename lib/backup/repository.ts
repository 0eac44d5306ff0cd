/**
 * A backup repository on a local (or network) filesystem:
 *
 *   REPO/repository.json          what this directory is (format, version, id)
 *   REPO/lock                     present while a writer holds the repository
 *   REPO/devices/KEY/00000001/    one committed point: manifest.json, index, data
 *   REPO/devices/KEY/.tmp-...     a point being written (never read as a point)
 *
 * A point is committed by renaming its finished, fsynced temp directory to
 * its number (and fsyncing the parent), so a point directory either is
 * complete or does not exist. See docs/repository-format.md.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { NotFoundError, RepositoryCorruptedError, UsageError } from '../errors';
import {
  CHECKSUM_ALGORITHM, FORMAT_VERSION, FLAG_ZERO, INDEX_HEADER_SIZE, INDEX_RECORD_SIZE, REPOSITORY_FORMAT,
  decodeManifest, decodeRepositoryInfo, encodeIndexHeader, encodeIndexRecord, encodeManifest, uidBytes,
} from './format';
import type { DeviceRef, Manifest, ManifestBody, PointKind, RepositoryInfo } from './format';
import { DIR_MODE, FILE_MODE, errnoCode, fsyncDir, isAtomicTempName, mkdirPrivate, writeFileAtomic } from './fsutil';
import { RepositoryLock } from './lock';
import type { LockOptions } from './lock';

export const REPOSITORY_FILE = 'repository.json';
export const DEVICES_DIR = 'devices';
export const MANIFEST_FILE = 'manifest.json';
export const INDEX_FILE = 'index';
export const DATA_FILE = 'data';
/** Identity of the device a directory belongs to (so it is found even when every manifest is damaged). */
export const DEVICE_FILE = 'device.json';
const POINT_DIR = /^\d{8}$/;
const TEMP_POINT_DIR = /^\.tmp-(\d{8})-(\d+)-[0-9a-f]+$/;

export function pointDirName(point: number): string {
  return String(point).padStart(8, '0');
}

/**
 * The directory name of a device: stable across reboots when the kernel
 * layer knows a stable id (device paths like /dev/sdb are not), readable,
 * and unique (a hash of the identity it was made from).
 */
export function deviceKey(identity: { path: string; stableId: string | null }): string {
  const source = identity.stableId ? `id:${identity.stableId}` : `path:${identity.path}`;
  const readable = (identity.stableId ?? identity.path).replace(/^\/dev\//, '').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(-48) || 'device';
  return `${readable}-${crypto.createHash('sha256').update(source).digest('hex').slice(0, 8)}`;
}

export interface PointEntry {
  point: number;
  dir: string;
  /** The validated manifest, or the reason it could not be read. */
  manifest: Manifest | null;
  error: RepositoryCorruptedError | null;
}

export interface DeviceEntry {
  key: string;
  dir: string;
  /** Identity from the newest readable manifest (null when none is readable). */
  device: DeviceRef | null;
}

export interface OpenOptions {
  /** Create the repository (0700) when the directory is missing or empty. */
  create?: boolean;
  warn?: (msg: string) => void;
}

export class Repository {
  /**
   * Set when this open() created the repository: the topmost directory it
   * made (null when it initialised an existing empty directory), so a first
   * backup that fails can leave the disk as it found it (discardIfCreated).
   */
  private created: { topDir: string | null } | null = null;

  private constructor(readonly dir: string, readonly info: RepositoryInfo) {}

  /**
   * Opens (or with `create`, initialises) the repository at `dir`. Warns when
   * an existing repository is readable by other users: a disk image holds
   * everything on the disk.
   */
  static async open(dir: string, options: OpenOptions = {}): Promise<Repository> {
    const abs = path.resolve(dir);
    const file = path.join(abs, REPOSITORY_FILE);
    let text: string | null = null;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOTDIR') throw new UsageError(`${abs} is not a directory`, { path: abs, hint: 'give --repo a directory (it is created if missing)' });
      if (code !== 'ENOENT') throw err;
    }
    if (text !== null) {
      const info = decodeRepositoryInfo(text, file);
      await warnIfExposed(abs, options.warn);
      return new Repository(abs, info);
    }
    if (!options.create) {
      throw new NotFoundError(`no blksnap repository at ${abs} (no ${REPOSITORY_FILE})`, { path: abs, hint: 'check --repo; a repository is created by the first `blksnap backup`' });
    }
    let existing: string[] = [];
    let topDir: string | null = null;
    try {
      existing = await fsp.readdir(abs);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      topDir = (await fsp.mkdir(path.dirname(abs), { recursive: true, mode: DIR_MODE })) ?? null;
      if ((await mkdirPrivate(abs)) && topDir === null) topDir = abs;
    }
    if (existing.length > 0) {
      throw new UsageError(`${abs} is not empty and not a blksnap repository (no ${REPOSITORY_FILE})`, { path: abs, hint: 'give --repo an empty or new directory' });
    }
    await fsp.chmod(abs, DIR_MODE);
    await mkdirPrivate(path.join(abs, DEVICES_DIR));
    const info: RepositoryInfo = { format: REPOSITORY_FORMAT, version: FORMAT_VERSION, id: crypto.randomUUID(), createdAt: new Date().toISOString() };
    await writeFileAtomic(file, JSON.stringify(info, null, 2) + '\n');
    const repo = new Repository(abs, info);
    repo.created = { topDir };
    return repo;
  }

  /**
   * Undoes the creation by open() when nothing was committed (a first backup
   * that failed on bad input must leave no repository behind). Call with the
   * lock held; `afterUnlock` then removes the directories open() made, once
   * the lock file is gone. Keeps everything when any device directory exists.
   */
  async discardIfCreated(): Promise<{ afterUnlock: () => Promise<void> } | null> {
    if (!this.created) return null;
    try {
      await fsp.rmdir(path.join(this.dir, DEVICES_DIR));
    } catch {
      return null; // a point (or something else) is in it: this is a repository now
    }
    await fsp.rm(path.join(this.dir, REPOSITORY_FILE), { force: true });
    const topDir = this.created.topDir;
    this.created = null;
    return {
      afterUnlock: async () => {
        if (!topDir) return;
        // rmdir each directory open() made, innermost first; stops at one that is not empty.
        for (let d = this.dir; ; d = path.dirname(d)) {
          try {
            await fsp.rmdir(d);
          } catch {
            return;
          }
          if (d === topDir || path.dirname(d) === d) return;
        }
      },
    };
  }

  lock(options: LockOptions): Promise<RepositoryLock> {
    return RepositoryLock.acquire(this.dir, options);
  }

  deviceDir(key: string): string {
    return path.join(this.dir, DEVICES_DIR, key);
  }

  async devices(): Promise<DeviceEntry[]> {
    let names: string[];
    try {
      names = await fsp.readdir(path.join(this.dir, DEVICES_DIR));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: DeviceEntry[] = [];
    for (const key of names.sort()) {
      if (key.startsWith('.')) continue;
      const points = await this.points(key);
      const newest = [...points].reverse().find((p) => p.manifest);
      out.push({ key, dir: this.deviceDir(key), device: newest?.manifest?.device ?? (await this.readDeviceFile(key)) });
    }
    return out;
  }

  private async readDeviceFile(key: string): Promise<DeviceRef | null> {
    try {
      const v = JSON.parse(await fsp.readFile(path.join(this.deviceDir(key), DEVICE_FILE), 'utf8')) as Partial<DeviceRef>;
      if (typeof v.path !== 'string' || v.key !== key) return null;
      return { path: v.path, stableId: typeof v.stableId === 'string' ? v.stableId : null, key };
    } catch {
      return null;
    }
  }

  /**
   * The device a user named (`--device`): its key, its path at backup time
   * (also after resolving symlinks), or its stable id. NotFoundError lists
   * what the repository has.
   */
  async findDevice(arg: string): Promise<DeviceEntry> {
    const all = await this.devices();
    let real: string | null = null;
    try {
      real = await fsp.realpath(arg);
    } catch {
      /* the device need not exist any more (restoring to a new disk) */
    }
    const match = all.filter((d) => d.key === arg || (d.device && (d.device.path === arg || d.device.path === real || d.device.stableId === arg)));
    if (match.length === 1) return match[0];
    const known = all.map((d) => `${d.device?.path ?? '?'} (${d.key})`).join(', ') || 'none';
    if (match.length > 1) {
      throw new UsageError(`device "${arg}" matches several devices in ${this.dir}: ${match.map((d) => d.key).join(', ')}`, { hint: 'name the device by its key' });
    }
    throw new NotFoundError(`device "${arg}" has no backups in ${this.dir}`, { path: arg, hint: `devices in this repository: ${known}` });
  }

  /** Committed points of a device, ascending; unreadable manifests are reported, not thrown. */
  async points(key: string): Promise<PointEntry[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.deviceDir(key));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: PointEntry[] = [];
    for (const name of names.filter((n) => POINT_DIR.test(n)).sort()) {
      const dir = path.join(this.deviceDir(key), name);
      const point = Number(name);
      try {
        const m = await this.readManifest(dir);
        if (m.point !== point) throw new RepositoryCorruptedError(`${path.join(dir, MANIFEST_FILE)}: manifest is for point ${m.point}, in the directory of point ${point}`, { path: path.join(dir, MANIFEST_FILE) });
        if (m.device.key !== key) throw new RepositoryCorruptedError(`${path.join(dir, MANIFEST_FILE)}: manifest is for device ${m.device.key}, in the directory of ${key}`, { path: path.join(dir, MANIFEST_FILE) });
        out.push({ point, dir, manifest: m, error: null });
      } catch (err) {
        if (!(err instanceof RepositoryCorruptedError)) throw err;
        out.push({ point, dir, manifest: null, error: err });
      }
    }
    return out;
  }

  async readManifest(pointDir: string): Promise<Manifest> {
    const file = path.join(pointDir, MANIFEST_FILE);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new RepositoryCorruptedError(`${file}: missing`, { path: file });
      throw err;
    }
    return decodeManifest(text, file);
  }

  /**
   * The points needed to rebuild `point` (default: the newest), full first.
   * Checks the links: each incremental's parent exists, is readable and
   * belongs to the same tracker generation, block size and capacity.
   */
  async chain(key: string, point?: number): Promise<Manifest[]> {
    const entries = await this.points(key);
    if (entries.length === 0) throw new NotFoundError(`no points for device ${key} in ${this.dir}`, { path: this.deviceDir(key) });
    const byNumber = new Map(entries.map((e) => [e.point, e]));
    const target = point ?? entries[entries.length - 1].point;
    let entry = byNumber.get(target);
    if (!entry) {
      throw new NotFoundError(`point ${target} of device ${key} does not exist`, { path: this.deviceDir(key), hint: `points: ${entries.map((e) => e.point).join(', ')}` });
    }
    const chain: Manifest[] = [];
    for (;;) {
      if (!entry.manifest) throw entry.error as RepositoryCorruptedError;
      const m = entry.manifest;
      const child = chain[chain.length - 1];
      if (child) checkLink(m, child, path.join(this.deviceDir(key), pointDirName(child.point), MANIFEST_FILE));
      chain.push(m);
      if (m.kind === 'full') break;
      const parent = byNumber.get(m.parent as number);
      if (!parent) {
        const file = path.join(entry.dir, MANIFEST_FILE);
        throw new RepositoryCorruptedError(`${file}: parent point ${m.parent} is missing, so point ${m.point} cannot be restored`, { path: file });
      }
      entry = parent;
    }
    return chain.reverse();
  }

  /** The newest committed point of a device with a readable manifest, or null. */
  async lastPoint(key: string): Promise<PointEntry | null> {
    const entries = await this.points(key);
    return entries.length ? entries[entries.length - 1] : null;
  }

  pointDir(key: string, point: number): string {
    return path.join(this.deviceDir(key), pointDirName(point));
  }

  /** Starts writing point `max + 1` of a device in a temp directory. Call with the lock held. */
  async beginPoint(device: DeviceRef): Promise<PointWriter> {
    await fsp.mkdir(path.join(this.dir, DEVICES_DIR), { recursive: true, mode: DIR_MODE });
    const createdDir = await mkdirPrivate(this.deviceDir(device.key));
    const existing = await this.points(device.key);
    const point = existing.length ? existing[existing.length - 1].point + 1 : 1;
    return PointWriter.create(this.deviceDir(device.key), point, device, createdDir);
  }

  /**
   * Removes what a killed writer left: temp point directories and atomic-write
   * temp files. Call with the lock held (then nobody else is writing).
   */
  async removeStaleTemps(): Promise<string[]> {
    const removed: string[] = [];
    const scan = async (dir: string): Promise<string[]> => {
      try {
        return await fsp.readdir(dir);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return [];
        throw err;
      }
    };
    for (const name of await scan(this.dir)) {
      if (isAtomicTempName(name) || /^lock\.stale-\d+-[0-9a-f]+$/.test(name)) {
        await fsp.rm(path.join(this.dir, name), { force: true });
        removed.push(path.join(this.dir, name));
      }
    }
    const devicesDir = path.join(this.dir, DEVICES_DIR);
    for (const key of await scan(devicesDir)) {
      const dd = path.join(devicesDir, key);
      for (const name of await scan(dd)) {
        if (TEMP_POINT_DIR.test(name) || isAtomicTempName(name)) {
          await fsp.rm(path.join(dd, name), { recursive: true, force: true });
          removed.push(path.join(dd, name));
        }
      }
      // A device directory that a killed first backup of that device left empty.
      await fsp.rmdir(dd).catch(() => undefined);
      if (removed.length) await fsyncDir(dd).catch(() => undefined);
    }
    return removed;
  }
}

function checkLink(parent: Manifest, child: Manifest, childFile: string): void {
  const bad = (what: string) => new RepositoryCorruptedError(`${childFile}: point ${child.point} does not continue point ${parent.point}: ${what}`, { path: childFile });
  if (child.parent !== parent.point) throw bad(`its parent is ${child.parent}`);
  if (parent.device.key !== child.device.key) throw bad('different device');
  if (parent.generationId !== child.generationId) throw bad('different change-tracker generation');
  if (parent.blockSize !== child.blockSize || parent.capacity !== child.capacity) throw bad('different block size or capacity');
  if (parent.changesNumber !== child.sinceChangesNumber) throw bad(`it copied changes since ${child.sinceChangesNumber}, the parent recorded ${parent.changesNumber}`);
}

async function warnIfExposed(dir: string, warn?: (msg: string) => void): Promise<void> {
  if (!warn) return;
  try {
    const st = await fsp.stat(dir);
    if (st.mode & 0o077) {
      warn(`repository ${dir} is accessible by other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); it holds whole disk images: run \`chmod 700 ${dir}\``);
    }
  } catch {
    /* reported by whoever reads it next */
  }
}

export interface PointSummary {
  blocks: number;
  zeroBlocks: number;
  coveredBytes: number;
  dataBytes: number;
}

/** Fields of the manifest known only to the backup job (the writer fills in sizes and checksums). */
export type PointMeta = Omit<ManifestBody, 'format' | 'version' | 'point' | 'uid' | 'device' | 'blocks' | 'zeroBlocks' | 'coveredBytes' | 'dataBytes' | 'checksum' | 'indexSha256' | 'completedAt' | 'parent' | 'kind'> & {
  kind: PointKind;
  parent: number | null;
};

const RECORDS_PER_FLUSH = 16384;
/** Offset and length granularity for O_DIRECT writes (the largest common logical block size). */
const DIRECT_ALIGNMENT = 4096;

/**
 * Writes one point: blocks are appended in ascending order, data for
 * non-zero blocks packed in the data file, one index record per block.
 * Writes are queued and run one at a time, in order. Nothing is visible as
 * a point until `commit()` renames the directory.
 */
export class PointWriter {
  readonly uid = crypto.randomUUID();
  private dataPos = 0;
  private dataChain: Promise<void> = Promise.resolve();
  private indexChain: Promise<void> = Promise.resolve();
  private indexPos = INDEX_HEADER_SIZE;
  private records = Buffer.alloc(RECORDS_PER_FLUSH * INDEX_RECORD_SIZE);
  private recordsUsed = 0;
  private readonly indexHash = crypto.createHash('sha256');
  private prevBlock = -1;
  private failure: unknown = null;
  private finished = false;
  private published = false;
  private unsynced = 0;
  /** Bytes written between fdatasync calls while copying (0: only at the commit). */
  syncEvery = 256 << 20;
  private manifest: Manifest | null = null;
  readonly summary: PointSummary = { blocks: 0, zeroBlocks: 0, coveredBytes: 0, dataBytes: 0 };

  private constructor(
    readonly deviceDir: string,
    readonly point: number,
    readonly device: DeviceRef,
    readonly tempDir: string,
    private readonly data: fsp.FileHandle,
    private readonly index: fsp.FileHandle,
    private readonly createdDeviceDir: boolean,
    private readonly directData: fsp.FileHandle | null,
  ) {}

  static async create(deviceDir: string, point: number, device: DeviceRef, createdDeviceDir = false): Promise<PointWriter> {
    const tempDir = path.join(deviceDir, `.tmp-${pointDirName(point)}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    await fsp.mkdir(tempDir, { mode: DIR_MODE });
    await fsp.chmod(tempDir, DIR_MODE);
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
    const data = await fsp.open(path.join(tempDir, DATA_FILE), flags, FILE_MODE);
    const index = await fsp.open(path.join(tempDir, INDEX_FILE), flags, FILE_MODE);
    // A second descriptor with O_DIRECT, where the filesystem supports it (tmpfs does not: EINVAL).
    const directData = await fsp.open(path.join(tempDir, DATA_FILE), fs.constants.O_WRONLY | fs.constants.O_DIRECT).catch(() => null);
    return new PointWriter(deviceDir, point, device, tempDir, data, index, createdDeviceDir, directData);
  }

  get finalDir(): string {
    return path.join(this.deviceDir, pointDirName(this.point));
  }

  /** Bytes appended to the data file so far (queued or written). */
  get dataBytes(): number {
    return this.dataPos;
  }

  private queueData(buf: Uint8Array, position: number, alignedMemory: boolean): Promise<void> {
    const p = this.dataChain.then(async () => {
      // Bypass the page cache when the write allows it (a backup would
      // otherwise fill it with gigabytes nobody reads again); the device's
      // clipped last block and unaligned buffers go through the cache.
      const direct = this.directData !== null && alignedMemory && position % DIRECT_ALIGNMENT === 0 && buf.length % DIRECT_ALIGNMENT === 0;
      const handle = direct ? (this.directData as fsp.FileHandle) : this.data;
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await handle.write(buf, done, buf.length - done, position + done);
        if (bytesWritten <= 0) throw new Error(`${path.join(this.tempDir, DATA_FILE)}: write returned ${bytesWritten}`);
        done += bytesWritten;
      }
      if (direct) return;
      // Flush as we go: a multi-GiB backlog of dirty pages flushed at the
      // commit would stall the end of the backup and crowd out the reads.
      this.unsynced += buf.length;
      if (this.syncEvery > 0 && this.unsynced >= this.syncEvery) {
        this.unsynced = 0;
        await this.data.datasync();
      }
    });
    this.dataChain = p.catch((err) => {
      this.failure ??= err;
    });
    return p;
  }

  /**
   * Appends the bytes of one or more consecutive non-zero blocks to the data
   * file. The promise settles when they are written; `buf` must not change
   * until then. Records for these blocks are added with `addBlock`.
   * `alignedMemory`: `buf` starts at an address aligned for O_DIRECT (then
   * an aligned position and length are written bypassing the page cache).
   */
  appendData(buf: Uint8Array, alignedMemory = false): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const position = this.dataPos;
    this.dataPos += buf.length;
    return this.queueData(buf, position, alignedMemory);
  }

  /**
   * Records block `block` (`length` bytes of the device). A non-zero block's
   * bytes must have been appended (in order) with `appendData` already.
   */
  addBlock(block: number, length: number, zero: boolean, checksum: Uint8Array): void {
    if (block <= this.prevBlock) throw new RangeError(`blocks must be added in ascending order (${block} after ${this.prevBlock})`);
    this.prevBlock = block;
    const at = this.recordsUsed * INDEX_RECORD_SIZE;
    encodeIndexRecord(this.records, at, block, zero ? FLAG_ZERO : 0, this.summary.dataBytes, checksum);
    this.recordsUsed++;
    this.summary.blocks++;
    this.summary.coveredBytes += length;
    if (zero) this.summary.zeroBlocks++;
    else this.summary.dataBytes += length;
    if (this.summary.dataBytes > this.dataPos) throw new RangeError(`block ${block} recorded before its data was appended`);
    if (this.recordsUsed === RECORDS_PER_FLUSH) this.flushRecords();
  }

  private flushRecords(): void {
    if (this.recordsUsed === 0) return;
    const chunk = this.records.subarray(0, this.recordsUsed * INDEX_RECORD_SIZE);
    this.records = Buffer.alloc(RECORDS_PER_FLUSH * INDEX_RECORD_SIZE);
    this.recordsUsed = 0;
    this.indexHash.update(chunk);
    const position = this.indexPos;
    this.indexPos += chunk.length;
    this.indexChain = this.indexChain.then(async () => {
      if (this.failure) return;
      await this.index.write(chunk, 0, chunk.length, position);
    }).catch((err) => {
      this.failure ??= err;
    });
  }

  /** Resolves when every queued write is done; rejects with the first write error. */
  async drain(): Promise<void> {
    await this.dataChain;
    await this.indexChain;
    if (this.failure) throw this.failure;
  }

  /** finish() then publish(). */
  async commit(meta: PointMeta): Promise<Manifest> {
    const m = await this.finish(meta);
    await this.publish();
    return m;
  }

  /**
   * Completes the point in its temp directory: index header, fsync of data
   * and index, manifest written and fsynced, fsync of the temp directory.
   * Still invisible as a point until publish().
   */
  async finish(meta: PointMeta): Promise<Manifest> {
    if (this.finished) throw new Error('point already finished');
    this.flushRecords();
    await this.drain();
    if (this.summary.dataBytes !== this.dataPos) throw new RangeError(`data file has ${this.dataPos} bytes, records cover ${this.summary.dataBytes}`);
    const header = encodeIndexHeader({ blockSize: meta.blockSize, blockCount: meta.blockCount, records: this.summary.blocks, point: this.point, uid: uidBytes(this.uid) });
    await this.index.write(header, 0, header.length, 0);
    await this.index.truncate(this.indexPos);
    await this.data.truncate(this.dataPos);
    await Promise.all([this.data.sync(), this.index.sync()]);
    await this.directData?.close();
    await this.data.close();
    await this.index.close();
    this.finished = true;
    const body: ManifestBody = {
      format: 'blksnap-point',
      version: FORMAT_VERSION,
      point: this.point,
      kind: meta.kind,
      parent: meta.parent,
      reason: meta.reason,
      uid: this.uid,
      device: this.device,
      capacity: meta.capacity,
      blockSize: meta.blockSize,
      blockCount: meta.blockCount,
      generationId: meta.generationId,
      changesNumber: meta.changesNumber,
      sinceChangesNumber: meta.sinceChangesNumber,
      snapshotId: meta.snapshotId,
      startedAt: meta.startedAt,
      takenAt: meta.takenAt,
      completedAt: new Date().toISOString(),
      blocks: this.summary.blocks,
      zeroBlocks: this.summary.zeroBlocks,
      coveredBytes: this.summary.coveredBytes,
      dataBytes: this.summary.dataBytes,
      checksum: CHECKSUM_ALGORITHM,
      indexSha256: this.indexHash.digest('hex'),
      tool: meta.tool,
    };
    const text = encodeManifest(body);
    // Validate what we are about to commit with the same reader restore uses.
    const manifest = decodeManifest(text, path.join(this.finalDir, MANIFEST_FILE));
    const mf = await fsp.open(path.join(this.tempDir, MANIFEST_FILE), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, FILE_MODE);
    try {
      await mf.writeFile(text);
      await mf.sync();
    } finally {
      await mf.close();
    }
    await fsyncDir(this.tempDir);
    this.manifest = manifest;
    return manifest;
  }

  /** Commits a finished point: rename of the temp directory to the point number, fsync of the device directory. */
  async publish(): Promise<void> {
    if (!this.manifest) throw new Error('point not finished');
    if (this.published) return;
    try {
      await fsp.access(this.finalDir);
      throw new RepositoryCorruptedError(`${this.finalDir} appeared while this point was written (is another writer ignoring the lock?)`, { path: this.finalDir });
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    await fsp.rename(this.tempDir, this.finalDir);
    this.published = true;
    await fsyncDir(this.deviceDir);
    await writeDeviceFile(this.deviceDir, this.device);
  }

  /** Drops the point unless it was published: closes and removes the temp directory. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.published) return;
    if (!this.finished) {
      this.finished = true;
      await Promise.allSettled([this.dataChain, this.indexChain]);
      await this.data.close().catch(() => undefined);
      await this.directData?.close().catch(() => undefined);
      await this.index.close().catch(() => undefined);
    }
    await fsp.rm(this.tempDir, { recursive: true, force: true });
    // A failed first backup of a device leaves no trace of it.
    if (this.createdDeviceDir) await fsp.rmdir(this.deviceDir).catch(() => undefined);
  }

  /** Synchronous removal of the temp directory, for an exit path that cannot wait. */
  abortSync(): void {
    if (this.published) return;
    try {
      fs.rmSync(this.tempDir, { recursive: true, force: true });
    } catch {
      /* cleanup removes it later */
    }
  }
}

async function writeDeviceFile(deviceDir: string, device: DeviceRef): Promise<void> {
  const file = path.join(deviceDir, DEVICE_FILE);
  const text = JSON.stringify(device, null, 2) + '\n';
  const current = await fsp.readFile(file, 'utf8').catch(() => null);
  if (current !== text) await writeFileAtomic(file, text);
}

/** Lists every point of every device (for `verify` without --device). */
export async function allPoints(repo: Repository): Promise<{ device: DeviceEntry; points: PointEntry[] }[]> {
  const out = [];
  for (const d of await repo.devices()) out.push({ device: d, points: await repo.points(d.key) });
  return out;
}
