import * as fs from 'fs';
import * as path from 'path';
import { IncrementalImpossibleError } from '../../lib/errors';
import type { CbtInfo } from '../../lib/kernel/types';
import { decideMode } from '../../lib/backup/job';
import { Repository } from '../../lib/backup/repository';
import { GENERATION, fakeBackup, patternImage, tempDir } from './backup-helpers';

const BS = 65536;
let dir: string;
let repo: Repository;
let key: string;
const cbt = (over: Partial<CbtInfo> = {}): CbtInfo => ({ capacity: 4n * BigInt(BS), blockSize: BS, blockCount: 4, generationId: GENERATION, changesNumber: 3, ...over });

beforeEach(async () => {
  dir = tempDir();
  repo = await Repository.open(path.join(dir, 'repo'), { create: true });
  const m = await fakeBackup({ repo, image: patternImage(4 * BS, 1), blockSize: BS, map: null, since: null, changesNumber: 2 });
  key = m.device.key;
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('decideMode', () => {
  test('incremental when generation, block size and capacity match and the changes number moved on', async () => {
    const d = await decideMode(repo, key, cbt(), 'auto', '/dev/fake');
    expect(d.mode).toBe('incremental');
    expect(d.parent?.point).toBe(1);
    expect(d.reason).toBe('incremental since point 1 (changes number 2)');
  });

  const cases: [string, Partial<CbtInfo>, RegExp][] = [
    ['generation', { generationId: '99999999-2222-3333-4444-555555555555' }, /^full backup: change tracker generation changed \(tracker was reset or the machine rebooted\)$/],
    ['block size', { blockSize: 2 * BS, blockCount: 2 }, /tracking block size changed \(from 65536 to 131072 bytes\)/],
    ['capacity', { capacity: 5n * BigInt(BS), blockCount: 5 }, /device capacity changed \(from 262144 to 327680 bytes\)/],
    ['changes number', { changesNumber: 2 }, /changes number \(2\) is not past the last backup's \(2\)/],
    // After the reset at 256 the first point of the new generation recorded 255; the next TAKE reports 1 in the
    // same generation. Blocks written since are stamped 1, not > 255: an incremental would copy nothing.
    ['changes number went down in the same generation', { changesNumber: 1 }, /changes number \(1\) is not past the last backup's \(2\)/],
  ];
  test.each(cases)('%s changed: auto falls back to full with the reason; incremental refuses', async (_n, over, reason) => {
    const auto = await decideMode(repo, key, cbt(over), 'auto', '/dev/fake');
    expect(auto.mode).toBe('full');
    expect(auto.reason).toMatch(reason);
    const err = await decideMode(repo, key, cbt(over), 'incremental', '/dev/fake').catch((e) => e);
    expect(err).toBeInstanceOf(IncrementalImpossibleError);
    expect(err.message).toMatch(/^\/dev\/fake: an incremental backup is impossible: /);
  });

  test('no previous point, or a damaged newest point, means full', async () => {
    expect((await decideMode(repo, 'other-key', cbt(), 'auto', '/dev/x')).reason).toBe('full backup: no previous backup of this device in the repository');
    fs.writeFileSync(path.join(repo.pointDir(key, 1), 'manifest.json'), '{');
    const d = await decideMode(repo, key, cbt(), 'auto', '/dev/fake');
    expect(d.mode).toBe('full');
    expect(d.reason).toMatch(/newest point \(1\) is unreadable: .*manifest\.json: not valid JSON/);
  });

  test('--mode full always copies everything', async () => {
    expect(await decideMode(repo, key, cbt(), 'full', '/dev/fake')).toEqual({ mode: 'full', reason: 'full backup requested (--mode full)', parent: null });
  });
});
