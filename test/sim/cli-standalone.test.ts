/**
 * The standalone flavour of the simulated kernel: `mod` / `module info` and
 * `setlog` (issue 9), and that the reference forms run unchanged on it.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { run, CliResult } from '../unit/cli-harness';
import { toJson } from '../../lib/cli/output';

let tmp: string;
let simDir: string;
const savedEnv = { ...process.env };

async function simState(): Promise<Record<string, any>> {
  const { openSimAdmin } = await import('../../lib/kernel/sim');
  return JSON.parse(toJson(await openSimAdmin(simDir).state()));
}

async function ok(argv: string[]): Promise<CliResult> {
  const r = await run(argv);
  if (r.code !== 0) throw new Error(`blksnap ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-cli-sa-'));
  simDir = path.join(tmp, 'sim');
  process.env.BLKSNAP_KERNEL = 'sim';
  process.env.BLKSNAP_SIM_DIR = simDir;
  process.env.BLKSNAP_SIM_FLAVOUR = 'standalone';
  process.env.BLKSNAP_RUN_DIR = path.join(tmp, 'run');
  process.env.BLKSNAP_CONFIG = path.join(tmp, 'none.conf');
});

afterAll(() => {
  process.env = savedEnv;
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('version shows the modification', async () => {
  const r = await ok(['version']);
  expect(r.stdout).toMatch(/\nkernel: simulated standalone \(\/dev\/veeamblksnap\)\nmodule: [\d.]+\nmodification: standalone \(setlog\)\n$/);
});

test('mod prints the reference shape "NAME : flags -"', async () => {
  expect((await ok(['mod'])).stdout).toBe('standalone : setlog -\n');
  expect((await ok(['module', 'info'])).stdout).toBe('standalone : setlog -\n');
  expect(JSON.parse((await ok(['module', 'info', '--json'])).stdout)).toMatchObject({
    flavour: 'standalone',
    modification: { name: 'standalone', compatibility_flags: 2, flags: ['setlog'] },
  });
});

test('setlog sends the level, the path and its length; clamps; --disable', async () => {
  const log = path.join(tmp, 'module.log');
  await ok(['setlog', '--level', '7', '--filepath', log, '--tz-minuteswest', '-60']);
  let s = await simState();
  expect(s.setlog).toMatchObject({ level: 7, tzMinutesWest: -60, filePath: log, enabled: true });

  const r = await ok(['setlog', '--level', '12', '--filepath', log]);
  expect(r.stderr).toContain('log level 12 clamped to 7');
  s = await simState();
  expect(s.setlog).toMatchObject({ level: 7, tzMinutesWest: new Date().getTimezoneOffset() });

  await ok(['setlog', '-l', '4', '-f', log]);
  expect((await simState()).setlog).toMatchObject({ level: 4 });

  const d = await ok(['setlog', '--disable', '--json']);
  expect(JSON.parse(d.stdout)).toMatchObject({ supported: true, enabled: false, level: null, filepath: null });
  expect((await simState()).setlog).toMatchObject({ enabled: false });
});

test('setlog bad input changes nothing', async () => {
  const before = JSON.stringify(await simState());
  for (const [argv, named] of [
    [['setlog', '--level', '4', '--filepath', 'rel/x.log'], '"rel/x.log"'],
    [['setlog', '--level', '4'], 'missing --filepath'],
    [['setlog', '--level', 'x', '--filepath', '/tmp/a.log'], '"x"'],
    [['setlog', '--disable', '--level', '4'], '--disable'],
    [['setlog', '--level', '4', '--filepath', '/tmp/a.log', '--tz-minuteswest', 'east'], '"east"'],
  ] as [string[], string][]) {
    const r = await run(argv);
    expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
    expect(r.stderr.split('\n')[0]).toContain(named);
  }
  expect(JSON.stringify(await simState())).toBe(before);
});
