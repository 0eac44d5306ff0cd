/**
 * What a scenario may do to the machine, written once for two environments:
 *
 *  - real (test/e2e): root, the real blksnap module (either flavour), scratch
 *    block devices (BLKSNAP_E2E_DEVICES or loop devices over temp files),
 *    `dd oflag=direct` writes, ext4 mounts;
 *  - sim (test/sim): BLKSNAP_KERNEL=sim with its own state directory, devices
 *    are image files, writes go through the simulated block layer so that
 *    copy-on-write and CBT see them, and filesystems are handled with
 *    mkfs.ext4 -F / e2fsck -fn / debugfs on files instead of mounts.
 *
 * Every command an environment runs is recorded in its transcript.
 */
import type { BackgroundProcess, CommandResult, RunOptions } from './process';
import type { Transcript } from './transcript';

export type EnvironmentName = 'real' | 'sim';

/** An ext4 filesystem on a device, open for writing while a scenario runs. */
export interface WritableFs {
  /** Creates or replaces a file in the filesystem's root directory. */
  writeFile(name: string, data: Buffer): Promise<void>;
  /**
   * Runs `fn` with no writes of ours in flight (real: sync, then the module
   * freezes the filesystem itself during TAKE; sim: every change already went
   * through the simulated block layer). Used around a snapshot take so the
   * image is fsck-clean.
   */
  quiesced<T>(fn: () => Promise<T>): Promise<T>;
  /** Flushes and releases the filesystem (real: umount). */
  close(): Promise<void>;
}

export interface ImageRead {
  /** The bytes read, when the read succeeded. */
  data?: Buffer;
  /** The errno name the read failed with (EIO after an overflow), or 'SHORT' for a short read. */
  errno?: string;
}

export interface ImageFiles {
  files: Map<string, Buffer>;
  /** How they were read, for messages: `mount -o ro,noload` or `debugfs`. */
  how: string;
}

export interface Environment {
  readonly name: EnvironmentName;
  /** Which flavour the CLI must report (detected from the control device, or the sim's setting). */
  readonly flavour: 'upstream' | 'standalone';
  readonly transcript: Transcript;
  /** Size in bytes of each scratch device (all the same). */
  readonly deviceSize: number;

  /** Runs the built CLI (`node bin/blksnap ARGS`) as an admin's script would, with this environment's variables. */
  blksnap(args: string[], options?: RunOptions): Promise<CommandResult>;
  /** The same, in the background and in its own process group (to signal it and its hooks). */
  startBlksnap(args: string[], options?: RunOptions): BackgroundProcess;
  /** The argv prefix that runs the CLI (`node /…/bin/blksnap`), for hook commands. */
  blksnapCommandLine(): string;
  /** Variables a hook or helper script needs to reach the same kernel (sim dir, run dir). */
  readonly cliEnv: NodeJS.ProcessEnv;
  /** Runs any other command (dd, e2fsck, ...), recorded in the transcript. */
  run(argv: string[], options?: RunOptions): Promise<CommandResult>;

  /** `count` scratch devices (canonical paths), contents undefined, tracked by nothing. */
  devices(count: number): Promise<string[]>;
  /** One more scratch device, distinct from those `devices` gives, to hold a difference storage. */
  storageDevice(): Promise<string>;
  /** A directory on a filesystem that lives on `device` (real: ext4 made and mounted; sim: declared as its mountpoint). */
  fsDirOn(device: string): Promise<string>;
  /** Snapshot ids that existed before the scenario began (never touched, left out of comparisons). */
  readonly preexistingSnapshots: readonly string[];
  /** A directory on a filesystem that no scratch device backs. */
  otherFsDir(label: string): Promise<string>;
  /** A directory on a tmpfs. */
  tmpfsDir(): Promise<string>;
  /** A shell command line that writes `length` bytes of pattern `seed` at `offset` of `device` through the block layer. */
  writeCommand(device: string, offset: number, length: number, seed: number): string;

  /**
   * A shell command line (for a backup's post-hook) that copies the snapshot
   * image of `device` to `outFile`, finding the image with
   * `blksnap snapshot_info --device D --field image`.
   */
  copyImageCommand(device: string, outFile: string): string;
  /**
   * Starts a process that opens the image, reads its first MiB, prints
   * `opened`, waits for `goFile` to exist, reads the rest and prints
   * `result rc=N bytes=N` (rc 0 and all bytes only if the whole rest was read).
   */
  startImageReader(imagePath: string, goFile: string): BackgroundProcess;
  /** Whether the image node (or the sim's image) still exists. */
  imageExists(imagePath: string): Promise<boolean>;

  /** Writes through the block layer (real: dd oflag=direct; sim: the simulated block layer). */
  writeDevice(device: string, offset: number, data: Buffer, note?: string): Promise<void>;
  readDevice(device: string, offset?: number, length?: number): Promise<Buffer>;
  /** Reads a snapshot image at `imagePath` (as the CLI printed it). */
  readImage(imagePath: string, offset?: number, length?: number): Promise<ImageRead>;
  /** Size of the image in bytes. */
  imageSize(imagePath: string): Promise<number>;

  /** mkfs.ext4 on the device (through the block layer). */
  mkfs(device: string): Promise<void>;
  openFs(device: string): Promise<WritableFs>;
  /** e2fsck -fn of the image; the result's code is e2fsck's (0 = clean). */
  fsckImage(imagePath: string): Promise<CommandResult>;
  /** Reads files from the root directory of the ext4 filesystem in the image, read-only. */
  readImageFiles(imagePath: string, names: string[]): Promise<ImageFiles>;

  /**
   * Checks that hold after every scenario. Sim: the simulated module recorded
   * no request that would have damaged a real module (§7, e.g. DETACH with
   * another filter name). Real: nothing beyond the scenario's own checks.
   */
  afterScenario(): Promise<void>;

  /** Destroys what this scenario left behind (its snapshots, trackers, mounts, files). Never throws. */
  cleanup(): Promise<void>;
}
