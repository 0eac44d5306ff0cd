/**
 * The end-to-end scenarios, written once. test/e2e runs them on the real
 * module (root, scratch block devices); test/sim/e2e-scenarios*.test.ts runs
 * them on the simulated kernel in `npm test`. Each drives the built CLI as a
 * separate process, like an admin's script, and checks what an admin would
 * check: exit codes, the JSON documents, the bytes of devices and images.
 */
import * as fs from 'fs';
import * as path from 'path';
import { REPO_ROOT } from './common-env';
import type { Environment } from './env';
import type { BackgroundProcess, CommandResult } from './process';
import {
  cbtChanges, cbtInfo, cbtMap, ChangesDoc, collect, createSnapshot, destroySnapshot, listTree, parseCreated, snapshotInfo,
} from './cli';
import { check, equal, exits, fail, firstDifference, firstFileDifference, json, jsonLines, ok, patternBytes, sameBytes, sameFiles, sha256 } from './checks';

export interface Scenario {
  name: string;
  run(env: Environment): Promise<void>;
}

const MiB = 1024 * 1024;
const SECTOR = 512;
/**
 * Tracking block size for a capacity with the default module parameters
 * (blksnap-abi.md §4): from 2^16 bytes, doubled until the block count is at
 * most 2097152 or the shift reaches 26.
 */
function expectedTrackingBlock(capacity: number): number {
  let shift = 16;
  while (Math.ceil(capacity / 2 ** shift) > 2097152 && shift < 26) shift++;
  return 2 ** shift;
}
const ENOSPC = 28;

const TOOL_VERSION: string = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version;

// ---------------------------------------------------------------------------
// version, attach, detach

const versionAndFlavour: Scenario = {
  name: 'version: tool version, kernel flavour and module version',
  async run(env) {
    const r = ok(await env.blksnap(['version', '--json']), 'blksnap version --json');
    const doc = json<any>(r, 'version');
    equal(doc.tool?.version, TOOL_VERSION, 'tool version (package.json)');
    check(doc.kernel, `version --json has no kernel: ${r.stdout}`);
    equal(doc.kernel.kind, env.name === 'sim' ? 'sim' : 'kernel', 'kernel kind');
    equal(doc.kernel.flavour, env.flavour, 'kernel flavour');
    check(/^\d+\.\d+\.\d+\.\d+$/.test(doc.module?.version ?? ''), `module version is not N.N.N.N: ${JSON.stringify(doc.module)}`);
    if (env.flavour === 'standalone') {
      // IOCTL_BLKSNAP_MOD exists only on the standalone module (§7: name "standalone", flags 0x2).
      check(doc.module.modification && typeof doc.module.modification.name === 'string', `standalone module without modification info: ${r.stdout}`);
    } else {
      equal(doc.module.modification, null, 'upstream module has no IOCTL_BLKSNAP_MOD');
    }
    const text = ok(await env.blksnap(['version']), 'blksnap version');
    check(text.stdout.split('\n')[0] === `blksnap ${TOOL_VERSION}`, `first line of blksnap version is not "blksnap ${TOOL_VERSION}": ${text.stdout}`);
    check(text.stdout.includes(env.flavour), `blksnap version does not name the flavour ${env.flavour}: ${text.stdout}`);
    const only = ok(await env.blksnap(['--version']), 'blksnap --version');
    equal(only.stdout.trim(), TOOL_VERSION, 'blksnap --version prints only the tool version');
  },
};

const attachTwiceDetach: Scenario = {
  name: 'attach twice (second reports EALREADY, exit 0), cbt info after attach, detach',
  async run(env) {
    const [dev] = await env.devices(1);
    const first = json<any>(ok(await env.blksnap(['attach', dev, '--json']), 'first attach'), 'attach');
    equal(first.devices?.[0]?.already_attached, false, 'first attach: already_attached');
    const info = await cbtInfo(env, dev);
    equal(info.changes_number, 0, 'changes_number right after attach');
    equal(info.device_capacity, env.deviceSize, 'device_capacity');
    equal(info.block_size, expectedTrackingBlock(env.deviceSize), 'tracking block size (module defaults, §4)');
    equal(info.block_count, Math.ceil(env.deviceSize / info.block_size), 'block_count');

    const second = json<any>(ok(await env.blksnap(['attach', dev, '--json']), 'second attach (EALREADY is success)'), 'attach');
    equal(second.devices?.[0]?.already_attached, true, 'second attach: already_attached');
    const text = ok(await env.blksnap(['attach', dev]), 'third attach, text');
    check(/already attached/.test(text.stdout), `text attach of an attached device does not say "already attached": ${text.stdout}`);
    const ref = ok(await env.blksnap(['attach', '--device', dev]), 'reference form attach --device');
    check(/Already was attached/.test(ref.stdout), `reference attach does not print "Already was attached": ${ref.stdout}`);
    // The tracker survives a second attach: same generation.
    equal((await cbtInfo(env, dev)).generation_id, info.generation_id, 'generation id after the second attach');

    ok(await env.blksnap(['detach', dev]), 'detach');
    exits(await env.blksnap(['cbt', 'info', dev]), 5, 'cbt info after detach (not tracked)');
    exits(await env.blksnap(['detach', dev]), 5, 'detach of a device that is not attached');
    const again = json<any>(ok(await env.blksnap(['attach', dev, '--json']), 'attach after detach'), 'attach');
    equal(again.devices?.[0]?.already_attached, false, 'attach after detach: already_attached');
    check((await cbtInfo(env, dev)).generation_id !== info.generation_id, 'a new tracker after detach + attach has a new generation id');
  },
};

// ---------------------------------------------------------------------------
// ext4 on one device, four kinds of difference storage

type StorageKind = 'directory' | 'file' | 'block device' | 'tmpfs';

async function diffStorageFor(env: Environment, kind: StorageKind): Promise<{ path: string; limit: string }> {
  switch (kind) {
    case 'directory':
      return { path: await env.otherFsDir('diffstorage'), limit: '32M' };
    case 'tmpfs':
      return { path: await env.tmpfsDir(), limit: '32M' };
    case 'file': {
      const file = path.join(await env.otherFsDir('diffstorage'), 'diff-storage.img');
      fs.writeFileSync(file, '');
      return { path: file, limit: '32M' };
    }
    case 'block device': {
      const dev = await env.storageDevice();
      return { path: dev, limit: String(env.deviceSize) };
    }
  }
}

function ext4Snapshot(kind: StorageKind, where: string): Scenario {
  return {
    name: `ext4 snapshot, diff storage ${where}: image is fsck-clean, mounts read-only, holds the files as at take time`,
    async run(env) {
      const [dev] = await env.devices(1);
      await env.mkfs(dev);
      const storage = await diffStorageFor(env, kind);
      const fsys = await env.openFs(dev);
      const atTake = new Map<string, Buffer>([
        ['alpha.bin', patternBytes(1 * MiB, 1)],
        ['beta.bin', patternBytes(300 * 1024 + 17, 2)],
        ['gamma.txt', Buffer.from('the quick brown fox\n'.repeat(100))],
      ]);
      for (const [name, data] of atTake) await fsys.writeFile(name, data);

      const snap = await fsys.quiesced(() => createSnapshot(env, [dev], { diffStorage: storage.path, limit: storage.limit }));
      const image = snap.images.get(dev) as string;

      // Keep writing to the original: replace a file, add one.
      await fsys.writeFile('alpha.bin', patternBytes(1 * MiB, 11));
      await fsys.writeFile('delta.bin', patternBytes(2 * MiB, 12));

      const info = await snapshotInfo(env, dev);
      equal(info.doc.error_code, 0, 'snapshot info error_code');
      equal(info.doc.image, image, 'snapshot info image path');

      const fsck = await env.fsckImage(image);
      equal(fsck.code, 0, `e2fsck -fn of the image exit code (stdout: ${fsck.stdout.trim().slice(-400)})`);
      const read = await env.readImageFiles(image, [...atTake.keys(), 'delta.bin']);
      for (const [name, data] of atTake) {
        const got = read.files.get(name);
        check(got, `${name} missing from the image (read with ${read.how})`);
        equal(sha256(got), sha256(data), `sha256 of ${name} in the image (read with ${read.how})`);
      }
      check(!read.files.has('delta.bin'), 'delta.bin, written after the take, is in the image');

      if (kind === 'file') {
        // §7: an existing empty file is fallocated to the limit at once.
        equal(fs.statSync(storage.path).size, 32 * MiB, 'size of the difference storage file after create');
      }
      await fsys.close();
      await destroySnapshot(env, snap.id);
      check(!(await collect(env)).includes(snap.id), 'the destroyed snapshot is still listed by snapshot_collect');
      // A tracked device in no snapshot: the kernel answers SNAPSHOTINFO with no image (or the tool says "not found").
      const gone = await env.blksnap(['snapshot', 'info', dev, '--json']);
      check(gone.code === 5 || (gone.code === 0 && !json<any>(gone, 'snapshot info').image), `snapshot info after destroy still shows an image: exit ${gone.code} ${gone.stdout}`);
    },
  };
}

// ---------------------------------------------------------------------------
// several devices, conflicts

const twoDevicesCoherent: Scenario = {
  name: 'two devices in one snapshot: both images hold the data as at the one take',
  async run(env) {
    const [a, b] = await env.devices(2);
    const storage = await env.otherFsDir('diffstorage');
    await env.writeDevice(a, 0, patternBytes(2 * MiB, 21), 'before take');
    await env.writeDevice(b, 0, patternBytes(2 * MiB, 22), 'before take');
    const snap = await createSnapshot(env, [a, b], { diffStorage: storage, limit: '32M' });
    equal(snap.images.size, 2, 'number of images');
    check(snap.images.get(a) !== snap.images.get(b), 'both devices got the same image path');
    await env.writeDevice(a, 0, patternBytes(2 * MiB, 31), 'after take');
    await env.writeDevice(b, MiB, patternBytes(1 * MiB, 32), 'after take');

    for (const [dev, seed] of [[a, 21], [b, 22]] as const) {
      const img = await env.readImage(snap.images.get(dev) as string, 0, 2 * MiB);
      check(img.data, `reading the image of ${dev} failed: ${img.errno}`);
      sameBytes(img.data, patternBytes(2 * MiB, seed), `image of ${dev}, first 2 MiB`);
      equal(await env.imageSize(snap.images.get(dev) as string), env.deviceSize, `image size of ${dev}`);
    }
    sameBytes(await env.readDevice(a, 0, 2 * MiB), patternBytes(2 * MiB, 31), `original ${a} after the take`);
    const listed = json<any>(ok(await env.blksnap(['snapshot', 'list', '--json']), 'snapshot list'), 'snapshot list');
    const mine = (listed.snapshots ?? []).find((s: any) => s.id === snap.id);
    check(mine, `snapshot list does not show ${snap.id}: ${JSON.stringify(listed)}`);
    const listedDevices = (mine.devices ?? []).map((d: any) => (typeof d === 'string' ? d : d.device)).sort();
    equal(JSON.stringify(listedDevices), JSON.stringify([a, b].sort()), 'devices snapshot list names for the snapshot');
    for (const dev of [a, b]) equal((await cbtInfo(env, dev)).changes_number, 1, `changes_number of ${dev} after one take`);
    await destroySnapshot(env, snap.id);
  },
};

const deviceInAnotherSnapshot: Scenario = {
  name: 'a device already in another snapshot: EBUSY, exit 6, and no second snapshot is left',
  async run(env) {
    const [dev] = await env.devices(1);
    const first = await createSnapshot(env, [dev], { diffStorage: await env.otherFsDir('ds1'), limit: '16M' });
    const before = await collect(env);
    const r = exits(
      await env.blksnap(['snapshot', 'create', dev, '--diff-storage', await env.otherFsDir('ds2'), '--limit', '16M']),
      6, 'snapshot create of a device that is in another snapshot', /EBUSY|busy|another snapshot/i,
    );
    check(r.stderr.includes(dev) || r.stderr.includes(first.id), `the error names neither the device nor the holding snapshot: ${r.stderr}`);
    equal(JSON.stringify(await collect(env)), JSON.stringify(before), 'snapshots after the refused create (the new one must be destroyed)');
    // The reference form behaves the same (and prints nothing on stdout).
    const ref = exits(
      await env.blksnap(['snapshot_create', '--device', dev, '--file', await env.otherFsDir('ds3'), '--limit', '16M']),
      6, 'snapshot_create (reference form) of a device in another snapshot',
    );
    equal(ref.stdout.trim(), '', 'reference snapshot_create stdout on failure');
    equal(JSON.stringify(await collect(env)), JSON.stringify(before), 'snapshots after the refused reference create');
    // The first snapshot is unharmed.
    equal((await snapshotInfo(env, dev)).doc.error_code, 0, 'error_code of the first snapshot');
    await destroySnapshot(env, first.id);
  },
};

/** A difference storage on a snapshotted device is a bad --diff-storage argument: exit 2 (usage), before any request. */
function refused(r: CommandResult, what: string): CommandResult {
  check(r.code === 2, `${what}: expected the tool's refusal (exit 2), got exit ${r.code}: ${r.stderr.trim()}`);
  check(/diff|storage/i.test(r.stderr), `${what}: the message does not mention the difference storage: ${r.stderr.trim()}`);
  return r;
}

const diffStorageOnSnapshottedDevice: Scenario = {
  name: 'diff storage on a device being snapshotted: refused by the tool before the kernel sees it',
  async run(env) {
    const [dev] = await env.devices(1);
    const dirOnDev = await env.fsDirOn(dev);
    const before = await collect(env);
    const inDir = refused(
      await env.blksnap(['snapshot', 'create', dev, '--diff-storage', dirOnDev, '--limit', '16M']),
      'snapshot create with the diff storage in a directory on the device itself',
    );
    check(inDir.stderr.includes(dirOnDev) && inDir.stderr.includes(dev), `the error does not name both the path and the device: ${inDir.stderr}`);
    refused(
      await env.blksnap(['snapshot', 'create', dev, '--diff-storage', dev, '--limit', '16M']),
      'snapshot create with the device itself as diff storage',
    );
    const fileOnDev = path.join(dirOnDev, 'ds.img');
    fs.writeFileSync(fileOnDev, '');
    refused(
      await env.blksnap(['snapshot_create', '--device', dev, '--file', fileOnDev, '--limit', '16M']),
      'reference snapshot_create with the diff storage file on the device',
    );
    equal(JSON.stringify(await collect(env)), JSON.stringify(before), 'snapshots after the refusals (none may have been created)');
    // Bad input changes nothing: not even change tracking was started.
    exits(await env.blksnap(['cbt', 'info', dev]), 5, 'cbt info after the refusals (the device must not have been attached)');
  },
};

// ---------------------------------------------------------------------------
// change tracking

async function takeAndDestroy(env: Environment, devices: string[], storage: string): Promise<void> {
  const snap = await createSnapshot(env, devices, { diffStorage: storage, limit: '16M' });
  await destroySnapshot(env, snap.id);
}

const cbtChangesNumber: Scenario = {
  name: 'CBT: changes_number grows by one per take, generation id stays',
  async run(env) {
    const [dev] = await env.devices(1);
    const storage = await env.otherFsDir('diffstorage');
    ok(await env.blksnap(['attach', dev]), 'attach');
    const start = await cbtInfo(env, dev);
    equal(start.changes_number, 0, 'changes_number after attach');
    for (let i = 1; i <= 3; i++) {
      await env.writeDevice(dev, i * MiB, patternBytes(64 * 1024, 100 + i));
      await takeAndDestroy(env, [dev], storage);
      const info = await cbtInfo(env, dev);
      equal(info.changes_number, i, `changes_number after take ${i}`);
      equal(info.generation_id, start.generation_id, `generation id after take ${i}`);
    }
  },
};

/** Blocks whose map byte is greater than `since`. */
function changedBlocks(map: Buffer, since: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < map.length; i++) if (map[i] > since) out.push(i);
  return out;
}

const cbtExactBlocks: Scenario = {
  name: 'CBT: the map marks exactly the blocks written with dd oflag=direct; cbt changes --since lists them',
  async run(env) {
    const [dev] = await env.devices(1);
    const storage = await env.otherFsDir('diffstorage');
    const tmp = await env.otherFsDir('maps');
    ok(await env.blksnap(['attach', dev]), 'attach');
    await takeAndDestroy(env, [dev], storage); // writes before the first take all show as 1 (§7)
    const before = await cbtInfo(env, dev);
    const c1 = before.changes_number;
    const bs = before.block_size;

    const lastBlock = before.block_count - 1;
    // §7 granularity: 4 KiB inside block 10 marks block 10 only; 8 KiB across
    // a boundary marks both blocks; the last sector marks the last block.
    const writes: [number, number][] = [
      [10 * bs, 4096],
      [20 * bs - 4096, 8192],
      [30 * bs, bs],
      [env.deviceSize - SECTOR, SECTOR],
    ];
    for (const [off, len] of writes) await env.writeDevice(dev, off, patternBytes(len, off), `expect block(s) ${Math.floor(off / bs)}..${Math.floor((off + len - 1) / bs)}`);
    const expected = [10, 19, 20, 30, lastBlock];

    // Not visible before the next take (§7).
    equal(JSON.stringify(changedBlocks(await cbtMap(env, dev, tmp), c1)), '[]', `blocks > ${c1} in the map before the next take`);

    const snap = await createSnapshot(env, [dev], { diffStorage: storage, limit: '16M' });
    const info = await cbtInfo(env, dev);
    equal(info.changes_number, c1 + 1, 'changes_number after the take');
    const map = await cbtMap(env, dev, tmp);
    equal(map.length, info.block_count, 'map length');
    equal(JSON.stringify(changedBlocks(map, c1)), JSON.stringify(expected), `blocks whose map byte is > ${c1}`);
    for (const b of expected) equal(map[b], c1 + 1, `map byte of block ${b}`);

    const changes = json<ChangesDoc>(ok(await cbtChanges(env, dev, c1, info.generation_id), `cbt changes --since ${c1}`), 'cbt changes');
    const spb = bs / SECTOR;
    const expectedRanges = [
      { offset: 10 * spb, count: spb },
      { offset: 19 * spb, count: 2 * spb },
      { offset: 30 * spb, count: spb },
      { offset: lastBlock * spb, count: env.deviceSize / SECTOR - lastBlock * spb },
    ];
    equal(JSON.stringify(changes.ranges), JSON.stringify(expectedRanges), 'changed ranges (sectors, merged)');
    equal(JSON.stringify(json<ChangesDoc>(ok(await cbtChanges(env, dev, c1 + 1), 'cbt changes --since latest'), 'cbt changes').ranges), '[]', 'changes since the latest take');
    const text = ok(await env.blksnap(['cbt', 'changes', dev, '--since', String(c1)]), 'cbt changes, text');
    equal(text.stdout.trim(), expectedRanges.map((r) => `${r.offset}:${r.count}`).join('\n'), 'cbt changes text lines');
    exits(await cbtChanges(env, dev, c1, '00000000-0000-4000-8000-000000000000'), 9, 'cbt changes with another generation id');
    await destroySnapshot(env, snap.id);
  },
};

const cbtMarkDirty: Scenario = {
  name: 'CBT: mark-dirty stamps the given ranges; bad ranges are refused and change nothing',
  async run(env) {
    const [dev] = await env.devices(1);
    const storage = await env.otherFsDir('diffstorage');
    const tmp = await env.otherFsDir('maps');
    ok(await env.blksnap(['attach', dev]), 'attach');
    await takeAndDestroy(env, [dev], storage);
    await takeAndDestroy(env, [dev], storage);
    const tracker = await cbtInfo(env, dev);
    const c = tracker.changes_number;
    const spb = tracker.block_size / SECTOR;
    const before = await cbtMap(env, dev, tmp);

    exits(await env.blksnap(['cbt', 'mark-dirty', dev, '--range', `${40 * spb}:0`]), 2, 'mark-dirty with count 0');
    exits(await env.blksnap(['cbt', 'mark-dirty', dev, '--range', `${env.deviceSize / SECTOR}:8`]), 2, 'mark-dirty past the end');
    sameBytes(await cbtMap(env, dev, tmp), before, 'map after refused mark-dirty');

    ok(await env.blksnap(['cbt', 'mark-dirty', dev, '--range', `${40 * spb}:1`, '--range', `${50 * spb - 1}:2`]), 'mark-dirty');
    // CBTDIRTY stamps the read map with `previous` (the current changes_number) ...
    const after = await cbtMap(env, dev, tmp);
    for (const b of [40, 49, 50]) equal(after[b], c, `read-map byte of block ${b} right after mark-dirty`);
    // ... and the live map with `active`, so the next take reports them as changed.
    const snap = await createSnapshot(env, [dev], { diffStorage: storage, limit: '16M' });
    const map = await cbtMap(env, dev, tmp);
    equal(JSON.stringify(changedBlocks(map, c)), JSON.stringify([40, 49, 50]), `blocks > ${c} after mark-dirty and a take`);
    await destroySnapshot(env, snap.id);
  },
};

// ---------------------------------------------------------------------------
// overflow

const overflow: Scenario = {
  name: 'overflow: small --limit and heavy writes give one corrupted event (ENOSPC), error_code -28, EIO on the image; the original is intact',
  async run(env) {
    const [dev] = await env.devices(1);
    const storage = await env.otherFsDir('diffstorage');
    const snap = await createSnapshot(env, [dev], { diffStorage: storage, limit: '2M' });
    const image = snap.images.get(dev) as string;
    const watch = env.startBlksnap(['snapshot', 'watch', snap.id, '--json', '--timeout', '60000']);
    const heavy = Math.min(32 * MiB, env.deviceSize);
    const data = patternBytes(heavy, 41);
    for (let off = 0; off < heavy; off += 4 * MiB) await env.writeDevice(dev, off, data.subarray(off, off + 4 * MiB), 'heavy writes over a 2 MiB diff storage');

    // Copy-on-write flushes in batches (§7): the overflow is noticed a little after the storage is full.
    let info = await snapshotInfo(env, dev);
    for (let i = 0; i < 20 && info.doc.error_code === 0; i++) {
      await new Promise((r) => setTimeout(r, 250));
      info = await snapshotInfo(env, dev);
    }
    equal(info.doc.error_code, -ENOSPC, 'snapshot info error_code after the overflow');
    equal(info.result.code, 8, 'snapshot info exit code for an overflowed snapshot');

    const read = await env.readImage(image, 0, MiB);
    equal(read.errno, 'EIO', 'reading the overflowed image');
    sameBytes(await env.readDevice(dev, 0, heavy), data, 'the original device after the overflow');

    await watch.waitFor((out) => out.includes('"corrupted"') || out.includes('"no_space"'), 'the overflow event from snapshot watch', 30_000);
    await destroySnapshot(env, snap.id);
    const w = await watch.done;
    const lines = jsonLines<any>(w.stdout, 'snapshot watch');
    const events = lines.filter((l) => l.type === 'event');
    const corrupted = events.filter((e) => e.code === 'corrupted');
    equal(corrupted.length, 1, `corrupted events (all events: ${JSON.stringify(events)})`);
    equal(corrupted[0].err_code, ENOSPC, 'err_code of the corrupted event (§7: positive ENOSPC)');
    equal(events.filter((e) => e.code === 'no_space').length, 0, 'no_space events (§7: an overflow arrives as one corrupted event)');
    equal(w.code, 8, 'snapshot watch exit code after a corrupted event');
    equal(lines[lines.length - 1]?.type, 'end', 'last line of snapshot watch');
  },
};

// ---------------------------------------------------------------------------
// backups

function backupArgs(dev: string, repo: string, storage: string, limit: string, extra: string[] = []): string[] {
  return ['backup', dev, '--repo', repo, '--diff-storage', storage, '--limit', limit, ...extra, '--json'];
}

const overflowDuringBackup: Scenario = {
  name: 'overflow during a backup: the backup fails (exit 8), commits nothing, and the original is intact',
  async run(env) {
    const [dev] = await env.devices(1);
    const repo = path.join(await env.otherFsDir('repo'), 'repo');
    const storage = await env.otherFsDir('diffstorage');
    await env.writeDevice(dev, 0, patternBytes(4 * MiB, 51));
    ok(await env.blksnap(backupArgs(dev, repo, storage, '32M', ['--mode', 'full'])), 'first (full) backup');
    const before = listTree(repo);

    const heavy = Math.min(32 * MiB, env.deviceSize);
    // The post-hook runs right after the take: heavy writes then overflow the 2 MiB storage before the copy.
    const hook = env.writeCommand(dev, 0, heavy, 52);
    const r = exits(await env.blksnap(backupArgs(dev, repo, storage, '2M', ['--post-hook', hook])), 8, 'backup whose snapshot overflows');
    check(/overflow|difference storage/i.test(r.stderr) && /--limit/.test(r.stderr), `the error does not say the storage overflowed and how to size --limit: ${r.stderr}`);
    const after = listTree(repo);
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k) && !/lock/i.test(k));
    equal(changed.join(', '), '', 'repository files changed by the failed backup');
    ok(await env.blksnap(['verify', '--repo', repo]), 'verify after the failed backup');
    equal(JSON.stringify(await collect(env)), '[]', 'snapshots left after the failed backup');
    sameBytes(await env.readDevice(dev, 0, heavy), patternBytes(heavy, 52), 'the original device after the failed backup');
  },
};

const fullIncrementalRestore: Scenario = {
  name: 'full + incremental backup, restore of each point byte-identical to the image read at backup time',
  async run(env) {
    const [dev] = await env.devices(1);
    const work = await env.otherFsDir('backup');
    const repo = path.join(work, 'repo');
    const storage = await env.otherFsDir('diffstorage');
    const fill = Math.min(env.deviceSize, 32 * MiB);
    await env.writeDevice(dev, 0, patternBytes(fill, 61), 'fill the device (up to 32 MiB)');

    // The post-hook runs after the take: it copies the image as the backup
    // sees it, then writes to the original, so the device no longer equals it.
    const image1 = path.join(work, 'image-at-full.img');
    const hook1 = `${env.copyImageCommand(dev, image1)} && ${env.writeCommand(dev, 3 * MiB, MiB, 62)}`;
    const full = json<any>(ok(await env.blksnap(backupArgs(dev, repo, storage, '32M', ['--mode', 'auto', '--post-hook', hook1])), 'full backup'), 'backup');
    const fullDev = full.devices?.[0];
    equal(fullDev?.mode, 'full', `mode of the first backup (reason: ${fullDev?.reason})`);

    await env.writeDevice(dev, 10 * MiB, patternBytes(200 * 1024, 63), 'changes for the incremental');
    const image2 = path.join(work, 'image-at-incremental.img');
    const hook2 = `${env.copyImageCommand(dev, image2)} && ${env.writeCommand(dev, 12 * MiB, MiB, 64)}`;
    const incr = json<any>(ok(await env.blksnap(backupArgs(dev, repo, storage, '32M', ['--mode', 'incremental', '--post-hook', hook2])), 'incremental backup'), 'backup');
    const incrDev = incr.devices?.[0];
    equal(incrDev?.mode, 'incremental', `mode of the second backup (reason: ${incrDev?.reason})`);
    // Changed since the full's take: the hook's 1 MiB at 3 MiB (16 blocks) and
    // 200 KiB at 10 MiB (4 blocks); the second hook wrote after this take.
    equal(incrDev?.changed_blocks, 20, 'tracking blocks copied by the incremental');

    ok(await env.blksnap(['verify', '--repo', repo]), 'verify');
    equal(fs.statSync(image1).size, env.deviceSize, 'size of the image copied at the full backup');
    check(firstFileDifference(image1, image2) >= 0, 'the two images are identical: the test could not tell the points apart');
    const restored1 = path.join(work, 'restore-full.img');
    const restored2 = path.join(work, 'restore-latest.img');
    ok(await env.blksnap(['restore', '--repo', repo, '--device', dev, '--point', String(fullDev.point), '--to', restored1]), 'restore of the full point');
    ok(await env.blksnap(['restore', '--repo', repo, '--device', dev, '--to', restored2]), 'restore of the newest point');
    sameFiles(restored1, image1, 'restored full point vs the image at the full backup');
    sameFiles(restored2, image2, 'restored newest point vs the image at the incremental backup');
    // The second hook wrote pattern 64 at 12 MiB after the take: on the device, not in the image.
    sameBytes(await env.readDevice(dev, 12 * MiB, MiB), patternBytes(MiB, 64), 'the device where the second hook wrote');
    check(firstDifference(readFileRange(image2, 12 * MiB, MiB), patternBytes(MiB, 64)) >= 0, 'the image holds what the hook wrote after the take');
    equal(JSON.stringify(await collect(env)), '[]', 'snapshots left after the backups');
  },
};

// ---------------------------------------------------------------------------
// interruptions

const destroyWhileReading: Scenario = {
  name: 'destroy while an image is being read: destroy succeeds, the reader gets an error or a short read, not the data',
  async run(env) {
    const [dev] = await env.devices(1);
    const storage = await env.otherFsDir('diffstorage');
    const snap = await createSnapshot(env, [dev], { diffStorage: storage, limit: '16M' });
    const image = snap.images.get(dev) as string;
    const go = path.join(await env.otherFsDir('reader'), 'go');
    const reader = env.startImageReader(image, go);
    await reader.waitFor((out) => /^opened/m.test(out), 'the reader to open the image and read its first MiB', 30_000);
    await destroySnapshot(env, snap.id);
    fs.writeFileSync(go, '');
    const r = await reader.done;
    const m = /^result rc=(\d+) bytes=(\d+)/m.exec(r.stdout);
    check(m, `the reader printed no result: ${r.stdout} ${r.stderr}`);
    const [rc, bytes] = [Number(m[1]), Number(m[2])];
    check(rc !== 0 || bytes < env.deviceSize - MiB, `the reader read the whole image after destroy (rc ${rc}, ${bytes} bytes)`);
    check(!(await collect(env)).includes(snap.id), 'the snapshot is still listed');
    check(!(await env.imageExists(image)), `the image ${image} still exists after destroy`);
  },
};

const sigtermBackup: Scenario = {
  name: 'SIGTERM of a running backup: exit 143, snapshot destroyed, nothing committed, repository verifies',
  async run(env) {
    const [dev] = await env.devices(1);
    const work = await env.otherFsDir('backup');
    const repo = path.join(work, 'repo');
    const storage = await env.otherFsDir('diffstorage');
    await env.writeDevice(dev, 0, patternBytes(4 * MiB, 71));
    ok(await env.blksnap(backupArgs(dev, repo, storage, '32M')), 'first backup');
    const before = listTree(repo);
    const marker = path.join(work, 'hook-running');
    const backup = env.startBlksnap(backupArgs(dev, repo, storage, '32M', ['--post-hook', `echo $$ > ${marker}; exec sleep 20`]));
    await waitForHook(backup, marker, 60_000);
    check((await collect(env)).length === 1, 'the running backup holds no snapshot');
    backup.signal('SIGTERM');
    const r = await backup.done;
    // Whether the tool ends its hook on SIGTERM is not specified; end it here either way.
    if (killHook(marker)) env.transcript.note('post-hook still running after the backup exited', 'killed by the test');
    equal(r.code, 143, `exit code of the backup after SIGTERM (signal ${r.signal})`);
    equal(JSON.stringify(await collect(env)), '[]', 'snapshots left after SIGTERM');
    const after = listTree(repo);
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k) && !/lock/i.test(k));
    equal(changed.join(', '), '', 'repository files changed by the interrupted backup');
    ok(await env.blksnap(['verify', '--repo', repo]), 'verify after SIGTERM');
    ok(await env.blksnap(backupArgs(dev, repo, storage, '32M')), 'the next backup after SIGTERM');
  },
};

const cleanupAfterSigkill: Scenario = {
  name: 'cleanup after SIGKILL: destroys the snapshot the killed backup left, and only that one',
  async run(env) {
    const [dev, other] = await env.devices(2);
    const work = await env.otherFsDir('backup');
    const repo = path.join(work, 'repo');
    const storage = await env.otherFsDir('diffstorage');
    await env.writeDevice(dev, 0, patternBytes(4 * MiB, 81));
    // A snapshot this tool did not record (another records directory): cleanup must leave it alone.
    const foreignRun = await env.otherFsDir('foreign-run');
    const foreign = parseCreated(ok(await env.blksnap(['snapshot', 'create', other, '--diff-storage', storage, '--limit', '16M', '--json'], { env: { BLKSNAP_RUN_DIR: foreignRun } }), 'snapshot with another records directory'));

    const marker = path.join(work, 'hook-running');
    const backup = env.startBlksnap(backupArgs(dev, repo, storage, '32M', ['--post-hook', `echo $$ > ${marker}; exec sleep 30`]));
    await waitForHook(backup, marker, 60_000);
    backup.signal('SIGKILL', true);
    const k = await backup.done;
    if (killHook(marker)) env.transcript.note('post-hook orphaned by the SIGKILL', 'killed by the test');
    equal(k.signal, 'SIGKILL', 'how the backup ended');
    const left = (await collect(env)).filter((id) => id !== foreign.id);
    equal(left.length, 1, 'snapshots the killed backup left');

    const c = json<any>(ok(await env.blksnap(['cleanup', '--json']), 'cleanup'), 'cleanup');
    equal(JSON.stringify(c.destroyed_snapshots), JSON.stringify([left[0]]), 'snapshots cleanup reports destroyed');
    equal(JSON.stringify(await collect(env)), JSON.stringify([foreign.id]), 'snapshots after cleanup (only the foreign one)');
    ok(await env.blksnap(['verify', '--repo', repo]), 'verify after SIGKILL and cleanup');
    ok(await env.blksnap(backupArgs(dev, repo, storage, '32M')), 'a backup after the SIGKILL (the dead lock is not held)');
    await destroySnapshot(env, foreign.id);
  },
};

const cleanupKeepsCreatedSnapshots: Scenario = {
  name: 'cleanup leaves alone a snapshot that `snapshot create` made on purpose (its process ended normally)',
  async run(env) {
    const [dev] = await env.devices(1);
    const snap = await createSnapshot(env, [dev], { diffStorage: await env.otherFsDir('diffstorage'), limit: '16M' });
    const c = json<any>(ok(await env.blksnap(['cleanup', '--json']), 'cleanup'), 'cleanup');
    check(!(c.destroyed_snapshots ?? []).includes(snap.id), `cleanup reports destroying ${snap.id}, made by \`snapshot create\` (not left by a killed process): ${JSON.stringify(c)}`);
    check((await collect(env)).includes(snap.id), `cleanup destroyed ${snap.id}, made by \`snapshot create\` (not left by a killed process)`);
    await destroySnapshot(env, snap.id);
  },
};

function readFileRange(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = fs.readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** Ends the hook whose pid is in `marker` (it execs sleep); true when it was still running. */
function killHook(marker: string): boolean {
  const pid = Number(fs.readFileSync(marker, 'utf8').trim());
  if (!(pid > 1)) return false;
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** Waits for the hook of `proc` to create `file`; fails at once when `proc` ends first. */
async function waitForHook(proc: BackgroundProcess, file: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  void proc.done.then(() => { ended = true; });
  while (!fs.existsSync(file)) {
    if (ended) {
      const r = await proc.done;
      fail(`the backup ended (exit ${r.code ?? r.signal}) before its post-hook ran: ${r.stderr.trim()}`);
    }
    if (Date.now() > deadline) fail(`${file} did not appear within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const scenarios: Scenario[] = [
  versionAndFlavour,
  attachTwiceDetach,
  ext4Snapshot('directory', 'in a directory on another filesystem'),
  ext4Snapshot('file', 'as an existing regular file'),
  ext4Snapshot('block device', 'as a block device'),
  ext4Snapshot('tmpfs', 'on tmpfs'),
  twoDevicesCoherent,
  deviceInAnotherSnapshot,
  diffStorageOnSnapshottedDevice,
  cbtChangesNumber,
  cbtExactBlocks,
  cbtMarkDirty,
  overflow,
  overflowDuringBackup,
  fullIncrementalRestore,
  destroyWhileReading,
  sigtermBackup,
  cleanupAfterSigkill,
  cleanupKeepsCreatedSnapshots,
];
