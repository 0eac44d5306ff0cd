/**
 * The on-disk formats of a repository point (docs/repository-format.md):
 * the manifest (JSON) and the block index (binary). Pure encode/decode and
 * validation; no I/O. Everything read back is checked before it is trusted:
 * a truncated or tampered file must give a RepositoryCorruptedError naming
 * the file, never a crash and never a number that could steer a write out of
 * range.
 */
import * as crypto from 'crypto';
import { RepositoryCorruptedError } from '../errors';

export const REPOSITORY_FORMAT = 'blksnap-repository';
export const POINT_FORMAT = 'blksnap-point';
export const FORMAT_VERSION = 1;
export const CHECKSUM_ALGORITHM = 'sha256';

export const INDEX_MAGIC = Buffer.from('BLKSIDX1', 'ascii');
export const INDEX_HEADER_SIZE = 64;
export const INDEX_RECORD_SIZE = 48;
/** Record flag: the block is all zeros; no bytes of it are in the data file. */
export const FLAG_ZERO = 1;

/** Largest capacity we accept: byte offsets must stay exact in a JS number. */
export const MAX_CAPACITY = Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % 512);

export interface RepositoryInfo {
  format: typeof REPOSITORY_FORMAT;
  version: number;
  id: string;
  createdAt: string;
}

export interface DeviceRef {
  /** Canonical device path at backup time. */
  path: string;
  /** Stable id (e.g. /dev/disk/by-id name, sim device uuid) when the kernel layer knows one. */
  stableId: string | null;
  /** The device's directory name in the repository. */
  key: string;
}

export type PointKind = 'full' | 'incremental';

export interface Manifest {
  format: typeof POINT_FORMAT;
  version: number;
  /** Point number, 1.. per device, increasing. */
  point: number;
  kind: PointKind;
  /** The point this one applies on top of (the previous point), null for a full point. */
  parent: number | null;
  /** Why this kind was chosen (auto mode's reason, or "requested"). */
  reason: string;
  /** Random id written into the index header too, so files of different points cannot be mixed. */
  uid: string;
  device: DeviceRef;
  capacity: number;
  blockSize: number;
  blockCount: number;
  generationId: string;
  /** CBTINFO changes_number after this point's TAKE; the next incremental copies blocks > this. */
  changesNumber: number;
  /** For an incremental: the parent's changesNumber (the blocks with map byte > this were copied). */
  sinceChangesNumber: number | null;
  snapshotId: string;
  startedAt: string;
  takenAt: string;
  completedAt: string;
  /** Tracking blocks recorded in this point (index records). */
  blocks: number;
  /** Of those, all-zero blocks (stored as a flag, no data). */
  zeroBlocks: number;
  /** Bytes of device covered by the recorded blocks. */
  coveredBytes: number;
  /** Bytes in the data file. */
  dataBytes: number;
  checksum: typeof CHECKSUM_ALGORITHM;
  /** sha256 of the whole index file. */
  indexSha256: string;
  tool: string;
  /** sha256 of this manifest's JSON text without this field (written last). */
  manifestSha256: string;
}

export type ManifestBody = Omit<Manifest, 'manifestSha256'>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export function sha256Hex(data: string | Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** The manifest's JSON text: fields in this order, with the self-checksum last. */
export function encodeManifest(body: ManifestBody): string {
  const text = JSON.stringify(body, null, 2);
  const manifestSha256 = sha256Hex(text);
  return JSON.stringify({ ...body, manifestSha256 }, null, 2) + '\n';
}

function corrupted(file: string, what: string): RepositoryCorruptedError {
  return new RepositoryCorruptedError(`${file}: ${what}`, {
    path: file,
    hint: 'the repository file is damaged or was modified; run `blksnap verify` to see every problem, and restore from an earlier point or another copy',
  });
}

function intField(v: Record<string, unknown>, key: string, file: string, min: number, max: number): number {
  const x = v[key];
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) {
    throw corrupted(file, `field "${key}" is ${JSON.stringify(x)}, expected a whole number from ${min} to ${max}`);
  }
  return x;
}

function strField(v: Record<string, unknown>, key: string, file: string, pattern?: RegExp): string {
  const x = v[key];
  if (typeof x !== 'string' || (pattern && !pattern.test(x))) {
    throw corrupted(file, `field "${key}" is ${JSON.stringify(x)}, expected ${pattern ? `text matching ${pattern}` : 'text'}`);
  }
  return x;
}

/** Parses and validates a manifest; RepositoryCorruptedError naming `file` on any defect. */
export function decodeManifest(text: string, file: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw corrupted(file, `not valid JSON (${(err as Error).message}); the file is truncated or damaged`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw corrupted(file, 'not a JSON object');
  const v = raw as Record<string, unknown>;
  if (v.format !== POINT_FORMAT) throw corrupted(file, `not a point manifest (format ${JSON.stringify(v.format)})`);
  if (v.version !== FORMAT_VERSION) {
    throw new RepositoryCorruptedError(`${file}: manifest version ${JSON.stringify(v.version)} is not supported by this blksnap (knows ${FORMAT_VERSION})`, { path: file, hint: 'use the blksnap version that wrote this repository' });
  }
  const stored = strField(v, 'manifestSha256', file, HEX64);
  const { manifestSha256: _omit, ...body } = v;
  if (sha256Hex(JSON.stringify(body, null, 2)) !== stored) throw corrupted(file, 'manifest checksum mismatch (the manifest was modified or damaged)');

  const point = intField(v, 'point', file, 1, 0xffffffff);
  const kind = v.kind;
  if (kind !== 'full' && kind !== 'incremental') throw corrupted(file, `field "kind" is ${JSON.stringify(kind)}, expected "full" or "incremental"`);
  let parent: number | null = null;
  if (kind === 'incremental') parent = intField(v, 'parent', file, 1, point - 1);
  else if (v.parent !== null) throw corrupted(file, 'a full point has a parent');

  const dev = v.device as Record<string, unknown> | undefined;
  if (!dev || typeof dev !== 'object') throw corrupted(file, 'field "device" is missing');
  const device: DeviceRef = {
    path: strField(dev, 'path', file),
    stableId: dev.stableId === null ? null : strField(dev, 'stableId', file),
    key: strField(dev, 'key', file, /^[A-Za-z0-9._-]+$/),
  };

  const capacity = intField(v, 'capacity', file, 512, MAX_CAPACITY);
  if (capacity % 512 !== 0) throw corrupted(file, `capacity ${capacity} is not a whole number of 512-byte sectors`);
  const blockSize = intField(v, 'blockSize', file, 512, 2 ** 30);
  if ((blockSize & (blockSize - 1)) !== 0) throw corrupted(file, `blockSize ${blockSize} is not a power of two`);
  const blockCount = intField(v, 'blockCount', file, 1, 0xffffffff);
  if (blockCount !== Math.ceil(capacity / blockSize)) {
    throw corrupted(file, `blockCount ${blockCount} does not match capacity ${capacity} / blockSize ${blockSize}`);
  }
  const changesNumber = intField(v, 'changesNumber', file, 0, 255);
  let sinceChangesNumber: number | null = null;
  if (kind === 'incremental') sinceChangesNumber = intField(v, 'sinceChangesNumber', file, 0, 255);
  else if (v.sinceChangesNumber !== null) throw corrupted(file, 'a full point has a sinceChangesNumber');

  const blocks = intField(v, 'blocks', file, 0, blockCount);
  if (kind === 'full' && blocks !== blockCount) throw corrupted(file, `a full point must record all ${blockCount} blocks, records ${blocks}`);
  const zeroBlocks = intField(v, 'zeroBlocks', file, 0, blocks);
  const coveredBytes = intField(v, 'coveredBytes', file, 0, capacity);
  const dataBytes = intField(v, 'dataBytes', file, 0, coveredBytes);
  if (v.checksum !== CHECKSUM_ALGORITHM) throw corrupted(file, `unknown checksum algorithm ${JSON.stringify(v.checksum)}`);

  return {
    format: POINT_FORMAT,
    version: FORMAT_VERSION,
    point,
    kind,
    parent,
    reason: typeof v.reason === 'string' ? v.reason : '',
    uid: strField(v, 'uid', file, UUID),
    device,
    capacity,
    blockSize,
    blockCount,
    generationId: strField(v, 'generationId', file, UUID),
    changesNumber,
    sinceChangesNumber,
    snapshotId: strField(v, 'snapshotId', file),
    startedAt: strField(v, 'startedAt', file),
    takenAt: strField(v, 'takenAt', file),
    completedAt: strField(v, 'completedAt', file),
    blocks,
    zeroBlocks,
    coveredBytes,
    dataBytes,
    checksum: CHECKSUM_ALGORITHM,
    indexSha256: strField(v, 'indexSha256', file, HEX64),
    tool: typeof v.tool === 'string' ? v.tool : '',
    manifestSha256: stored,
  };
}

export interface IndexHeader {
  blockSize: number;
  blockCount: number;
  records: number;
  point: number;
  /** The manifest's uid, as 16 bytes. */
  uid: Buffer;
}

export function uidBytes(uid: string): Buffer {
  return Buffer.from(uid.replace(/-/g, ''), 'hex');
}

export function encodeIndexHeader(h: IndexHeader): Buffer {
  const b = Buffer.alloc(INDEX_HEADER_SIZE);
  INDEX_MAGIC.copy(b, 0);
  b.writeUInt32LE(FORMAT_VERSION, 8);
  b.writeUInt32LE(INDEX_RECORD_SIZE, 12);
  b.writeUInt32LE(h.blockSize, 16);
  b.writeUInt32LE(0, 20);
  b.writeBigUInt64LE(BigInt(h.blockCount), 24);
  b.writeBigUInt64LE(BigInt(h.records), 32);
  b.writeUInt32LE(h.point, 40);
  h.uid.copy(b, 44, 0, 16);
  return b;
}

/** Decodes and checks the header against the manifest it belongs to. */
export function decodeIndexHeader(b: Buffer, file: string, m: Manifest): IndexHeader {
  if (b.length < INDEX_HEADER_SIZE) throw corrupted(file, `index is ${b.length} bytes, shorter than its ${INDEX_HEADER_SIZE}-byte header`);
  if (!b.subarray(0, 8).equals(INDEX_MAGIC)) throw corrupted(file, 'not a block index (bad magic)');
  if (b.readUInt32LE(8) !== FORMAT_VERSION || b.readUInt32LE(12) !== INDEX_RECORD_SIZE) throw corrupted(file, 'unsupported index version or record size');
  const h: IndexHeader = {
    blockSize: b.readUInt32LE(16),
    blockCount: Number(b.readBigUInt64LE(24)),
    records: Number(b.readBigUInt64LE(32)),
    point: b.readUInt32LE(40),
    uid: Buffer.from(b.subarray(44, 60)),
  };
  if (h.blockSize !== m.blockSize || h.blockCount !== m.blockCount || h.records !== m.blocks || h.point !== m.point || !h.uid.equals(uidBytes(m.uid))) {
    throw corrupted(file, 'index header does not belong to this point\'s manifest (block size, count, point or uid differ)');
  }
  return h;
}

export interface IndexRecord {
  block: number;
  flags: number;
  /** Offset of the block's bytes in the data file (for a zero block: where it would be, i.e. the running offset). */
  dataOffset: number;
  checksum: Buffer;
}

export function encodeIndexRecord(target: Buffer, at: number, block: number, flags: number, dataOffset: number, checksum: Uint8Array): void {
  target.writeUInt32LE(block, at);
  target.writeUInt32LE(flags, at + 4);
  target.writeBigUInt64LE(BigInt(dataOffset), at + 8);
  target.set(checksum.subarray(0, 32), at + 16);
}

/** Byte length of tracking block `block` of a device (the last one clipped to the capacity). */
export function blockLength(block: number, blockSize: number, capacity: number): number {
  return Math.min(blockSize, capacity - block * blockSize);
}

/**
 * Reads index records in order and checks each against the rules of the
 * format: blocks strictly ascending and inside the device, data offsets
 * packed (each equal to the running total of non-zero block lengths), only
 * known flags. Throws RepositoryCorruptedError naming the file and record.
 */
export class IndexRecordChecker {
  private prevBlock = -1;
  private expectedOffset = 0;
  zeroBlocks = 0;
  coveredBytes = 0;
  count = 0;

  constructor(private readonly file: string, private readonly m: Manifest) {}

  check(b: Buffer, at: number): IndexRecord {
    const n = this.count;
    const block = b.readUInt32LE(at);
    const flags = b.readUInt32LE(at + 4);
    const off = b.readBigUInt64LE(at + 8);
    if (block >= this.m.blockCount || block <= this.prevBlock) {
      throw corrupted(this.file, `record ${n}: block ${block} is ${block >= this.m.blockCount ? `past the device's ${this.m.blockCount} blocks` : 'out of order'}`);
    }
    if ((flags & ~FLAG_ZERO) !== 0) throw corrupted(this.file, `record ${n}: unknown flags 0x${flags.toString(16)}`);
    if (off !== BigInt(this.expectedOffset)) throw corrupted(this.file, `record ${n}: data offset ${off} should be ${this.expectedOffset}`);
    const len = blockLength(block, this.m.blockSize, this.m.capacity);
    if (flags & FLAG_ZERO) this.zeroBlocks++;
    else this.expectedOffset += len;
    this.coveredBytes += len;
    this.prevBlock = block;
    this.count++;
    return { block, flags, dataOffset: Number(off), checksum: b.subarray(at + 16, at + 48) };
  }

  /** Checks the totals once every record has been read. */
  finish(): void {
    if (this.count !== this.m.blocks) throw corrupted(this.file, `has ${this.count} records, the manifest says ${this.m.blocks}`);
    if (this.zeroBlocks !== this.m.zeroBlocks) throw corrupted(this.file, `has ${this.zeroBlocks} zero blocks, the manifest says ${this.m.zeroBlocks}`);
    if (this.coveredBytes !== this.m.coveredBytes) throw corrupted(this.file, `covers ${this.coveredBytes} bytes, the manifest says ${this.m.coveredBytes}`);
    if (this.expectedOffset !== this.m.dataBytes) throw corrupted(this.file, `references ${this.expectedOffset} data bytes, the manifest says ${this.m.dataBytes}`);
  }
}

export function decodeRepositoryInfo(text: string, file: string): RepositoryInfo {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw corrupted(file, 'not valid JSON; the file is truncated or damaged');
  }
  if (!v || typeof v !== 'object' || v.format !== REPOSITORY_FORMAT) throw corrupted(file, 'not a blksnap repository description');
  if (v.version !== FORMAT_VERSION) {
    throw new RepositoryCorruptedError(`${file}: repository version ${JSON.stringify(v.version)} is not supported by this blksnap (knows ${FORMAT_VERSION})`, { path: file });
  }
  return { format: REPOSITORY_FORMAT, version: FORMAT_VERSION, id: strField(v, 'id', file), createdAt: strField(v, 'createdAt', file) };
}

export { corrupted as corruptedError };
