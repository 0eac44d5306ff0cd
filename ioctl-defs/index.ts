/**
 * The ABI of both kernel flavours as data (blksnap-abi.md §1-3).
 */
import type { StructDef } from './layout';
import type { IoctlDef } from './ioc';
import * as f from './filter';
import * as b from './blksnap';

export * from './layout';
export * from './ioc';
export * from './filter';
export * from './blksnap';
export * from './linux';

export type FlavourName = 'upstream' | 'standalone';

export interface FlavourAbi {
  readonly name: FlavourName;
  /** The blksnap control device. */
  readonly controlDevice: string;
  /** standalone: the device the filter ioctls are issued on; upstream: null (issued on the block device). */
  readonly filterDevice: string | null;
  readonly attach: IoctlDef;
  readonly detach: IoctlDef;
  readonly ctl: IoctlDef;
  /** Every ioctl this flavour defines, in table order. */
  readonly ioctls: readonly IoctlDef[];
  /** Every struct this flavour uses. */
  readonly structs: readonly StructDef<any>[];
}

const blksnapStructs: StructDef<any>[] = [
  b.blksnap_uuid, b.blksnap_cbtinfo, b.blksnap_cbtmap, b.blksnap_sectors, b.blksnap_cbtdirty,
  b.blksnap_snapshotadd, b.blksnap_snapshotinfo, b.blksnap_version, b.blksnap_snapshot_create,
  b.blksnap_snapshot_collect, b.blksnap_snapshot_event, b.blksnap_event_corrupted, b.blksnap_event_no_space,
];
const controlIoctls: IoctlDef[] = [
  b.IOCTL_BLKSNAP_VERSION, b.IOCTL_BLKSNAP_SNAPSHOT_CREATE, b.IOCTL_BLKSNAP_SNAPSHOT_DESTROY,
  b.IOCTL_BLKSNAP_SNAPSHOT_TAKE, b.IOCTL_BLKSNAP_SNAPSHOT_COLLECT, b.IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT,
];

export const upstream: FlavourAbi = {
  name: 'upstream',
  controlDevice: '/dev/blksnap-control',
  filterDevice: null,
  attach: f.BLKFILTER_ATTACH,
  detach: f.BLKFILTER_DETACH,
  ctl: f.BLKFILTER_CTL,
  ioctls: [f.BLKFILTER_ATTACH, f.BLKFILTER_DETACH, f.BLKFILTER_CTL, ...controlIoctls],
  structs: [f.blkfilter_attach, f.blkfilter_detach, f.blkfilter_ctl, ...blksnapStructs],
};

export const standalone: FlavourAbi = {
  name: 'standalone',
  controlDevice: '/dev/veeamblksnap',
  filterDevice: '/dev/bdevfilter',
  attach: f.BDEVFILTER_ATTACH,
  detach: f.BDEVFILTER_DETACH,
  ctl: f.BDEVFILTER_CTL,
  ioctls: [f.BDEVFILTER_ATTACH, f.BDEVFILTER_DETACH, f.BDEVFILTER_CTL, ...controlIoctls, b.IOCTL_BLKSNAP_MOD, b.IOCTL_BLKSNAP_SETLOG],
  structs: [f.bdevfilter_name, f.bdevfilter_ctl, ...blksnapStructs, b.blksnap_mod, b.blksnap_setlog],
};

export const flavours: Readonly<Record<FlavourName, FlavourAbi>> = { upstream, standalone };
