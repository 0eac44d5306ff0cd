/**
 * blksnap structures, filter commands and control-device ioctls
 * (blksnap-abi.md §2 "blksnap filter commands" and §3). Identical in both
 * kernel flavours, except the standalone-only MOD and SETLOG.
 */
import { bytes, cstring, nested, pointer, s32, s64, struct, u16, u32, u64, u8 } from './layout';
import { ioctl } from './ioc';

/** The only filter name the module registers; DETACH with any other corrupts the real module (§7). */
export const BLKSNAP_FILTER_NAME = 'blksnap';
export const BLKSNAP_IOCTL_MAGIC = 'V';
/** A sector is always 512 bytes in this ABI. */
export const SECTOR_SIZE = 512;
export const IMAGE_NAME_LENGTH = 32;
export const MOD_NAME_LENGTH = 32;
export const EVENT_DATA_LENGTH = 4064;

export interface BlksnapUuid { b: Buffer }
export const blksnap_uuid = struct<BlksnapUuid>('blksnap_uuid', [['b', bytes(16)]], { size: 16 });

/** Values of `cmd` in BLKFILTER_CTL / BDEVFILTER_CTL. */
export const BLKSNAP_CTL = {
  CBTINFO: 0,
  CBTMAP: 1,
  CBTDIRTY: 2,
  SNAPSHOTADD: 3,
  SNAPSHOTINFO: 4,
} as const;
export type BlksnapCtlName = keyof typeof BLKSNAP_CTL;

export interface BlksnapCbtinfo {
  device_capacity: bigint;
  block_size: number;
  block_count: number;
  generation_id: BlksnapUuid;
  changes_number: number;
}
export const blksnap_cbtinfo = struct<BlksnapCbtinfo>('blksnap_cbtinfo', [
  ['device_capacity', u64],
  ['block_size', u32],
  ['block_count', u32],
  ['generation_id', nested(blksnap_uuid)],
  ['changes_number', u8],
], { size: 40 });

export interface BlksnapCbtmap { offset: number; length: number; buffer: bigint }
export const blksnap_cbtmap = struct<BlksnapCbtmap>('blksnap_cbtmap', [
  ['offset', u32],
  ['length', u32],
  ['buffer', pointer('u8[length]: receives map bytes')],
], { size: 16 });

export interface BlksnapSectors { offset: bigint; count: bigint }
export const blksnap_sectors = struct<BlksnapSectors>('blksnap_sectors', [
  ['offset', u64],
  ['count', u64],
], { size: 16 });

export interface BlksnapCbtdirty { count: number; dirty_sectors: bigint }
export const blksnap_cbtdirty = struct<BlksnapCbtdirty>('blksnap_cbtdirty', [
  ['count', u32],
  ['dirty_sectors', pointer('struct blksnap_sectors[count]')],
], { size: 16 });

export interface BlksnapSnapshotadd { id: BlksnapUuid }
export const blksnap_snapshotadd = struct<BlksnapSnapshotadd>('blksnap_snapshotadd', [
  ['id', nested(blksnap_uuid)],
], { size: 16 });

export interface BlksnapSnapshotinfo { error_code: number; image: string }
export const blksnap_snapshotinfo = struct<BlksnapSnapshotinfo>('blksnap_snapshotinfo', [
  ['error_code', s32],
  ['image', cstring(IMAGE_NAME_LENGTH)],
], { size: 36 });

/** The struct that `opt` points to, per filter command. */
export const CTL_ARG = {
  CBTINFO: blksnap_cbtinfo,
  CBTMAP: blksnap_cbtmap,
  CBTDIRTY: blksnap_cbtdirty,
  SNAPSHOTADD: blksnap_snapshotadd,
  SNAPSHOTINFO: blksnap_snapshotinfo,
} as const;

export interface BlksnapVersion { major: number; minor: number; revision: number; build: number }
export const blksnap_version = struct<BlksnapVersion>('blksnap_version', [
  ['major', u16],
  ['minor', u16],
  ['revision', u16],
  ['build', u16],
], { size: 8 });

export interface BlksnapSnapshotCreate { diff_storage_limit_sect: bigint; diff_storage_filename: bigint; id: BlksnapUuid }
export const blksnap_snapshot_create = struct<BlksnapSnapshotCreate>('blksnap_snapshot_create', [
  ['diff_storage_limit_sect', u64],
  ['diff_storage_filename', pointer('NUL-terminated path of the difference storage')],
  ['id', nested(blksnap_uuid)],
], { size: 32 });

export interface BlksnapSnapshotCollect { count: number; ids: bigint }
export const blksnap_snapshot_collect = struct<BlksnapSnapshotCollect>('blksnap_snapshot_collect', [
  ['count', u32],
  ['ids', pointer('struct blksnap_uuid[count]')],
], { size: 16 });

export interface BlksnapSnapshotEvent { id: BlksnapUuid; timeout_ms: number; code: number; time_label: bigint; data: Buffer }
export const blksnap_snapshot_event = struct<BlksnapSnapshotEvent>('blksnap_snapshot_event', [
  ['id', nested(blksnap_uuid)],
  ['timeout_ms', u32],
  ['code', u32],
  ['time_label', s64],
  ['data', bytes(EVENT_DATA_LENGTH)],
], { size: 4096 });

/** The kernel reads only `id` and `timeout_ms` of a WAIT_EVENT request (§3). */
export const WAIT_EVENT_INPUT_BYTES = 20;

export const BLKSNAP_EVENT_CODE = { corrupted: 0, no_space: 1 } as const;

export interface BlksnapEventCorrupted { dev_id_mj: number; dev_id_mn: number; err_code: number }
export const blksnap_event_corrupted = struct<BlksnapEventCorrupted>('blksnap_event_corrupted', [
  ['dev_id_mj', u32],
  ['dev_id_mn', u32],
  ['err_code', s32],
], { size: 12 });

export interface BlksnapEventNoSpace { requested_nr_sect: bigint }
export const blksnap_event_no_space = struct<BlksnapEventNoSpace>('blksnap_event_no_space', [
  ['requested_nr_sect', u64],
], { size: 8 });

export interface BlksnapMod { compatibility_flags: bigint; name: string }
export const blksnap_mod = struct<BlksnapMod>('blksnap_mod', [
  ['compatibility_flags', u64],
  ['name', cstring(MOD_NAME_LENGTH)],
], { size: 40 });

/** Bits of blksnap_mod.compatibility_flags. */
export const BLKSNAP_COMPAT_FLAGS = { debug_sector_state: 0, setlog: 1 } as const;

export interface BlksnapSetlog { tz_minuteswest: number; level: number; filepath_size: number; filepath: bigint }
export const blksnap_setlog = struct<BlksnapSetlog>('blksnap_setlog', [
  ['tz_minuteswest', s32],
  ['level', s32],
  ['filepath_size', u32],
  ['filepath', pointer('the log file path (filepath_size bytes)')],
], { size: 24 });

export const IOCTL_BLKSNAP_VERSION = ioctl('IOCTL_BLKSNAP_VERSION', 'read', BLKSNAP_IOCTL_MAGIC, 0, blksnap_version);
export const IOCTL_BLKSNAP_SNAPSHOT_CREATE = ioctl('IOCTL_BLKSNAP_SNAPSHOT_CREATE', 'readwrite', BLKSNAP_IOCTL_MAGIC, 1, blksnap_snapshot_create);
export const IOCTL_BLKSNAP_SNAPSHOT_DESTROY = ioctl('IOCTL_BLKSNAP_SNAPSHOT_DESTROY', 'write', BLKSNAP_IOCTL_MAGIC, 2, blksnap_uuid);
export const IOCTL_BLKSNAP_SNAPSHOT_TAKE = ioctl('IOCTL_BLKSNAP_SNAPSHOT_TAKE', 'write', BLKSNAP_IOCTL_MAGIC, 3, blksnap_uuid);
export const IOCTL_BLKSNAP_SNAPSHOT_COLLECT = ioctl('IOCTL_BLKSNAP_SNAPSHOT_COLLECT', 'read', BLKSNAP_IOCTL_MAGIC, 4, blksnap_snapshot_collect);
export const IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT = ioctl('IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT', 'read', BLKSNAP_IOCTL_MAGIC, 5, blksnap_snapshot_event);
export const IOCTL_BLKSNAP_MOD = ioctl('IOCTL_BLKSNAP_MOD', 'read', BLKSNAP_IOCTL_MAGIC, 32, blksnap_mod);
export const IOCTL_BLKSNAP_SETLOG = ioctl('IOCTL_BLKSNAP_SETLOG', 'write', BLKSNAP_IOCTL_MAGIC, 33, blksnap_setlog);
