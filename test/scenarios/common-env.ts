/**
 * What both environments share: running the built CLI as a separate process
 * with the environment's variables, temp directories that are always removed,
 * and the bookkeeping that lets cleanup destroy only this scenario's snapshots.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BackgroundProcess, CommandResult, RunOptions, runProcess, startProcess } from './process';
import { Transcript } from './transcript';

/** The checkout: the nearest directory above this file with bin/blksnap (also when run from dist/). */
function findRepoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'bin', 'blksnap')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '..', '..');
  }
}

export const REPO_ROOT = findRepoRoot();
export const BLKSNAP_BIN = path.join(REPO_ROOT, 'bin', 'blksnap');

/** The spawned CLI runs the compiled code: say how to build it instead of failing obscurely. */
export function assertCliBuilt(): void {
  if (!fs.existsSync(BLKSNAP_BIN)) throw new Error(`${BLKSNAP_BIN} does not exist (the CLI launcher)`);
  const main = path.join(REPO_ROOT, 'dist', 'lib', 'cli', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} does not exist: build first with \`npx tsc -p .\` (npm test and npm run test:e2e do)`);
}

/** Mount points of this mount namespace. */
function mountPoints(): Set<string> {
  try {
    return new Set(fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]).filter(Boolean));
  } catch {
    return new Set();
  }
}

export abstract class BaseEnvironment {
  readonly transcript = new Transcript();
  /** Temp paths to remove at cleanup (files or directories). */
  protected tempPaths: string[] = [];
  /** Background processes to end at cleanup. */
  protected background: BackgroundProcess[] = [];

  abstract readonly cliEnv: NodeJS.ProcessEnv;

  protected mkTemp(label: string, base = os.tmpdir()): string {
    const dir = fs.mkdtempSync(path.join(base, `blksnap-e2e-${label}-`));
    this.tempPaths.push(dir);
    return dir;
  }

  blksnapCommandLine(): string {
    return `${process.execPath} ${BLKSNAP_BIN}`;
  }

  blksnap(args: string[], options: RunOptions = {}): Promise<CommandResult> {
    return runProcess(this.transcript, [process.execPath, BLKSNAP_BIN, ...args], {
      ...options,
      env: { ...this.cliEnv, ...options.env },
    });
  }

  startBlksnap(args: string[], options: RunOptions = {}): BackgroundProcess {
    const p = startProcess(this.transcript, [process.execPath, BLKSNAP_BIN, ...args], {
      ...options,
      env: { ...this.cliEnv, ...options.env },
      detached: true,
    });
    this.background.push(p);
    return p;
  }

  run(argv: string[], options: RunOptions = {}): Promise<CommandResult> {
    return runProcess(this.transcript, argv, { ...options, env: { ...this.cliEnv, ...options.env } });
  }

  protected startHelper(argv: string[], options: RunOptions = {}): BackgroundProcess {
    const p = startProcess(this.transcript, argv, { ...options, env: { ...this.cliEnv, ...options.env }, detached: true });
    this.background.push(p);
    return p;
  }

  /** Ids of every snapshot the kernel holds, read with the CLI (`snapshot_collect`: one id per line). */
  async snapshotIds(): Promise<string[]> {
    const r = await this.blksnap(['snapshot_collect'], { note: 'snapshots the kernel holds' });
    if (r.code !== 0) return [];
    return r.stdout.split('\n').map((l) => l.trim()).filter((l) => /^[0-9a-f-]{36}$/i.test(l));
  }

  /** Ends background processes (their whole group) and waits for them. */
  protected async stopBackground(): Promise<void> {
    for (const p of this.background) p.signal('SIGKILL', true);
    await Promise.all(this.background.map((p) => p.done));
    this.background = [];
  }

  protected removeTemps(): void {
    const mounted = mountPoints();
    for (const p of this.tempPaths.reverse()) {
      // Never recurse into a filesystem that is still mounted there.
      if (mounted.has(p)) continue;
      try {
        fs.rmSync(p, { recursive: true, force: true });
      } catch {
        /* a mount still busy: reported by the mount cleanup */
      }
    }
    this.tempPaths = [];
  }
}
