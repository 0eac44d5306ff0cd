/**
 * Reading a committed point back: its index records, validated one by one
 * (lib/backup/format.ts IndexRecordChecker) and hashed against the
 * manifest's indexSha256, in bounded batches; and its data file.
 */
import * as crypto from 'crypto';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { RepositoryCorruptedError } from '../errors';
import { INDEX_HEADER_SIZE, INDEX_RECORD_SIZE, IndexRecordChecker, corruptedError, decodeIndexHeader } from './format';
import type { IndexRecord, Manifest } from './format';
import { errnoCode } from './fsutil';
import { DATA_FILE, INDEX_FILE } from './repository';

const RECORDS_PER_READ = 16384;

export function indexPath(pointDir: string): string {
  return path.join(pointDir, INDEX_FILE);
}

export function dataPath(pointDir: string): string {
  return path.join(pointDir, DATA_FILE);
}

async function openExisting(file: string): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new RepositoryCorruptedError(`${file}: missing`, { path: file });
    throw err;
  }
}

/**
 * Yields the point's index records in batches. Every record is checked
 * before it is yielded; the index checksum and the totals are checked after
 * the last batch (so a consumer that must not act on a damaged index reads
 * it through once first, as restore does).
 */
export async function* readIndex(pointDir: string, m: Manifest): AsyncGenerator<IndexRecord[]> {
  const file = indexPath(pointDir);
  const handle = await openExisting(file);
  try {
    const size = (await handle.stat()).size;
    const expected = INDEX_HEADER_SIZE + m.blocks * INDEX_RECORD_SIZE;
    if (size !== expected) {
      throw corruptedError(file, `is ${size} bytes, a ${m.blocks}-record index is ${expected} bytes (${size < expected ? 'truncated' : 'extra bytes'})`);
    }
    const header = Buffer.alloc(INDEX_HEADER_SIZE);
    await readFully(handle, header, INDEX_HEADER_SIZE, 0, file);
    decodeIndexHeader(header, file, m);
    const checker = new IndexRecordChecker(file, m);
    const hash = crypto.createHash('sha256');
    const buf = Buffer.alloc(RECORDS_PER_READ * INDEX_RECORD_SIZE);
    let position = INDEX_HEADER_SIZE;
    while (position < size) {
      const n = Math.min(buf.length, size - position);
      await readFully(handle, buf, n, position, file);
      position += n;
      const chunk = buf.subarray(0, n);
      hash.update(chunk);
      const batch: IndexRecord[] = [];
      for (let at = 0; at < n; at += INDEX_RECORD_SIZE) {
        const r = checker.check(chunk, at);
        batch.push({ ...r, checksum: Buffer.from(r.checksum) });
      }
      yield batch;
    }
    if (hash.digest('hex') !== m.indexSha256) throw corruptedError(file, 'index checksum mismatch (the index was modified or damaged)');
    checker.finish();
  } finally {
    await handle.close();
  }
}

/** Reads the whole index once to check it, without keeping it. */
export async function checkIndex(pointDir: string, m: Manifest, each?: (r: IndexRecord) => void): Promise<void> {
  for await (const batch of readIndex(pointDir, m)) if (each) for (const r of batch) each(r);
}

export async function openData(pointDir: string, m: Manifest): Promise<fsp.FileHandle> {
  const file = dataPath(pointDir);
  const handle = await openExisting(file);
  const size = (await handle.stat()).size;
  if (size !== m.dataBytes) {
    await handle.close();
    throw corruptedError(file, `is ${size} bytes, the manifest says ${m.dataBytes} (${size < m.dataBytes ? 'truncated' : 'extra bytes'})`);
  }
  return handle;
}

export async function readFully(handle: fsp.FileHandle, buf: Buffer, length: number, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw corruptedError(file, `ends at ${position + done}, expected at least ${position + length} bytes (truncated)`);
    done += bytesRead;
  }
}
