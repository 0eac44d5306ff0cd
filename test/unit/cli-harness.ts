/**
 * Runs the blksnap CLI in-process (runCli with buffers) or as a spawned
 * process (node bin/blksnap, which needs `npx tsc -p .` first).
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { runCli } from '../../lib/cli/main';

export const ROOT = path.resolve(__dirname, '../..');
export const BIN = path.join(ROOT, 'bin', 'blksnap');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as raw bytes (binary CBT maps). */
  stdoutBytes: Buffer;
}

class Sink {
  chunks: Buffer[] = [];
  write(chunk: string | Uint8Array): boolean {
    this.chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
    return true;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** In-process run; `env` defaults to process.env (the kernel layer reads process.env too). */
export async function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  const stdout = new Sink();
  const stderr = new Sink();
  const code = await runCli(argv, { stdout, stderr, env, stderrIsTTY: false });
  return { code, stdout: stdout.bytes.toString(), stderr: stderr.bytes.toString(), stdoutBytes: stdout.bytes };
}

/** Spawned run of bin/blksnap. */
export function spawnCli(argv: string[], options: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<CliResult> {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'lib', 'cli', 'main.js'))) {
    throw new Error('dist/lib/cli/main.js is missing: run `npx tsc -p .` before the spawned CLI tests');
  }
  return spawnProcess(process.execPath, [BIN, ...argv], options);
}

export function spawnProcess(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: options.env ?? process.env, cwd: options.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code: code ?? (signal ? 128 : 1), stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** The parsed `{"error":{...}}` line of a --json failure. */
export function jsonErrorOf(r: CliResult): { code: number; kind: string; errno: string | null; message: string; hint: string | null } {
  const lines = r.stderr.trim().split('\n');
  const doc = JSON.parse(lines[lines.length - 1]);
  return doc.error;
}

/**
 * The environment of a CLI run on a private simulated kernel under `tmp`:
 * its own sim state, snapshot records and a config path that does not exist
 * (so /etc/blksnap/blksnap.conf cannot change the run).
 */
export function simCliEnv(tmp: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    BLKSNAP_KERNEL: 'sim',
    BLKSNAP_SIM_DIR: path.join(tmp, 'sim'),
    BLKSNAP_RUN_DIR: path.join(tmp, 'run'),
    BLKSNAP_CONFIG: path.join(tmp, 'no-such.conf'),
  };
  delete env.BLKSNAP_SIM_FLAVOUR;
  return env;
}
