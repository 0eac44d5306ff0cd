/**
 * Block-device filter transports (blksnap-abi.md §2).
 *
 * upstream: BLKFILTER_* issued on an fd of the block device itself.
 * standalone: BDEVFILTER_* issued on /dev/bdevfilter, the device named by a
 * user pointer to its path.
 */
import { cstring, pointer, struct, u32 } from './layout';
import { ioctl } from './ioc';

/** Both transports carry the filter name in a 32-byte NUL-padded array. */
export const FILTER_NAME_LENGTH = 32;

export interface BlkfilterAttach { name: string; opt: bigint; optlen: number }
export const blkfilter_attach = struct<BlkfilterAttach>('blkfilter_attach', [
  ['name', cstring(FILTER_NAME_LENGTH)],
  ['opt', pointer('filter attach options (blksnap: none)')],
  ['optlen', u32],
], { size: 48 });

export interface BlkfilterDetach { name: string }
export const blkfilter_detach = struct<BlkfilterDetach>('blkfilter_detach', [
  ['name', cstring(FILTER_NAME_LENGTH)],
], { size: 32 });

export interface BlkfilterCtl { name: string; cmd: number; optlen: number; opt: bigint }
export const blkfilter_ctl = struct<BlkfilterCtl>('blkfilter_ctl', [
  ['name', cstring(FILTER_NAME_LENGTH)],
  ['cmd', u32],
  ['optlen', u32],
  ['opt', pointer('the command\'s struct (blksnap_cbtinfo, ...)')],
], { size: 48 });

export const BLKFILTER_ATTACH = ioctl('BLKFILTER_ATTACH', 'readwrite', 0x12, 142, blkfilter_attach);
export const BLKFILTER_DETACH = ioctl('BLKFILTER_DETACH', 'readwrite', 0x12, 143, blkfilter_detach);
export const BLKFILTER_CTL = ioctl('BLKFILTER_CTL', 'readwrite', 0x12, 144, blkfilter_ctl);

export interface BdevfilterName { devpath: bigint; name: string }
export const bdevfilter_name = struct<BdevfilterName>('bdevfilter_name', [
  ['devpath', pointer('NUL-terminated device path')],
  ['name', cstring(FILTER_NAME_LENGTH)],
], { size: 40 });

export interface BdevfilterCtl { devpath: bigint; name: string; cmd: number; optlen: number; opt: bigint }
export const bdevfilter_ctl = struct<BdevfilterCtl>('bdevfilter_ctl', [
  ['devpath', pointer('NUL-terminated device path')],
  ['name', cstring(FILTER_NAME_LENGTH)],
  ['cmd', u32],
  ['optlen', u32],
  ['opt', pointer('the command\'s struct (blksnap_cbtinfo, ...)')],
], { size: 56 });

export const BDEVFILTER_ATTACH = ioctl('BDEVFILTER_ATTACH', 'readwrite', 'F', 140, bdevfilter_name);
export const BDEVFILTER_DETACH = ioctl('BDEVFILTER_DETACH', 'readwrite', 'F', 141, bdevfilter_name);
export const BDEVFILTER_CTL = ioctl('BDEVFILTER_CTL', 'readwrite', 'F', 142, bdevfilter_ctl);
