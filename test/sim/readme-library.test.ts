/**
 * The library example of the README, run as written (issue 3: "a create →
 * add → take → info → read image → CBT map → destroy cycle from a few lines
 * of library code"). Keep the two in step.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createKernel } from '../../lib/kernel';
import { openSimAdmin } from '../../lib/kernel/sim';
import { SnapshotSession } from '../../lib/snapshot';

test('README library example: snapshot, read the image, read the CBT map, destroy', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-readme-'));
  const prevRun = process.env.BLKSNAP_RUN_DIR;
  process.env.BLKSNAP_RUN_DIR = path.join(tmp, 'run');
  try {
    const simDir = path.join(tmp, 'sim');
    const disk = path.join(tmp, 'disk0.img');
    fs.mkdirSync(path.join(tmp, 'store'));

    // --- README example starts ---
    const admin = openSimAdmin(simDir);
    await admin.createDevice(disk, 64 << 20);
    await admin.writeDevice(disk, 0, Buffer.from("monday's data"));

    const kernel = await createKernel({ kernel: 'sim', simDir });
    const session = await SnapshotSession.create(kernel, {
      devices: [disk],
      diffStorage: path.join(tmp, 'store'),
      limitBytes: 256n << 20n,
    });
    await admin.writeDevice(disk, 0, Buffer.from("tuesday's data")); // after the take
    const image = await kernel.openImage(session.devices[0].imagePath!);
    const head = Buffer.alloc(4096);
    await image.read(head, 4096, 0n);
    await image.close();
    const info = await kernel.device(disk).snapshotInfo();
    const cbt = await kernel.device(disk).cbtInfo();
    const map = await kernel.device(disk).readCbtMap(cbt);
    await session.destroy();
    // --- README example ends ---

    expect(head.subarray(0, 13).toString()).toBe("monday's data");
    expect(info.errorCode).toBe(0);
    expect(info.imagePath).toBe(session.devices[0].imagePath);
    expect(cbt.changesNumber).toBe(1);
    expect(map.length).toBe(cbt.blockCount);
    // Tracking started at attach (inside create): the monday write came before it,
    // and the tuesday write shows in the read map only after the next take.
    expect(map.every((b) => b === 0)).toBe(true);
    expect((await kernel.device(disk).cbtInfo()).generationId).toBe(cbt.generationId);
    expect(await kernel.control().collectSnapshots()).toEqual([]);
  } finally {
    if (prevRun === undefined) delete process.env.BLKSNAP_RUN_DIR;
    else process.env.BLKSNAP_RUN_DIR = prevRun;
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
