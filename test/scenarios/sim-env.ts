/**
 * The simulated environment: BLKSNAP_KERNEL=sim with a state directory,
 * records directory and device files of its own (removed at cleanup), so
 * scenarios never see each other's state.
 *
 * Devices are image files. Every write to a device goes through the
 * simulated block layer (the admin API's writeDevice, or `blksnap sim write`
 * in hooks), so copy-on-write and change tracking see it. Filesystems are
 * handled without mounts: ext4 is made with mkfs.ext4 -F and files written
 * with debugfs -w on a scratch copy of the device, and the bytes that changed
 * are then written to the device through the simulated block layer. Images
 * are read through the library's ImageReader (a simulated image is not a
 * plain file), copied to a file, and checked with e2fsck -fn and debugfs.
 */
import * as fs from 'fs';
import * as path from 'path';
import { BaseEnvironment, REPO_ROOT } from './common-env';
import type { Environment, ImageFiles, ImageRead, WritableFs } from './env';
import type { BackgroundProcess, CommandResult } from './process';
import { patternBytes, ScenarioFailure } from './checks';
import { openSimAdmin } from '../../lib/kernel/sim';
import type { SimAdmin } from '../../lib/kernel/sim';
import { createKernel } from '../../lib/kernel';
import type { Kernel } from '../../lib/kernel/types';
import { BlksnapError, ShortReadError } from '../../lib/errors';

const SIM_IMAGE_TOOL = path.join(REPO_ROOT, 'test', 'scenarios', 'sim-image-tool.js');
export const SIM_DEVICE_SIZE = 32 * 1024 * 1024;
/** Gaps shorter than this between changed bytes are written together. */
const MERGE_GAP = 4096;

/** Byte ranges where `a` and `b` differ, compared in 4 KiB units and merged across small gaps. */
export function changedRanges(a: Buffer, b: Buffer, unit = 4096): [number, number][] {
  const out: [number, number][] = [];
  for (let off = 0; off < a.length; off += unit) {
    const end = Math.min(a.length, off + unit);
    if (a.subarray(off, end).equals(b.subarray(off, end))) continue;
    const last = out[out.length - 1];
    if (last && off - last[1] <= MERGE_GAP) last[1] = end;
    else out.push([off, end]);
  }
  return out;
}

export class SimEnvironment extends BaseEnvironment implements Environment {
  readonly name = 'sim' as const;
  readonly deviceSize = SIM_DEVICE_SIZE;
  readonly cliEnv: NodeJS.ProcessEnv;
  readonly preexistingSnapshots: readonly string[] = [];
  private readonly root: string;
  private readonly simDir: string;
  private readonly devDir: string;
  private deviceCount = 0;
  private adminPromise: Promise<SimAdmin> | null = null;
  private kernelPromise: Promise<Kernel> | null = null;

  constructor(readonly flavour: 'upstream' | 'standalone' = 'upstream') {
    super();
    this.root = this.mkTemp('sim');
    this.simDir = path.join(this.root, 'state');
    this.devDir = path.join(this.root, 'devices');
    fs.mkdirSync(this.simDir);
    fs.mkdirSync(this.devDir);
    this.cliEnv = {
      ...process.env,
      BLKSNAP_KERNEL: 'sim',
      BLKSNAP_SIM_DIR: this.simDir,
      BLKSNAP_SIM_FLAVOUR: flavour,
      BLKSNAP_RUN_DIR: path.join(this.root, 'run'),
      // No /etc/blksnap/blksnap.conf of the machine: defaults only.
      BLKSNAP_CONFIG: path.join(this.root, 'no-config.conf'),
      NO_COLOR: '1',
    };
  }

  private admin(): Promise<SimAdmin> {
    this.adminPromise ??= Promise.resolve().then(() => openSimAdmin(this.simDir));
    return this.adminPromise;
  }

  /** The library on the same simulated kernel, for reading images in-process. */
  private kernel(): Promise<Kernel> {
    this.kernelPromise ??= createKernel({ kernel: 'sim', simDir: this.simDir, simFlavour: this.flavour });
    return this.kernelPromise;
  }

  private async newDevice(label: string): Promise<string> {
    const file = path.join(this.devDir, `${label}${this.deviceCount++}.img`);
    await (await this.admin()).createDevice(file, this.deviceSize);
    const canonical = fs.realpathSync(file);
    this.transcript.note(`sim admin createDevice(${canonical}, ${this.deviceSize})`, 'ok');
    return canonical;
  }

  async devices(count: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < count; i++) out.push(await this.newDevice('disk'));
    return out;
  }

  storageDevice(): Promise<string> {
    return this.newDevice('storage');
  }

  async fsDirOn(device: string): Promise<string> {
    const dir = fs.realpathSync(this.mkTemp('mnt'));
    await (await this.admin()).addDevice(device, { mountpoint: dir });
    this.transcript.note(`sim admin addDevice(${device}, { mountpoint: ${dir} })`, 'ok');
    return dir;
  }

  async otherFsDir(label: string): Promise<string> {
    return fs.realpathSync(this.mkTemp(label));
  }

  async tmpfsDir(): Promise<string> {
    // /dev/shm is a tmpfs on Linux, no root needed.
    const base = '/dev/shm';
    const r = await this.run(['stat', '-f', '-c', '%T', base]);
    if (r.stdout.trim() !== 'tmpfs') throw new Error(`${base} is not a tmpfs here (${r.stdout.trim()})`);
    return fs.realpathSync(this.mkTemp('tmpfs', base));
  }

  private patternFile(length: number, seed: number): string {
    const file = path.join(this.mkTemp('data'), `pattern-${seed}-${length}`);
    fs.writeFileSync(file, patternBytes(length, seed));
    return file;
  }

  writeCommand(device: string, offset: number, length: number, seed: number): string {
    return `${this.blksnapCommandLine()} sim write ${device} ${offset} --file ${this.patternFile(length, seed)}`;
  }

  copyImageCommand(device: string, outFile: string): string {
    return `IMG=$(${this.blksnapCommandLine()} snapshot_info --device ${device} --field image) && ${process.execPath} ${SIM_IMAGE_TOOL} copy "$IMG" ${outFile}`;
  }

  startImageReader(imagePath: string, goFile: string): BackgroundProcess {
    return this.startHelper([process.execPath, SIM_IMAGE_TOOL, 'reader', imagePath, goFile]);
  }

  async writeDevice(device: string, offset: number, data: Buffer, note?: string): Promise<void> {
    await (await this.admin()).writeDevice(device, offset, data);
    this.transcript.note(`sim admin writeDevice(${device}, offset ${offset}, ${data.length} bytes)${note ? ` # ${note}` : ''}`, 'ok');
  }

  async readDevice(device: string, offset = 0, length = this.deviceSize): Promise<Buffer> {
    // A simulated device is its file.
    const fd = fs.openSync(device, 'r');
    try {
      const buf = Buffer.alloc(length);
      const n = fs.readSync(fd, buf, 0, length, offset);
      if (n !== length) throw new Error(`reading ${device}: ${n} bytes instead of ${length}`);
      return buf;
    } finally {
      fs.closeSync(fd);
    }
  }

  async readImage(imagePath: string, offset = 0, length?: number): Promise<ImageRead> {
    const kernel = await this.kernel();
    let reader;
    try {
      reader = await kernel.openImage(imagePath);
    } catch (err) {
      const errno = err instanceof BlksnapError ? err.errno ?? 'EUNKNOWN' : 'EUNKNOWN';
      this.transcript.note(`library openImage(${imagePath})`, `failed: ${(err as Error).message}`);
      return { errno };
    }
    const len = length ?? Number(reader.size) - offset;
    const buf = Buffer.alloc(len);
    try {
      await reader.read(buf, len, BigInt(offset));
      this.transcript.note(`library read of ${imagePath} at ${offset}, ${len} bytes`, 'ok');
      return { data: buf };
    } catch (err) {
      this.transcript.note(`library read of ${imagePath} at ${offset}, ${len} bytes`, `failed: ${(err as Error).message}`);
      if (err instanceof ShortReadError) return { errno: 'SHORT' };
      return { errno: err instanceof BlksnapError ? err.errno ?? 'EUNKNOWN' : 'EUNKNOWN' };
    } finally {
      await reader.close();
    }
  }

  async imageSize(imagePath: string): Promise<number> {
    const reader = await (await this.kernel()).openImage(imagePath);
    try {
      return Number(reader.size);
    } finally {
      await reader.close();
    }
  }

  async imageExists(imagePath: string): Promise<boolean> {
    try {
      const reader = await (await this.kernel()).openImage(imagePath);
      await reader.close();
      return true;
    } catch {
      return false;
    }
  }

  /** The image copied to a plain file, for e2fsck and debugfs. */
  private async imageToFile(imagePath: string): Promise<string> {
    const read = await this.readImage(imagePath);
    if (!read.data) throw new Error(`reading the image ${imagePath} failed: ${read.errno}`);
    const file = path.join(this.mkTemp('imagecopy'), 'image.img');
    fs.writeFileSync(file, read.data);
    return file;
  }

  /** Makes the device's content equal `target`, writing only what differs, through the simulated block layer. */
  private async writeDifferences(device: string, target: Buffer, why: string): Promise<void> {
    const current = await this.readDevice(device);
    for (const [start, end] of changedRanges(current, target)) {
      await this.writeDevice(device, start, target.subarray(start, end), why);
    }
  }

  async mkfs(device: string): Promise<void> {
    const shadow = path.join(this.mkTemp('mkfs'), 'fs.img');
    fs.copyFileSync(device, shadow);
    const r = await this.run(['mkfs.ext4', '-F', '-q', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', shadow], { note: `on a copy of ${device}` });
    if (r.code !== 0) throw new Error(`mkfs.ext4 failed: ${r.stderr.trim()}`);
    await this.writeDifferences(device, fs.readFileSync(shadow), 'mkfs.ext4');
  }

  async openFs(device: string): Promise<WritableFs> {
    const dir = this.mkTemp('fs');
    const shadow = path.join(dir, 'fs.img');
    const env = this;
    return {
      async writeFile(name: string, data: Buffer): Promise<void> {
        // Start from the device as it is now, change it with debugfs, write back what changed.
        fs.copyFileSync(device, shadow);
        const local = path.join(dir, 'content');
        fs.writeFileSync(local, data);
        const cmds = path.join(dir, 'cmds');
        fs.writeFileSync(cmds, `rm /${name}\nwrite ${local} /${name}\n`);
        const r = await env.run(['debugfs', '-w', '-f', cmds, shadow], { note: `write ${name} (${data.length} bytes) on a copy of ${device}` });
        if (r.code !== 0 || /write: .*error|Could not|Ext2 .*error/i.test(r.stderr)) throw new Error(`debugfs write of ${name} failed: ${r.stderr.trim()}`);
        await env.writeDifferences(device, fs.readFileSync(shadow), `ext4: ${name}`);
      },
      async quiesced<T>(fn: () => Promise<T>): Promise<T> {
        // Every change has already reached the device through the simulated block layer.
        return fn();
      },
      async close(): Promise<void> {
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  async fsckImage(imagePath: string): Promise<CommandResult> {
    const file = await this.imageToFile(imagePath);
    return this.run(['e2fsck', '-fn', file], { note: `copy of ${imagePath}` });
  }

  async readImageFiles(imagePath: string, names: string[]): Promise<ImageFiles> {
    const file = await this.imageToFile(imagePath);
    const outDir = this.mkTemp('files');
    const files = new Map<string, Buffer>();
    for (const name of names) {
      const out = path.join(outDir, name);
      await this.run(['debugfs', '-R', `dump /${name} ${out}`, file], { note: `read ${name} from a copy of ${imagePath}` });
      if (fs.existsSync(out)) files.set(name, fs.readFileSync(out));
    }
    return { files, how: 'debugfs on a copy of the image' };
  }

  async afterScenario(): Promise<void> {
    const state = await (await this.admin()).state();
    this.transcript.note('sim admin state(): hazards', state.hazards.length === 0 ? 'none' : JSON.stringify(state.hazards));
    if (state.hazards.length > 0 || state.realKernelCorrupted) {
      throw new ScenarioFailure(`the commands sent requests that would have damaged a real blksnap module (§7): ${JSON.stringify(state.hazards)}`);
    }
  }

  async cleanup(): Promise<void> {
    try {
      await this.stopBackground();
    } catch {
      /* never throws */
    } finally {
      this.removeTemps();
    }
  }
}
