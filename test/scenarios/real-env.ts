/**
 * The real environment: root, the real blksnap module, scratch block devices.
 * Writes are `dd oflag=direct` (they reach the block layer, so the filter sees
 * them), reads of devices and images are `dd iflag=direct`, filesystems are
 * ext4 made with mkfs.ext4 and mounted; images are checked with e2fsck -fn
 * and mounted `-o ro,noload`.
 */
import * as fs from 'fs';
import * as path from 'path';
import { BaseEnvironment } from './common-env';
import type { Environment, ImageFiles, ImageRead, WritableFs } from './env';
import type { BackgroundProcess, CommandResult } from './process';
import { patternBytes } from './checks';

export interface RealDevicePool {
  /** Canonical /dev paths, all at least `size` bytes. */
  devices: string[];
  /** Bytes each scenario may use on each device (the smallest device's size, capped). */
  size: number;
}

/** The errno a dd failure stands for, from its message (dd prints strerror). */
export function errnoFromDd(stderr: string): string {
  if (/Input\/output error/i.test(stderr)) return 'EIO';
  if (/No such file or directory/i.test(stderr)) return 'ENOENT';
  if (/No such device/i.test(stderr)) return 'ENODEV';
  if (/No space left/i.test(stderr)) return 'ENOSPC';
  if (/Invalid argument/i.test(stderr)) return 'EINVAL';
  if (/Device or resource busy/i.test(stderr)) return 'EBUSY';
  return 'EUNKNOWN';
}

export class RealEnvironment extends BaseEnvironment implements Environment {
  readonly name = 'real' as const;
  readonly deviceSize: number;
  readonly cliEnv: NodeJS.ProcessEnv;
  private mounts: string[] = [];
  preexistingSnapshots: string[] = [];

  constructor(private readonly pool: RealDevicePool, readonly flavour: 'upstream' | 'standalone', private readonly runDir: string) {
    super();
    this.deviceSize = pool.size;
    // BLKSNAP_RUN_DIR: this run's own records, so `cleanup` in a scenario sees
    // only what the scenarios created, never an admin's real /run/blksnap.
    // BLKSNAP_CONFIG: a file that does not exist, so the machine's
    // /etc/blksnap/blksnap.conf (hooks, freeze, devices) plays no part.
    this.cliEnv = {
      ...process.env,
      BLKSNAP_KERNEL: 'auto',
      BLKSNAP_RUN_DIR: runDir,
      BLKSNAP_CONFIG: path.join(path.dirname(runDir), `${path.basename(runDir)}-no-config.conf`),
      NO_COLOR: '1',
    };
    delete this.cliEnv.BLKSNAP_SIM_DIR;
    delete this.cliEnv.BLKSNAP_SIM_FLAVOUR;
  }

  async begin(): Promise<void> {
    this.preexistingSnapshots = await this.snapshotIds();
  }

  async devices(count: number): Promise<string[]> {
    // The last device of the pool is kept for storageDevice().
    if (count > this.pool.devices.length - 1) {
      throw new Error(`this scenario needs ${count} scratch devices plus one for a difference storage; ${this.pool.devices.length} available`);
    }
    return this.pool.devices.slice(0, count);
  }

  async storageDevice(): Promise<string> {
    return this.pool.devices[this.pool.devices.length - 1];
  }

  async fsDirOn(device: string): Promise<string> {
    await this.mkfs(device);
    const mnt = this.mkTemp('mnt');
    const r = await this.run(['mount', '-t', 'ext4', device, mnt]);
    if (r.code !== 0) throw new Error(`mount ${device} failed: ${r.stderr.trim()}`);
    this.mounts.push(mnt);
    return mnt;
  }

  copyImageCommand(device: string, outFile: string): string {
    return `IMG=$(${this.blksnapCommandLine()} snapshot_info --device ${device} --field image) && dd if="$IMG" of=${outFile} bs=1M iflag=direct status=none`;
  }

  startImageReader(imagePath: string, goFile: string): BackgroundProcess {
    // One open file description: the first MiB, then (after the destroy) the rest from where it stopped.
    const script = [
      'exec 3<"$1" || { echo "result rc=90 bytes=0"; exit 0; }',
      'dd bs=1M count=1 iflag=direct <&3 of=/dev/null status=none || { echo "result rc=91 bytes=0"; exit 0; }',
      'echo opened',
      'while [ ! -e "$2" ]; do sleep 0.05; done',
      'out=$(dd bs=1M iflag=direct <&3 of=/dev/null 2>&1); rc=$?',
      'bytes=$(printf "%s\\n" "$out" | sed -n "s/^\\([0-9][0-9]*\\) bytes.*/\\1/p")',
      'printf "%s\\n" "$out" >&2',
      'echo "result rc=$rc bytes=${bytes:-0}"',
    ].join('\n');
    return this.startHelper(['bash', '-c', script, 'image-reader', imagePath, goFile]);
  }

  async imageExists(imagePath: string): Promise<boolean> {
    return fs.existsSync(imagePath);
  }

  async otherFsDir(label: string): Promise<string> {
    return this.mkTemp(label);
  }

  async tmpfsDir(): Promise<string> {
    const dir = this.mkTemp('tmpfs');
    const r = await this.run(['mount', '-t', 'tmpfs', '-o', 'size=256m,mode=0700', 'blksnap-e2e', dir], { note: 'a tmpfs for the difference storage' });
    if (r.code !== 0) throw new Error(`mount -t tmpfs failed: ${r.stderr.trim()}`);
    this.mounts.push(dir);
    return dir;
  }

  private patternFile(length: number, seed: number): string {
    const dir = this.mkTemp('data');
    const file = path.join(dir, `pattern-${seed}-${length}`);
    fs.writeFileSync(file, patternBytes(length, seed));
    return file;
  }

  writeCommand(device: string, offset: number, length: number, seed: number): string {
    const file = this.patternFile(length, seed);
    return `dd if=${file} of=${device} bs=1M oflag=direct,seek_bytes seek=${offset} conv=notrunc,fsync status=none`;
  }

  async writeDevice(device: string, offset: number, data: Buffer, note?: string): Promise<void> {
    if (offset % 512 !== 0 || data.length % 512 !== 0) throw new Error(`direct writes need 512-byte alignment (offset ${offset}, length ${data.length})`);
    const dir = this.mkTemp('data');
    const file = path.join(dir, 'data');
    fs.writeFileSync(file, data);
    const r = await this.run(['dd', `if=${file}`, `of=${device}`, 'bs=1M', 'oflag=direct,seek_bytes', `seek=${offset}`, 'conv=notrunc,fsync', 'status=none'], { note });
    if (r.code !== 0) throw new Error(`dd to ${device} at ${offset} failed: ${r.stderr.trim()}`);
  }

  private async ddRead(file: string, offset: number, length: number): Promise<{ r: CommandResult; data: Buffer }> {
    const r = await this.run(
      ['dd', `if=${file}`, 'bs=1M', 'iflag=direct,skip_bytes,count_bytes', `skip=${offset}`, `count=${length}`, 'status=none'],
      { binaryStdout: true },
    );
    return { r, data: r.stdoutBytes };
  }

  async readDevice(device: string, offset = 0, length = this.deviceSize): Promise<Buffer> {
    const { r, data } = await this.ddRead(device, offset, length);
    if (r.code !== 0) throw new Error(`reading ${device} failed: ${r.stderr.trim()}`);
    if (data.length !== length) throw new Error(`reading ${device}: ${data.length} bytes instead of ${length}`);
    return data;
  }

  async readImage(imagePath: string, offset = 0, length?: number): Promise<ImageRead> {
    const len = length ?? (await this.imageSize(imagePath)) - offset;
    const { r, data } = await this.ddRead(imagePath, offset, len);
    if (r.code !== 0) return { errno: errnoFromDd(r.stderr) };
    if (data.length !== len) return { errno: 'SHORT' };
    return { data };
  }

  async imageSize(imagePath: string): Promise<number> {
    const r = await this.run(['blockdev', '--getsize64', imagePath]);
    if (r.code !== 0) throw new Error(`blockdev --getsize64 ${imagePath} failed: ${r.stderr.trim()}`);
    return Number(r.stdout.trim());
  }

  async mkfs(device: string): Promise<void> {
    // No lazy init: ext4lazyinit would keep writing after mount, behind the test's back.
    const r = await this.run(['mkfs.ext4', '-F', '-q', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', device]);
    if (r.code !== 0) throw new Error(`mkfs.ext4 ${device} failed: ${r.stderr.trim()}`);
  }

  async openFs(device: string): Promise<WritableFs> {
    const mnt = this.mkTemp('mnt');
    const r = await this.run(['mount', '-t', 'ext4', device, mnt]);
    if (r.code !== 0) throw new Error(`mount ${device} failed: ${r.stderr.trim()}`);
    this.mounts.push(mnt);
    const env = this;
    return {
      async writeFile(name: string, data: Buffer): Promise<void> {
        const file = path.join(mnt, name);
        fs.writeFileSync(file, data);
        const fd = fs.openSync(file, 'r');
        try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
        env.transcript.note(`write ${data.length} bytes to ${file} (fsync)`, 'ok');
      },
      async quiesced<T>(fn: () => Promise<T>): Promise<T> {
        // No fsfreeze here: the module freezes the filesystem of every
        // device itself during TAKE, and before kernel 6.8 that freeze fails
        // with EBUSY on a filesystem userspace already froze. sync first so
        // the freeze has little to flush.
        const r = await env.run(['sync', '-f', mnt]);
        if (r.code !== 0) throw new Error(`sync -f ${mnt} failed: ${r.stderr.trim()}`);
        return fn();
      },
      async close(): Promise<void> {
        const u = await env.run(['umount', mnt]);
        if (u.code !== 0) throw new Error(`umount ${mnt} failed: ${u.stderr.trim()}`);
        env.mounts = env.mounts.filter((m) => m !== mnt);
      },
    };
  }

  fsckImage(imagePath: string): Promise<CommandResult> {
    return this.run(['e2fsck', '-fn', imagePath], { note: 'read-only check of the snapshot image' });
  }

  async readImageFiles(imagePath: string, names: string[]): Promise<ImageFiles> {
    const mnt = this.mkTemp('image');
    const m = await this.run(['mount', '-t', 'ext4', '-o', 'ro,noload', imagePath, mnt]);
    if (m.code !== 0) throw new Error(`mount -o ro,noload ${imagePath} failed (exit ${m.code}): ${m.stderr.trim()}`);
    this.mounts.push(mnt);
    const files = new Map<string, Buffer>();
    try {
      for (const name of names) {
        const file = path.join(mnt, name);
        if (fs.existsSync(file)) files.set(name, fs.readFileSync(file));
      }
      this.transcript.note(`read ${names.join(', ')} from ${mnt}`, `${files.size} of ${names.length} files present`);
    } finally {
      const u = await this.run(['umount', mnt]);
      if (u.code === 0) this.mounts = this.mounts.filter((x) => x !== mnt);
    }
    return { files, how: 'mount -o ro,noload' };
  }

  async afterScenario(): Promise<void> {
    // A real module cannot tell us what would have hurt it; the sim run of the same scenarios does.
  }

  async cleanup(): Promise<void> {
    try {
      await this.stopBackground();
      for (const mnt of [...this.mounts].reverse()) {
        const u = await this.run(['umount', mnt]);
        if (u.code !== 0) await this.run(['umount', '-l', mnt]);
      }
      this.mounts = [];
      // Only this scenario's snapshots: those that were not there when it began.
      const leftover = (await this.snapshotIds()).filter((id) => !this.preexistingSnapshots.includes(id));
      for (const id of leftover) await this.blksnap(['snapshot_destroy', '--id', id], { note: 'cleanup: leftover snapshot' });
      for (const dev of this.pool.devices) await this.blksnap(['detach', dev], { note: 'cleanup: stop tracking' });
    } catch {
      /* cleanup never throws; the transcript shows what failed */
    } finally {
      this.removeTemps();
      fs.rmSync(this.runDir, { recursive: true, force: true });
      fs.mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    }
  }
}
