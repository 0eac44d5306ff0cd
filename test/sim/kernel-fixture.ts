/**
 * A fresh simulated kernel in a temporary state directory, as a
 * KernelFixture for the contract suite and the snapshot domain tests.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { FlavourName } from '../../ioctl-defs';
import { createKernel } from '../../lib/kernel';
import type { ClientKernel } from '../../lib/kernel';
import type { KernelFixture } from './kernel-contract.suite';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type SimAdmin = any;

export interface SimFixture extends KernelFixture {
  kernel: ClientKernel;
  simDir: string;
  admin: SimAdmin;
  flavour: FlavourName;
}

export async function simFixture(flavour: FlavourName): Promise<SimFixture> {
  const simDir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `blksnap-sim-${flavour}-`)));
  delete process.env.BLKSNAP_RUN_DIR;
  const kernel = (await createKernel({ kernel: 'sim', simDir, simFlavour: flavour })) as ClientKernel;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const sim = require('../../lib/kernel/sim');
  const admin: SimAdmin = await sim.openSimAdmin(simDir);
  const devDir = path.join(simDir, 'devices');
  const storageDir = path.join(simDir, 'storage');
  fs.mkdirSync(devDir, { recursive: true });
  fs.mkdirSync(storageDir, { recursive: true });
  let n = 0;
  return {
    kernel,
    platform: kernel.platform,
    recordsDir: kernel.recordsDir,
    simDir,
    admin,
    flavour,
    storageDir,
    storageFile: (name) => path.join(storageDir, name),
    async makeDevice(sizeBytes) {
      const p = path.join(devDir, `disk${n++}.img`);
      await admin.createDevice(p, sizeBytes);
      return fs.realpathSync(p);
    },
    async writeDevice(p, offset, data) {
      await admin.writeDevice(p, offset, data);
    },
    async readDevice(p, offset, length) {
      return readBytes(p, offset, length);
    },
    async dirOnDevice(device) {
      const mountpoint = path.join(simDir, `mnt${n++}`);
      fs.mkdirSync(mountpoint);
      await admin.addDevice(device, { mountpoint });
      return mountpoint;
    },
    async hazards() {
      // The sim records what would have corrupted a real module (the
      // wrong-name DETACH, §7); our clients must never cause one.
      const state = await admin.state();
      return state.realKernelCorrupted ? [...state.hazards, 'realKernelCorrupted'] : state.hazards;
    },
    async cleanup() {
      fs.rmSync(simDir, { recursive: true, force: true });
    },
  };
}

/**
 * The real module with loop devices (for test/e2e): the same contract runs
 * there unchanged. Records go to a temporary directory, never /run/blksnap.
 */
export async function realFixture(kernelSelection: 'auto' | 'upstream' | 'standalone' = 'auto'): Promise<KernelFixture> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const loops = require('../helpers/loop') as typeof import('../helpers/loop');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { kernelOnPlatform } = require('../../lib/kernel') as typeof import('../../lib/kernel');
  const base = (await createKernel({ kernel: kernelSelection })) as ClientKernel;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-e2e-'));
  const recordsDir = path.join(work, 'run');
  const storageDir = path.join(work, 'storage');
  fs.mkdirSync(storageDir);
  const kernel = kernelOnPlatform(base.platform, { recordsDir });
  const devices: { cleanup(): void }[] = [];
  const mounts: { cleanup(): void }[] = [];
  const byPath = new Map<string, import('../helpers/loop').LoopDevice>();
  return {
    kernel,
    platform: base.platform,
    recordsDir,
    storageDir,
    storageFile: (name) => path.join(storageDir, name),
    async makeDevice(sizeBytes) {
      const loop = loops.createLoopDevice({ sizeBytes });
      devices.push(loop);
      byPath.set(loop.path, loop);
      return loop.path;
    },
    async writeDevice(p, offset, data) {
      const fd = fs.openSync(p, 'r+');
      try {
        fs.writeSync(fd, data, 0, data.length, offset);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    },
    async readDevice(p, offset, length) {
      return readBytes(p, offset, length);
    },
    async dirOnDevice(device) {
      const loop = byPath.get(device);
      if (!loop) return null;
      const m = loops.mountExt4(loop);
      mounts.push(m);
      return m.mountpoint;
    },
    async hazards() {
      return []; // a real kernel does not tell; the sim run of this suite checks it
    },
    async cleanup() {
      for (const m of mounts.splice(0)) m.cleanup();
      for (const d of devices.splice(0)) {
        await kernel.device((d as import('../helpers/loop').LoopDevice).path).detach({ force: true }).catch(() => undefined);
        d.cleanup();
      }
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/** `length` bytes of a device or file at `offset`. */
function readBytes(p: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(p, 'r');
  try {
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}
