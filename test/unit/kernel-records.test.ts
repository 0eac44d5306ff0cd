/**
 * Snapshot records: atomic JSON files, tolerant reading, and the liveness
 * test `cleanup` relies on.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SnapshotRecords, isProcessDead, newRecord, processStartTime } from '../../lib/kernel/records';

let dir: string;
beforeEach(() => {
  dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'records-')), 'run');
});
afterEach(() => {
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
});

test('write, read, update, list, remove', () => {
  const records = new SnapshotRecords(dir);
  expect(records.list()).toEqual([]);
  const r = newRecord({ id: '00112233-4455-6677-8899-aabbccddeeff', devices: ['/dev/sdb'], diffStorage: '/var/tmp', purpose: 'test' });
  records.write(r);
  expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
  expect(fs.statSync(path.join(dir, `${r.id}.json`)).mode & 0o777).toBe(0o600);
  expect(records.read(r.id)).toEqual(r);
  records.update(r.id, (x) => { x.takenAt = 'now'; });
  expect(records.read(r.id)?.takenAt).toBe('now');
  expect(records.list().map((x) => x.id)).toEqual([r.id]);
  expect(fs.readdirSync(dir)).toEqual([`${r.id}.json`]); // no temporary file left
  records.remove(r.id);
  records.remove(r.id);
  expect(records.list()).toEqual([]);
});

test('files that are not records are ignored', () => {
  const records = new SnapshotRecords(dir);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'garbage.json'), '{not json');
  fs.writeFileSync(path.join(dir, 'other.json'), JSON.stringify({ id: 'mismatch', pid: 1, host: 'h' }));
  fs.writeFileSync(path.join(dir, '.tmp.json'), '{}');
  expect(records.list()).toEqual([]);
});

test('a finished process is dead; this one is alive; a reused pid is recognised by its start time', () => {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const deadPid = Number(child.stdout);
  expect(isProcessDead(deadPid, null)).toBe(true);
  expect(isProcessDead(process.pid, processStartTime(process.pid))).toBe(false);
  expect(processStartTime(process.pid)).toMatch(/^\d+$/);
  expect(isProcessDead(process.pid, '1')).toBe(true); // same pid, different start: not the creator
});
