/**
 * Scratch block devices for the real-module scenarios: the devices named in
 * BLKSNAP_E2E_DEVICES (comma-separated; their contents are destroyed), or
 * loop devices over temporary files created here and always removed.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { createLoopDevice, LoopDevice } from '../helpers/loop';
import type { RealDevicePool } from '../scenarios/real-env';

/** Two devices for a snapshot plus one for a block-device difference storage. */
export const DEVICES_NEEDED = 3;
export const LOOP_SIZE = 64 * 1024 * 1024;
/** The scenarios write up to 32 MiB and put ext4 on a device. */
const MIN_SIZE = 64 * 1024 * 1024;

export interface DevicePool extends RealDevicePool {
  /** Where the devices came from, for the suite title. */
  source: string;
  release(): void;
}

function sizeOf(dev: string): number {
  return Number(execFileSync('blockdev', ['--getsize64', dev], { encoding: 'utf8' }).trim());
}

/** Mount sources of every mounted filesystem (canonical paths). */
function mountedDevices(): Set<string> {
  const out = new Set<string>();
  for (const line of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const src = line.split(' ')[0];
    if (src && src.startsWith('/dev/')) {
      try { out.add(fs.realpathSync(src)); } catch { /* gone */ }
    }
  }
  return out;
}

/** Parses and checks BLKSNAP_E2E_DEVICES; throws one clear message for any bad entry. */
export function devicesFromEnv(value: string): DevicePool {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length < DEVICES_NEEDED) {
    throw new Error(`BLKSNAP_E2E_DEVICES names ${names.length} device(s); the scenarios need ${DEVICES_NEEDED} scratch block devices of the same size`);
  }
  const mounted = mountedDevices();
  const devices = names.map((name) => {
    let real: string;
    try {
      real = fs.realpathSync(name);
    } catch {
      throw new Error(`BLKSNAP_E2E_DEVICES: ${name} does not exist`);
    }
    if (!fs.statSync(real).isBlockDevice()) throw new Error(`BLKSNAP_E2E_DEVICES: ${name} is not a block device`);
    if (mounted.has(real)) throw new Error(`BLKSNAP_E2E_DEVICES: ${name} is mounted; give unmounted scratch devices (their contents are destroyed)`);
    return real;
  });
  if (new Set(devices).size !== devices.length) throw new Error(`BLKSNAP_E2E_DEVICES names the same device twice: ${names.join(',')}`);
  const sizes = devices.map(sizeOf);
  if (sizes.some((s) => s !== sizes[0])) {
    throw new Error(`BLKSNAP_E2E_DEVICES: the devices differ in size (${devices.map((d, i) => `${d}=${sizes[i]}`).join(', ')}); give devices of one size`);
  }
  if (sizes[0] < MIN_SIZE) throw new Error(`BLKSNAP_E2E_DEVICES: devices of ${sizes[0]} bytes are too small (at least ${MIN_SIZE})`);
  return { devices, size: sizes[0], source: `BLKSNAP_E2E_DEVICES=${devices.join(',')}`, release: () => {} };
}

export function loopDevices(): DevicePool {
  const loops: LoopDevice[] = [];
  try {
    for (let i = 0; i < DEVICES_NEEDED; i++) loops.push(createLoopDevice({ sizeBytes: LOOP_SIZE }));
  } catch (err) {
    for (const l of loops) l.cleanup();
    throw err;
  }
  return {
    devices: loops.map((l) => l.path),
    size: LOOP_SIZE,
    source: `loop devices ${loops.map((l) => l.path).join(', ')}`,
    release: () => {
      for (const l of loops) {
        try { l.cleanup(); } catch { /* reported by the helper's exit handler */ }
      }
    },
  };
}

export function openDevicePool(env: NodeJS.ProcessEnv = process.env): DevicePool {
  const given = env.BLKSNAP_E2E_DEVICES;
  return given && given.trim() ? devicesFromEnv(given) : loopDevices();
}
