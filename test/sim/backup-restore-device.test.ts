/**
 * Restore onto real block devices (loop devices; root): the checks that keep
 * a restore from damaging anything — a block device needs --force, a device
 * smaller than the image is refused, a mounted device or an image file that
 * backs a loop device is refused — and a restore onto a device larger than
 * the image writes the image and not one byte past it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { BusyError, UsageError } from '../../lib/errors';
import { Repository } from '../../lib/backup/repository';
import { restorePoint } from '../../lib/backup/restore';
import { cleanupAll, createLoopDevice, mountExt4 } from '../helpers/loop';
import { describeAsRoot } from '../helpers/root';
import { fakeBackup, patternImage, tempDir } from '../unit/backup-helpers';

const BS = 65536;

describeAsRoot('restore onto block devices', () => {
  let dir: string;
  let repo: Repository;
  let image: Buffer;

  beforeAll(async () => {
    dir = tempDir();
    repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    image = patternImage(16 * BS, 21);
    await fakeBackup({ repo, image, blockSize: BS, map: null, since: null, changesNumber: 1 });
  });
  afterAll(() => {
    cleanupAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('needs --force; writes exactly the image and nothing past it', async () => {
    const loop = createLoopDevice({ sizeBytes: 32 * BS });
    try {
      const tail = Buffer.alloc(16 * BS, 0xa5);
      const fd = fs.openSync(loop.path, 'r+');
      fs.writeSync(fd, tail, 0, tail.length, 16 * BS);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      await expect(restorePoint(repo, { device: '/dev/fake', to: loop.path })).rejects.toThrow(UsageError);
      const s = await restorePoint(repo, { device: '/dev/fake', to: loop.path, force: true });
      expect(s.targetKind).toBe('block');
      const back = Buffer.alloc(32 * BS);
      const rfd = fs.openSync(loop.path, 'r');
      fs.readSync(rfd, back, 0, back.length, 0);
      fs.closeSync(rfd);
      expect(back.subarray(0, 16 * BS).equals(image)).toBe(true);
      expect(back.subarray(16 * BS).equals(tail)).toBe(true); // untouched past the image
    } finally {
      loop.cleanup();
    }
  });

  test('a device smaller than the image is refused before anything is written', async () => {
    const loop = createLoopDevice({ sizeBytes: 8 * BS });
    try {
      const err = await restorePoint(repo, { device: '/dev/fake', to: loop.path, force: true }).catch((e) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toMatch(/is 524288 bytes, the image is 1048576 bytes/);
      const back = fs.readFileSync(loop.path);
      expect(back.equals(Buffer.alloc(8 * BS))).toBe(true);
    } finally {
      loop.cleanup();
    }
  });

  test('a mounted device, or an image file backing a loop device, is refused', async () => {
    const loop = createLoopDevice({ sizeBytes: 64 * 1024 * 1024 });
    const mount = mountExt4(loop);
    try {
      const err = await restorePoint(repo, { device: '/dev/fake', to: loop.path, force: true }).catch((e) => e);
      expect(err).toBeInstanceOf(BusyError);
      expect(err.message).toContain(`is mounted on ${mount.mountpoint}`);
      const err2 = await restorePoint(repo, { device: '/dev/fake', to: loop.backingFile, force: true }).catch((e) => e);
      expect(err2).toBeInstanceOf(BusyError);
      expect(err2.message).toMatch(/it backs \/dev\/loop\d+, which is mounted on/);
    } finally {
      mount.cleanup();
      loop.cleanup();
    }
  });
});
