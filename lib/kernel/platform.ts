/**
 * What differs between the real kernel and the simulated one, below the
 * typed clients: who executes the ioctls, and how device paths, image names
 * and image reads are resolved. The clients (./clients.ts) are written once
 * against this interface; `createKernel` (./index.ts) picks the platform.
 */
import type { FlavourName } from '../../ioctl-defs';
import type { IoctlTransport } from '../ioctl/types';
import type { DeviceIdentity, ImageReader } from './types';

export interface KernelPlatform {
  readonly kind: 'kernel' | 'sim';
  readonly flavour: FlavourName;
  readonly transport: IoctlTransport;
  /** Follows links and checks the argument names a device; see Kernel.resolveDevice. */
  resolveDevice(arg: string): Promise<DeviceIdentity>;
  deviceOfPath(path: string): Promise<DeviceIdentity | null>;
  /** Maps a SNAPSHOTINFO image name to a path, waiting up to timeoutMs for it to appear. */
  imagePath(imageName: string, timeoutMs: number): Promise<string>;
  openImage(path: string, options: { direct?: boolean }): Promise<ImageReader>;
}
