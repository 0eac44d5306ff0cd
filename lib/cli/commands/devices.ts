/**
 * Shared option builders for commands that take devices, both as our
 * positional `DEVICE...` and as the reference tool's `--device D` (repeatable,
 * or several values after one `--device`).
 */
import type { Argv } from 'yargs';
import { UsageError } from '../../errors';
import type { GlobalArgs } from '../context';

export interface DeviceArgs extends GlobalArgs {
  devices?: string[];
  device?: string[];
}

export function withDevices<T extends GlobalArgs>(y: Argv<T>, what: string): Argv<T & DeviceArgs> {
  return y
    .positional('devices', { type: 'string', array: true, describe: what })
    .option('device', { alias: 'd', type: 'string', array: true, requiresArg: true, describe: 'the same, reference-tool form (repeatable)' }) as unknown as Argv<T & DeviceArgs>;
}

/** Every device named on the command line, in order, at least one. */
export function devicesOf(argv: DeviceArgs, command: string): string[] {
  const all = [...(argv.devices ?? []), ...(argv.device ?? [])].map(String);
  if (all.length === 0) {
    throw new UsageError(`${command}: no device given`, { hint: `name at least one block device, e.g. blksnap ${command} /dev/sdb1` });
  }
  for (const d of all) {
    if (d.trim() === '') throw new UsageError(`${command}: empty device name ""`, { hint: 'give a block device path such as /dev/sdb1' });
  }
  return all;
}

/** Resolves every argument first, so one bad device changes nothing. */
export async function resolveAll(resolve: (arg: string) => Promise<string>, args: string[]): Promise<string[]> {
  const paths: string[] = [];
  for (const arg of args) paths.push(await resolve(arg));
  return paths;
}
