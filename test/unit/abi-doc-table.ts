/**
 * Numbers transcribed by hand from the tables of /work/shared/blksnap-abi.md
 * (§2 filter ioctls and structs, §2 blksnap commands, §3 control ioctls),
 * and, for the generic Linux ioctls the tool issues, from the kernel's
 * <linux/fs.h>, <linux/blkpg.h> and <linux/fiemap.h>. Nothing here is computed: this is the
 * independent side that test/unit/abi-doc.test.ts (TypeScript) and
 * test/unit/abi-gcc.test.ts (gcc) compare the definitions with.
 *
 * Field sizes follow the doc's types (u8[32] = 32, uuid = 16...).
 */

export interface DocIoctl {
  hex: string;
  /** Size field of the number (bytes). */
  size: number;
  dir: '_IO' | '_IOR' | '_IOW' | '_IOWR';
  arg: string;
}

export interface DocStruct {
  size: number;
  /** Only where the doc states it ("(48, align 8)"). */
  align?: number;
  /** name → [offset, size] */
  fields: Record<string, [number, number]>;
}

const filterUpstream: Record<string, DocIoctl> = {
  BLKFILTER_ATTACH: { hex: '0xc030128e', size: 48, dir: '_IOWR', arg: 'blkfilter_attach' },
  BLKFILTER_DETACH: { hex: '0xc020128f', size: 32, dir: '_IOWR', arg: 'blkfilter_detach' },
  BLKFILTER_CTL: { hex: '0xc0301290', size: 48, dir: '_IOWR', arg: 'blkfilter_ctl' },
};

const filterStandalone: Record<string, DocIoctl> = {
  BDEVFILTER_ATTACH: { hex: '0xc028468c', size: 40, dir: '_IOWR', arg: 'bdevfilter_name' },
  BDEVFILTER_DETACH: { hex: '0xc028468d', size: 40, dir: '_IOWR', arg: 'bdevfilter_name' },
  BDEVFILTER_CTL: { hex: '0xc038468e', size: 56, dir: '_IOWR', arg: 'bdevfilter_ctl' },
};

const control: Record<string, DocIoctl> = {
  IOCTL_BLKSNAP_VERSION: { hex: '0x80085600', size: 8, dir: '_IOR', arg: 'blksnap_version' },
  IOCTL_BLKSNAP_SNAPSHOT_CREATE: { hex: '0xc0205601', size: 32, dir: '_IOWR', arg: 'blksnap_snapshot_create' },
  IOCTL_BLKSNAP_SNAPSHOT_DESTROY: { hex: '0x40105602', size: 16, dir: '_IOW', arg: 'blksnap_uuid' },
  IOCTL_BLKSNAP_SNAPSHOT_TAKE: { hex: '0x40105603', size: 16, dir: '_IOW', arg: 'blksnap_uuid' },
  IOCTL_BLKSNAP_SNAPSHOT_COLLECT: { hex: '0x80105604', size: 16, dir: '_IOR', arg: 'blksnap_snapshot_collect' },
  IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT: { hex: '0x90005605', size: 4096, dir: '_IOR', arg: 'blksnap_snapshot_event' },
};

const standaloneOnly: Record<string, DocIoctl> = {
  IOCTL_BLKSNAP_MOD: { hex: '0x80285620', size: 40, dir: '_IOR', arg: 'blksnap_mod' },
  IOCTL_BLKSNAP_SETLOG: { hex: '0x40185621', size: 24, dir: '_IOW', arg: 'blksnap_setlog' },
};

const blksnapStructs: Record<string, DocStruct> = {
  blksnap_uuid: { size: 16, fields: { b: [0, 16] } },
  blksnap_cbtinfo: {
    size: 40, align: 8,
    fields: { device_capacity: [0, 8], block_size: [8, 4], block_count: [12, 4], generation_id: [16, 16], changes_number: [32, 1] },
  },
  blksnap_cbtmap: { size: 16, fields: { offset: [0, 4], length: [4, 4], buffer: [8, 8] } },
  blksnap_sectors: { size: 16, fields: { offset: [0, 8], count: [8, 8] } },
  blksnap_cbtdirty: { size: 16, fields: { count: [0, 4], dirty_sectors: [8, 8] } },
  blksnap_snapshotadd: { size: 16, fields: { id: [0, 16] } },
  blksnap_snapshotinfo: { size: 36, align: 4, fields: { error_code: [0, 4], image: [4, 32] } },
  blksnap_version: { size: 8, fields: { major: [0, 2], minor: [2, 2], revision: [4, 2], build: [6, 2] } },
  blksnap_snapshot_create: { size: 32, fields: { diff_storage_limit_sect: [0, 8], diff_storage_filename: [8, 8], id: [16, 16] } },
  blksnap_snapshot_collect: { size: 16, fields: { count: [0, 4], ids: [8, 8] } },
  blksnap_snapshot_event: {
    size: 4096,
    fields: { id: [0, 16], timeout_ms: [16, 4], code: [20, 4], time_label: [24, 8], data: [32, 4064] },
  },
  // §3 "event code 0 corrupted: data = dev_id_mj u32, dev_id_mn u32, err_code s32 (12 bytes)"
  blksnap_event_corrupted: { size: 12, fields: { dev_id_mj: [0, 4], dev_id_mn: [4, 4], err_code: [8, 4] } },
  // §3 "event code 1 no_space: data = requested_nr_sect u64 (8 bytes)"
  blksnap_event_no_space: { size: 8, fields: { requested_nr_sect: [0, 8] } },
};

export const DOC = {
  upstream: {
    ioctls: { ...filterUpstream, ...control },
    structs: {
      blkfilter_attach: { size: 48, align: 8, fields: { name: [0, 32], opt: [32, 8], optlen: [40, 4] } },
      blkfilter_detach: { size: 32, align: 1, fields: { name: [0, 32] } },
      blkfilter_ctl: { size: 48, align: 8, fields: { name: [0, 32], cmd: [32, 4], optlen: [36, 4], opt: [40, 8] } },
      ...blksnapStructs,
    } as Record<string, DocStruct>,
  },
  standalone: {
    ioctls: { ...filterStandalone, ...control, ...standaloneOnly },
    structs: {
      bdevfilter_name: { size: 40, fields: { devpath: [0, 8], name: [8, 32] } },
      bdevfilter_ctl: { size: 56, fields: { devpath: [0, 8], name: [8, 32], cmd: [40, 4], optlen: [44, 4], opt: [48, 8] } },
      ...blksnapStructs,
      blksnap_mod: { size: 40, fields: { compatibility_flags: [0, 8], name: [8, 32] } },
      blksnap_setlog: { size: 24, fields: { tz_minuteswest: [0, 4], level: [4, 4], filepath_size: [8, 4], filepath: [16, 8] } },
    } as Record<string, DocStruct>,
  },
  /** Not in blksnap-abi.md: from the kernel's <linux/fs.h>, <linux/blkpg.h>, <linux/fiemap.h> (x86_64/arm64). */
  linux: {
    ioctls: {
      BLKGETSIZE64: { hex: '0x80081272', size: 8, dir: '_IOR', arg: 'blk_u64' }, // _IOR(0x12,114,size_t)
      BLKSSZGET: { hex: '0x00001268', size: 0, dir: '_IO', arg: 'blk_int' }, // _IO(0x12,104)
      BLKPG: { hex: '0x00001269', size: 0, dir: '_IO', arg: 'blkpg_ioctl_arg' }, // _IO(0x12,105)
      FIFREEZE: { hex: '0xc0045877', size: 4, dir: '_IOWR', arg: 'blk_int' }, // _IOWR('X',119,int)
      FITHAW: { hex: '0xc0045878', size: 4, dir: '_IOWR', arg: 'blk_int' }, // _IOWR('X',120,int)
      FS_IOC_GETFLAGS: { hex: '0x80086601', size: 8, dir: '_IOR', arg: 'blk_int' }, // _IOR('f',1,long)
      FS_IOC_SETFLAGS: { hex: '0x40086602', size: 8, dir: '_IOW', arg: 'blk_int' }, // _IOW('f',2,long)
      FS_IOC_FIEMAP: { hex: '0xc020660b', size: 32, dir: '_IOWR', arg: 'fiemap' }, // _IOWR('f',11,struct fiemap)
    } as Record<string, DocIoctl>,
    structs: {
      blk_u64: { size: 8, fields: { value: [0, 8] } },
      blk_int: { size: 4, fields: { value: [0, 4] } },
      blkpg_partition: { size: 152, align: 8, fields: { start: [0, 8], length: [8, 8], pno: [16, 4], devname: [20, 64], volname: [84, 64] } },
      blkpg_ioctl_arg: { size: 24, align: 8, fields: { op: [0, 4], flags: [4, 4], datalen: [8, 4], data: [16, 8] } },
      // <linux/fiemap.h>; the reserved arrays (fe_reserved64[2], fe_reserved[3]) as one field per element
      fiemap: {
        size: 32, align: 8,
        fields: { fm_start: [0, 8], fm_length: [8, 8], fm_flags: [16, 4], fm_mapped_extents: [20, 4], fm_extent_count: [24, 4], fm_reserved: [28, 4] },
      },
      fiemap_extent: {
        size: 56, align: 8,
        fields: {
          fe_logical: [0, 8], fe_physical: [8, 8], fe_length: [16, 8], fe_reserved64_0: [24, 8], fe_reserved64_1: [32, 8],
          fe_flags: [40, 4], fe_reserved_0: [44, 4], fe_reserved_1: [48, 4], fe_reserved_2: [52, 4],
        },
      },
    } as Record<string, DocStruct>,
  },
} satisfies Record<string, { ioctls: Record<string, DocIoctl>; structs: Record<string, DocStruct> }>;

export type DocSection = { ioctls: Record<string, DocIoctl>; structs: Record<string, DocStruct> };
