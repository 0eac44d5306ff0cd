/**
 * The simulated kernel, shipped with the product (like libvirt's
 * test:///default driver): `BLKSNAP_KERNEL=sim` runs every command on image
 * files as devices, with no root and no module. It plugs in below the codecs
 * (SimTransport receives the kernel's request numbers and bytes) and keeps
 * its state in a directory shared by every process. docs/simulated-kernel.md
 * describes the layout, the admin API and the modelled quirks.
 */
import type { FlavourName } from '../../../ioctl-defs';
import { SimAdminImpl, type SimAdmin } from './admin';
import { defaultSimDir, SimKernel } from './kernel';
import { SimPlatform } from './platform';

export { defaultSimDir } from './kernel';
export { SimTransport, SIM_VERSION, SIM_MOD } from './transport';
export { SimPlatform } from './platform';
export type {
  SimAdmin, SimStateView, SimDeviceView, SimTrackerView, SimSnapshotView, SimMemberView, SimEventView, SimInjectedEvent,
} from './admin';
export { DEFAULT_PARAMETERS, DEFAULT_HZ, DEVICE_MAJOR, IMAGE_MAJOR } from './state';
export type { ModuleParameters, HazardRecord, DiffStorageRecord, ImageRecord, ImageMode, SetlogRecord } from './state';

export interface SimPlatformOptions {
  /** State directory (default: defaultSimDir()). */
  simDir?: string;
  /** Which module the sim behaves as (default: $BLKSNAP_SIM_FLAVOUR, else upstream). */
  flavour?: FlavourName;
}

function flavourFromEnv(): FlavourName {
  const v = process.env.BLKSNAP_SIM_FLAVOUR;
  return v === 'standalone' ? 'standalone' : 'upstream';
}

/** The simulated kernel as a KernelPlatform (the typed clients run on it unchanged). */
export function createSimPlatform(options: SimPlatformOptions = {}): SimPlatform {
  return new SimPlatform(new SimKernel(options.simDir ?? defaultSimDir()), options.flavour ?? flavourFromEnv());
}

/** The administration API of the simulated kernel in `simDir` (default: defaultSimDir()). */
export function openSimAdmin(simDir: string = defaultSimDir()): SimAdmin {
  return new SimAdminImpl(new SimKernel(simDir));
}
