/**
 * bin/blksnap ends the process itself once the command is done (an abandoned
 * WAIT_EVENT must not keep it alive), so it has to wait for stdout/stderr to
 * drain first: output larger than a pipe buffer, read slowly, must arrive
 * whole, and byte for byte what the same command writes to a file.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BIN } from '../unit/cli-harness';

let tmp: string;
let env: NodeJS.ProcessEnv;
let disk: string;

/** Runs bin/blksnap with stdout to a pipe that nobody reads for `stallMs`, then drains it in small reads. */
function runThroughSlowPipe(argv: string[], stallMs: number): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const parts: Buffer[] = [];
    let stderr = '';
    child.stdout.pause();
    child.stdout.on('data', (b: Buffer) => {
      parts.push(b);
      // read in small steps so the writer keeps finding the pipe full
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 2);
    });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    setTimeout(() => child.stdout.resume(), stallMs);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(parts), stderr }));
  });
}

function runToFile(argv: string[], file: string): number | null {
  const fd = fs.openSync(file, 'w');
  try {
    return spawnSync(process.execPath, [BIN, ...argv], { env, stdio: ['ignore', fd, 'pipe'] }).status;
  } finally {
    fs.closeSync(fd);
  }
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-launcher-'));
  env = {
    ...process.env,
    BLKSNAP_KERNEL: 'sim',
    BLKSNAP_SIM_DIR: path.join(tmp, 'sim'),
    BLKSNAP_RUN_DIR: path.join(tmp, 'run'),
    BLKSNAP_CONFIG: path.join(tmp, 'none.conf'),
    BLKSNAP_SIM_FLAVOUR: 'upstream',
  };
  disk = path.join(tmp, 'big.img');
  // 16 GiB sparse: 262,144 tracking blocks, so the map is 256 KiB raw and ~350 KiB as JSON
  for (const argv of [['sim', 'create-device', disk, '16G'], ['attach', disk]]) {
    const r = spawnSync(process.execPath, [BIN, ...argv], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`blksnap ${argv.join(' ')}: ${r.stderr}`);
  }
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('debug abi --json through a pipe is the same bytes as to a file', async () => {
  const file = path.join(tmp, 'abi.json');
  expect(runToFile(['debug', 'abi', '--json'], file)).toBe(0);
  const piped = await runThroughSlowPipe(['debug', 'abi', '--json'], 200);
  expect(piped.code).toBe(0);
  expect(piped.stdout.length).toBe(fs.statSync(file).size);
  expect(piped.stdout.equals(fs.readFileSync(file))).toBe(true);
  expect(() => JSON.parse(piped.stdout.toString())).not.toThrow();
});

test('a --json output several pipe buffers long, read slowly, arrives whole', async () => {
  const argv = ['cbt', 'map', disk, '--json'];
  const file = path.join(tmp, 'map.json');
  expect(runToFile(argv, file)).toBe(0);
  const piped = await runThroughSlowPipe(argv, 500);
  expect(piped.code).toBe(0);
  expect(piped.stderr).toBe('');
  expect(piped.stdout.length).toBeGreaterThan(4 * 65536);
  expect(piped.stdout.equals(fs.readFileSync(file))).toBe(true);
  const doc = JSON.parse(piped.stdout.toString()) as { block_count: number; map_base64: string };
  expect(Buffer.from(doc.map_base64, 'base64').length).toBe(doc.block_count);
});

test('raw map bytes through a slow pipe arrive whole', async () => {
  const piped = await runThroughSlowPipe(['cbt', 'map', disk], 300);
  expect(piped.code).toBe(0);
  expect(piped.stdout.length).toBe(262144);
});

test('the exit code survives the explicit exit (usage error, with the message flushed)', async () => {
  const piped = await runThroughSlowPipe(['cbt', 'map', path.join(tmp, 'no-such.img'), '--json'], 50);
  expect(piped.code).toBe(5);
  expect(piped.stderr).toMatch(/no-such\.img/);
});
