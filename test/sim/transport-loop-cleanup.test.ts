/**
 * test/helpers/loop.ts leaves nothing behind: explicit cleanup is idempotent,
 * and the safety net removes loop devices, mounts (thawing a frozen one
 * first) and temp files when a test process exits without cleaning up —
 * on process.exit, on an uncaught exception and on SIGTERM. The helper is
 * run in child processes (compiled with @swc/core, as jest does).
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { transformFileSync } from '@swc/core';
import { cleanupAll, createLoopDevice, loopDevicesOf, mountExt4 } from '../helpers/loop';
import { describeAsRoot } from '../helpers/root';

interface Created { path: string; backingFile: string; mountpoint: string | null }

const isMounted = (mountpoint: string): boolean =>
  fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mountpoint);

const attachedTo = (loopPath: string): string | null => {
  try {
    return fs.readFileSync(`/sys/block/${path.basename(loopPath)}/loop/backing_file`, 'utf8').trim();
  } catch {
    return null;
  }
};

describeAsRoot('test/helpers/loop.ts cleanup', () => {
  let workDir: string;
  let helperJs: string;
  const leftovers: Created[] = [];

  beforeAll(() => {
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-loop-helper-'));
    helperJs = path.join(workDir, 'loop.js');
    const { code } = transformFileSync(path.join(__dirname, '../helpers/loop.ts'), {
      jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
      module: { type: 'commonjs' },
    });
    fs.writeFileSync(helperJs, code);
    fs.writeFileSync(path.join(workDir, 'child.js'), `
      const { execFileSync } = require('child_process');
      const loop = require(${JSON.stringify(helperJs)});
      const mode = process.argv[2];
      const l = loop.createLoopDevice({ sizeBytes: 16 * 1024 * 1024 });
      let mountpoint = null;
      if (mode.includes('mount')) {
        mountpoint = loop.mountExt4(l).mountpoint;
        if (mode.includes('frozen')) execFileSync('fsfreeze', ['--freeze', mountpoint]);
      }
      process.stdout.write(JSON.stringify({ path: l.path, backingFile: l.backingFile, mountpoint }) + '\\n');
      if (mode.startsWith('exit')) process.exit(3);
      if (mode.startsWith('throw')) throw new Error('boom');
      if (mode.startsWith('signal')) setInterval(() => {}, 1000);
    `);
  });

  afterAll(() => {
    // Only if an assertion failed: remove what a child left behind.
    for (const c of leftovers) {
      if (c.mountpoint && isMounted(c.mountpoint)) {
        spawnSync('fsfreeze', ['--unfreeze', c.mountpoint]);
        spawnSync('umount', [c.mountpoint]);
      }
      if (c.mountpoint) fs.rmSync(c.mountpoint, { recursive: true, force: true });
      if (attachedTo(c.path) === c.backingFile) spawnSync('losetup', ['--detach', c.path]);
      fs.rmSync(path.dirname(c.backingFile), { recursive: true, force: true });
    }
    cleanupAll();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  function runChild(mode: string): Promise<{ created: Created; code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(workDir, 'child.js'), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let stderr = '';
      let created: Created | null = null;
      child.stderr.on('data', (d) => { stderr += d; });
      child.stdout.on('data', (d) => {
        out += d;
        if (!created && out.includes('\n')) {
          created = JSON.parse(out.split('\n')[0]) as Created;
          leftovers.push(created);
          if (mode.startsWith('signal')) child.kill('SIGTERM');
        }
      });
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (!created) reject(new Error(`child (${mode}) printed nothing; stderr: ${stderr}`));
        else resolve({ created, code, signal, stderr });
      });
    });
  }

  it('the safety net also works inside jest (in band and in workers), where each test file sees a copy of `process`', () => {
    const jestDir = path.join(workDir, 'jest-leak');
    fs.mkdirSync(jestDir);
    const reportOf = (name: string): string => path.join(jestDir, `${name}.json`);
    for (const name of ['a', 'b']) {
      fs.writeFileSync(path.join(jestDir, `leak-${name}.test.ts`), `
        import * as fs from 'fs';
        import { createLoopDevice } from ${JSON.stringify(path.join(__dirname, '../helpers/loop'))};
        it('creates a loop device and never cleans it up', () => {
          const l = createLoopDevice({ sizeBytes: 4 * 1024 * 1024 });
          fs.writeFileSync(${JSON.stringify(reportOf(name))}, JSON.stringify({ path: l.path, backingFile: l.backingFile, mountpoint: null, pid: process.pid }));
        });
      `);
    }
    const config = {
      rootDir: jestDir,
      testEnvironment: 'node',
      testMatch: ['**/leak-*.test.ts'],
      transform: { '^.+\\.ts$': [require.resolve('@swc/jest'), { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } }] },
    };
    for (const inBand of [true, false]) {
      for (const name of ['a', 'b']) fs.rmSync(reportOf(name), { force: true });
      // A fresh cache each time: with recorded fast timings jest would run in band anyway.
      const cache = path.join(jestDir, `cache-${inBand}`);
      const args = [require.resolve('jest/bin/jest'), '--config', JSON.stringify(config), '--cacheDirectory', cache, inBand ? '--runInBand' : '--maxWorkers=2'];
      const r = spawnSync(process.execPath, args, { cwd: jestDir, encoding: 'utf8' });
      expect({ inBand, status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ inBand, status: 0, stderr: '' });
      for (const name of ['a', 'b']) {
        const created = JSON.parse(fs.readFileSync(reportOf(name), 'utf8')) as Created & { pid: number };
        leftovers.push(created);
        expect({ inBand, ranInJestMainProcess: created.pid === r.pid }).toEqual({ inBand, ranInJestMainProcess: inBand });
        expectGone(created);
      }
    }
  }, 120_000);

  function expectGone(c: Created): void {
    expect(attachedTo(c.path)).not.toBe(c.backingFile);
    expect(fs.existsSync(path.dirname(c.backingFile))).toBe(false);
    if (c.mountpoint) {
      expect(isMounted(c.mountpoint)).toBe(false);
      expect(fs.existsSync(c.mountpoint)).toBe(false);
    }
  }

  it('cleanup() detaches and removes the backing file, and is idempotent', () => {
    const l = createLoopDevice({ sizeBytes: 4 * 1024 * 1024 });
    expect(loopDevicesOf(l.backingFile)).toEqual([l.path]);
    l.cleanup();
    l.cleanup();
    expectGone({ path: l.path, backingFile: l.backingFile, mountpoint: null });
  });

  it('cleanup() after the device was detached by someone else does not touch the device', () => {
    const l = createLoopDevice({ sizeBytes: 4 * 1024 * 1024 });
    spawnSyncOk('losetup', ['--detach', l.path]);
    // Usually gets l's number back (the first free one): the case that matters.
    const other = createLoopDevice({ sizeBytes: 4 * 1024 * 1024 });
    l.cleanup();
    expect(fs.existsSync(path.dirname(l.backingFile))).toBe(false);
    expect(loopDevicesOf(other.backingFile)).toEqual([other.path]);
    other.cleanup();
  });

  it('a mount is unmounted and its directory removed, then the device detached', () => {
    const l = createLoopDevice({ sizeBytes: 16 * 1024 * 1024 });
    const m = mountExt4(l);
    expect(isMounted(m.mountpoint)).toBe(true);
    cleanupAll();
    expectGone({ path: l.path, backingFile: l.backingFile, mountpoint: m.mountpoint });
  });

  it.each([
    ['exit', 'process.exit()', { code: 3, signal: null }],
    ['throw', 'an uncaught exception', { code: 1, signal: null }],
    ['signal', 'SIGTERM', { code: null, signal: 'SIGTERM' }],
    ['exit+mount+frozen', 'process.exit() with a frozen mounted file system', { code: 3, signal: null }],
    ['signal+mount', 'SIGTERM with a mounted file system', { code: null, signal: 'SIGTERM' }],
  ])('the safety net cleans up after %s (%s)', async (mode, _label, how) => {
    const r = await runChild(mode);
    expect({ code: r.code, signal: r.signal }).toEqual(how);
    expectGone(r.created);
  }, 60_000);
});

function spawnSyncOk(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}
