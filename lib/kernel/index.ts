/**
 * The kernel layer's entry point: `createKernel` picks the kernel (an
 * option, else $BLKSNAP_KERNEL, else whichever control device exists) and
 * returns the typed clients on top of it. The real platform (koffi) and the
 * simulated kernel are loaded only when selected, so start-up stays cheap.
 */
import type { FlavourName } from '../../ioctl-defs/index';
import { ClientKernel } from './clients';
import { defaultSimDir, detectFlavour, kernelSelection, simFlavour } from './detect';
import type { KernelPlatform } from './platform';
import { defaultRecordsDir } from './records';
import type { Kernel, KernelOptions } from './types';

export * from './types';
export type { KernelPlatform } from './platform';
export { SnapshotId } from './snapshot-id';
export {
  ClientKernel,
  CBTMAP_PIECE_BYTES,
  CBTDIRTY_BATCH,
  WAIT_EVENT_MAX_UNITS,
  DEFAULT_IMAGE_TIMEOUT_MS,
  decodeEvent,
  isOverflowEvent,
  sameStorage,
} from './clients';
export type { ClientKernelOptions } from './clients';
export { defaultSimDir, detectFlavour, kernelSelection, parseKernelSelection, parseSimFlavour, simFlavour } from './detect';
export { SnapshotRecords, defaultRecordsDir, isProcessDead, newRecord, processStartTime } from './records';
export type { SnapshotRecord } from './records';
export { extentsToSectorRanges, fileDirtyRanges, fileExtents, fileSectorRanges } from './fiemap';
export type { FileExtent } from './fiemap';

interface SimModule {
  createSimPlatform(options: { simDir: string; flavour: FlavourName }): KernelPlatform | Promise<KernelPlatform>;
}

/** Builds the clients on a platform you made yourself (tests wrap transports this way). */
export function kernelOnPlatform(platform: KernelPlatform, options: { recordsDir?: string; simDir?: string } = {}): ClientKernel {
  return new ClientKernel(platform, { recordsDir: options.recordsDir ?? defaultRecordsDir(platform.kind, options.simDir) });
}

/**
 * The kernel selected by `options.kernel`, else $BLKSNAP_KERNEL, else auto:
 * upstream when /dev/blksnap-control exists, standalone when
 * /dev/veeamblksnap and /dev/bdevfilter exist, else ModuleMissingError.
 * `sim` uses `options.simDir` / $BLKSNAP_SIM_DIR and `options.simFlavour` /
 * $BLKSNAP_SIM_FLAVOUR. Snapshot records go to $BLKSNAP_RUN_DIR, default
 * /run/blksnap (sim: <simDir>/run).
 */
export async function createKernel(options: KernelOptions = {}): Promise<Kernel> {
  const selection = kernelSelection(options);
  if (selection === 'sim') {
    const simDir = options.simDir ?? defaultSimDir();
    const flavour = simFlavour(options);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const sim = require('./sim') as SimModule;
    const platform = await sim.createSimPlatform({ simDir, flavour });
    return kernelOnPlatform(platform, { simDir });
  }
  const flavour: FlavourName = selection === 'auto' ? detectFlavour() : selection;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const real = require('./real-platform') as typeof import('./real-platform');
  return kernelOnPlatform(real.createRealPlatform(flavour));
}
