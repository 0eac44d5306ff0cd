/**
 * `blksnap sim ...` — thin helpers over the simulated kernel's admin API
 * (lib/kernel/sim `openSimAdmin(simDir)`), working on the state directory of
 * --sim-dir / $BLKSNAP_SIM_DIR whatever --kernel says:
 *   sim create-device PATH SIZE         JSON { "device": string, "size": n }
 *   sim add-device PATH [--parent DISK] [--mountpoint DIR]
 *                                       JSON { "device": string, "parent": string|null, "mountpoint": string|null }
 *   sim write PATH OFFSET --data TEXT | --file FILE | --pattern BYTE --length SIZE
 *                                       JSON { "device": string, "offset": n, "length": n }
 *   sim state                           the simulator's state document (always JSON)
 *   sim reset                           JSON { "reset": true }
 * A write goes through the simulated block layer: copy-on-write into every
 * snapshot holding the device, and change tracking.
 * Exit status: 0; 2 bad size, offset or data; 5 device file not found; 1 other failures.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { UsageError } from '../../errors';
import { defineCommand, defineGroup } from '../command';
import type { CliContext, GlobalArgs } from '../context';
import { parseCount, parseSizeArg } from '../parse';

async function admin(ctx: CliContext) {
  const { openSimAdmin } = await import('../../kernel/sim');
  return openSimAdmin(ctx.simDir());
}

/** An offset: 0, or a size (suffixes allowed). */
function parseOffset(text: unknown): bigint {
  if (String(text).trim() === '0') return 0n;
  return parseSizeArg(text, 'offset');
}

interface CreateArgs extends GlobalArgs {
  path: string;
  size: string;
}

const createDevice = defineCommand<CreateArgs>({
  command: 'create-device <path> <size>',
  describe: 'Create an image file that acts as a block device',
  builder: (y) =>
    y
      .positional('path', { type: 'string', demandOption: true, describe: 'image file to create' })
      .positional('size', { type: 'string', demandOption: true, describe: 'size, e.g. 64M' })
      .example('$0 sim create-device /tmp/sim/disk.img 64M', 'a 64 MiB simulated disk'),
  exitCodes: [0, 1, 2, 6],
  async run(ctx, argv) {
    const size = parseSizeArg(argv.size, 'device size');
    if (size % 512n !== 0n) throw new UsageError(`device size "${argv.size}" is not a multiple of 512 bytes`, { hint: 'e.g. 64M' });
    const device = path.resolve(argv.path);
    await (await admin(ctx)).createDevice(device, size);
    if (ctx.out.json) return ctx.out.data({ device, size });
    ctx.out.say(`${device}: simulated device of ${size} bytes`);
  },
});

interface AddArgs extends GlobalArgs {
  path: string;
  parent?: string;
  mountpoint?: string;
}

const addDevice = defineCommand<AddArgs>({
  command: 'add-device <path>',
  describe: 'Register an existing image file as a simulated device',
  builder: (y) =>
    y
      .positional('path', { type: 'string', demandOption: true, describe: 'existing image file' })
      .option('parent', { type: 'string', requiresArg: true, describe: 'the simulated disk this is a partition of' })
      .option('mountpoint', { type: 'string', requiresArg: true, describe: 'directory whose files live on this device' })
      .example('$0 sim add-device /tmp/sim/part1.img --parent /tmp/sim/disk.img --mountpoint /tmp/sim/mnt', 'a partition holding a "mounted" directory'),
  exitCodes: [0, 1, 2, 5],
  async run(ctx, argv) {
    const device = path.resolve(argv.path);
    const parent = argv.parent === undefined ? null : path.resolve(argv.parent);
    const mountpoint = argv.mountpoint === undefined ? null : path.resolve(argv.mountpoint);
    await (await admin(ctx)).addDevice(device, { parent: parent ?? undefined, mountpoint: mountpoint ?? undefined });
    if (ctx.out.json) return ctx.out.data({ device, parent, mountpoint });
    ctx.out.say(`${device}: simulated device${parent ? ` (partition of ${parent})` : ''}${mountpoint ? `, mounted at ${mountpoint}` : ''}`);
  },
});

interface WriteArgs extends GlobalArgs {
  path: string;
  offset: string;
  data?: string;
  file?: string;
  pattern?: string;
  length?: string;
}

const write = defineCommand<WriteArgs>({
  command: 'write <path> <offset>',
  describe: 'Write to a simulated device through its block layer (copy-on-write, change tracking)',
  builder: (y) =>
    y
      .positional('path', { type: 'string', demandOption: true, describe: 'simulated device' })
      .positional('offset', { type: 'string', demandOption: true, describe: 'byte offset (suffixes allowed, e.g. 1M)' })
      .option('data', { type: 'string', requiresArg: true, describe: 'bytes to write, as text' })
      .option('file', { type: 'string', requiresArg: true, describe: 'write the contents of this file' })
      .option('pattern', { type: 'string', requiresArg: true, describe: 'fill with this byte value (0-255) ...' })
      .option('length', { type: 'string', requiresArg: true, describe: '... for this many bytes (with --pattern)' })
      .example('$0 sim write /tmp/sim/disk.img 1M --data hello', 'write 5 bytes at 1 MiB')
      .example('$0 sim write /tmp/sim/disk.img 0 --pattern 255 --length 64K', 'fill 64 KiB'),
  exitCodes: [0, 1, 2, 5],
  async run(ctx, argv) {
    const device = path.resolve(argv.path);
    const offset = parseOffset(argv.offset);
    const sources = [argv.data !== undefined, argv.file !== undefined, argv.pattern !== undefined].filter(Boolean).length;
    if (sources !== 1) throw new UsageError('give exactly one of --data, --file, --pattern', { hint: 'blksnap sim write DEVICE OFFSET --data TEXT' });
    let data: Buffer;
    if (argv.data !== undefined) data = Buffer.from(argv.data);
    else if (argv.file !== undefined) data = await fsp.readFile(argv.file);
    else {
      const byte = parseCount(argv.pattern, '--pattern byte', 'a byte value 0-255');
      if (byte > 255) throw new UsageError(`invalid --pattern byte "${argv.pattern}"`, { hint: 'a byte value 0-255' });
      if (argv.length === undefined) throw new UsageError('--pattern needs --length', { hint: 'e.g. --pattern 255 --length 64K' });
      data = Buffer.alloc(Number(parseSizeArg(argv.length, '--length')), byte);
    }
    if (data.length === 0) throw new UsageError('nothing to write (empty data)', { hint: 'give non-empty --data or --file' });
    await (await admin(ctx)).writeDevice(device, offset, data);
    if (ctx.out.json) return ctx.out.data({ device, offset, length: data.length });
    ctx.out.say(`${device}: wrote ${data.length} bytes at ${offset}`);
  },
});

const state = defineCommand<GlobalArgs>({
  command: 'state',
  describe: "Print the simulated kernel's state (JSON)",
  builder: (y) => y.example('$0 sim state | jq .snapshots', 'what snapshots the simulator holds'),
  exitCodes: [0, 1],
  async run(ctx) {
    ctx.out.data(await (await admin(ctx)).state());
  },
});

const reset = defineCommand<GlobalArgs>({
  command: 'reset',
  describe: 'Forget every simulated snapshot, filter and device',
  builder: (y) => y.example('$0 sim reset', 'start over'),
  exitCodes: [0, 1],
  async run(ctx) {
    await (await admin(ctx)).reset();
    if (ctx.out.json) return ctx.out.data({ reset: true });
    ctx.out.say(`simulated kernel in ${ctx.simDir()} reset`);
  },
});

export default defineGroup({
  command: 'sim',
  describe: 'Simulated kernel helpers: create-device, add-device, write, state, reset',
  subcommands: [createDevice, addDevice, write, state, reset],
});
