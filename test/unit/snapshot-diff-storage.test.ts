/**
 * Which difference storage placements conflict with the devices being
 * snapshotted: the device itself, its parent disk, or one of its partitions
 * (blksnap-abi.md §7: the kernel does not protect against any of these).
 */
import type { DeviceIdentity } from '../../lib/kernel/types';
import { conflictingDevice } from '../../lib/snapshot/diff-storage';

const dev = (path: string, major: number, minor: number, parent: string | null = null): DeviceIdentity =>
  ({ path, major, minor, size: 1n << 30n, stableId: null, parent });

const sda = dev('/dev/sda', 8, 0);
const sda1 = dev('/dev/sda1', 8, 1, '/dev/sda');
const sda2 = dev('/dev/sda2', 8, 2, '/dev/sda');
const sdb = dev('/dev/sdb', 8, 16);

test.each([
  ['on the snapshotted partition itself', sda1, [sda1], sda1],
  ['on a partition of a snapshotted disk', sda1, [sda], sda],
  ['on the whole disk of a snapshotted partition', sda, [sda1], sda1],
  ['same major:minor under another name', dev('/dev/block/8:1', 8, 1), [sda1], sda1],
  ['on a sibling partition', sda2, [sda1], null],
  ['on another disk', sdb, [sda, sda1], null],
  ['on no block device (tmpfs)', null, [sda], null],
] as const)('storage %s', (_what, storage, devices, expected) => {
  expect(conflictingDevice(storage, devices)).toBe(expected);
});
