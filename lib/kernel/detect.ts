/**
 * Which kernel to talk to: the user's choice (option, then BLKSNAP_KERNEL),
 * else the flavour whose control device exists (blksnap-abi.md §1). Cheap:
 * only `fs` and data definitions are loaded here.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { flavours } from '../../ioctl-defs/index';
import type { FlavourName } from '../../ioctl-defs/index';
import { ModuleMissingError, UsageError } from '../errors';
import { MODULE_HINT } from './errno-map';
import type { KernelOptions, KernelSelection } from './types';

const SELECTIONS: readonly KernelSelection[] = ['auto', 'upstream', 'standalone', 'sim'];
const FLAVOURS: readonly FlavourName[] = ['upstream', 'standalone'];

export function parseKernelSelection(value: string, source = '--kernel'): KernelSelection {
  if ((SELECTIONS as readonly string[]).includes(value)) return value as KernelSelection;
  throw new UsageError(`invalid kernel "${value}" (${source})`, { hint: `choose one of ${SELECTIONS.join(', ')}` });
}

export function parseSimFlavour(value: string, source = 'BLKSNAP_SIM_FLAVOUR'): FlavourName {
  if ((FLAVOURS as readonly string[]).includes(value)) return value as FlavourName;
  throw new UsageError(`invalid simulated flavour "${value}" (${source})`, { hint: `choose one of ${FLAVOURS.join(', ')}` });
}

/** The selection from options, else $BLKSNAP_KERNEL, else auto. */
export function kernelSelection(options: KernelOptions, env: NodeJS.ProcessEnv = process.env): KernelSelection {
  if (options.kernel !== undefined) return parseKernelSelection(options.kernel);
  const fromEnv = env.BLKSNAP_KERNEL;
  if (fromEnv) return parseKernelSelection(fromEnv, 'BLKSNAP_KERNEL');
  return 'auto';
}

/** $BLKSNAP_SIM_DIR, else $XDG_RUNTIME_DIR/blksnap-sim, else /tmp/blksnap-sim-$UID. */
export function defaultSimDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BLKSNAP_SIM_DIR) return path.resolve(env.BLKSNAP_SIM_DIR);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'blksnap-sim');
  const uid = typeof process.getuid === 'function' ? process.getuid() : os.userInfo().uid;
  return path.join(os.tmpdir(), `blksnap-sim-${uid}`);
}

export function simFlavour(options: KernelOptions, env: NodeJS.ProcessEnv = process.env): FlavourName {
  if (options.simFlavour !== undefined) return parseSimFlavour(options.simFlavour, 'simFlavour');
  if (env.BLKSNAP_SIM_FLAVOUR) return parseSimFlavour(env.BLKSNAP_SIM_FLAVOUR);
  return 'upstream';
}

/**
 * upstream when /dev/blksnap-control exists; standalone when both
 * /dev/veeamblksnap and /dev/bdevfilter exist; else ModuleMissingError
 * naming what was looked for.
 */
export function detectFlavour(exists: (p: string) => boolean = fs.existsSync): FlavourName {
  if (exists(flavours.upstream.controlDevice)) return 'upstream';
  const s = flavours.standalone;
  const hasControl = exists(s.controlDevice);
  const hasFilter = exists(s.filterDevice as string);
  if (hasControl && hasFilter) return 'standalone';
  const missing = hasControl
    ? `${s.controlDevice} exists but ${s.filterDevice} does not (the bdevfilter module is not loaded)`
    : `neither ${flavours.upstream.controlDevice} (upstream) nor ${s.controlDevice} with ${s.filterDevice} (standalone) exists`;
  return missingModule(missing);
}

function missingModule(what: string): never {
  throw new ModuleMissingError(`blksnap kernel module is not loaded: ${what}`, {
    errno: 'ENOENT',
    op: 'detect',
    path: flavours.upstream.controlDevice,
    hint: MODULE_HINT,
  });
}
