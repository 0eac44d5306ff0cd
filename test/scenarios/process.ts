/**
 * Spawning commands for scenarios, each one recorded in the transcript.
 * Foreground commands are awaited; background ones (a backup to interrupt, a
 * reader racing a destroy) are handles that can be signalled and awaited.
 */
import { spawn, ChildProcess } from 'child_process';
import { Transcript, TranscriptEntry } from './transcript';

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string | Buffer;
  /** Kill the command (SIGKILL) after this long; the entry then says so. Default 120 s. */
  timeoutMs?: number;
  /** Keep stdout as bytes (dd of an image); the transcript shows only the length. */
  binaryStdout?: boolean;
  /** Why this command runs, shown in the transcript. */
  note?: string;
}

export interface CommandResult {
  argv: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export class BackgroundProcess {
  readonly done: Promise<CommandResult>;
  private stdoutChunks: Buffer[] = [];
  private stderrChunks: Buffer[] = [];
  private listeners: Array<() => void> = [];

  constructor(readonly child: ChildProcess, readonly argv: string[], entry: TranscriptEntry, options: RunOptions) {
    child.stdout?.on('data', (c: Buffer) => { this.stdoutChunks.push(c); this.poke(); });
    child.stderr?.on('data', (c: Buffer) => { this.stderrChunks.push(c); this.poke(); });
    const timeoutMs = options.timeoutMs ?? 120_000;
    this.done = new Promise<CommandResult>((resolve) => {
      const timer = setTimeout(() => {
        entry.note = `${entry.note ? entry.note + '; ' : ''}killed after ${timeoutMs} ms timeout`;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (err) => {
        this.stderrChunks.push(Buffer.from(`spawn failed: ${err.message}\n`));
      });
      // 'close' waits for every holder of the pipes: a hook the process left
      // running (e.g. after SIGKILL) would keep them open. Give the streams a
      // moment after 'exit', then stop waiting for them.
      child.on('exit', () => {
        setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, 500).unref();
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const stdoutBytes = Buffer.concat(this.stdoutChunks);
        const stderr = Buffer.concat(this.stderrChunks).toString('utf8');
        entry.code = code;
        entry.signal = signal;
        entry.stdout = options.binaryStdout ? `<${stdoutBytes.length} bytes>` : stdoutBytes.toString('utf8');
        entry.stderr = stderr;
        this.poke();
        resolve({ argv: this.argv, code, signal, stdout: options.binaryStdout ? '' : stdoutBytes.toString('utf8'), stderr, stdoutBytes });
      });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  stdoutSoFar(): string {
    return Buffer.concat(this.stdoutChunks).toString('utf8');
  }

  stderrSoFar(): string {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  /** Sends a signal to the process (or, with `group`, to its whole process group). */
  signal(sig: NodeJS.Signals, group = false): void {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      if (group && this.child.pid) process.kill(-this.child.pid, sig);
      else this.child.kill(sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /** Resolves when `predicate` holds on the output so far; rejects if the process ends first or time runs out. */
  waitFor(predicate: (stdout: string, stderr: string) => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      let finished = false;
      const check = (): void => {
        if (finished) return;
        if (predicate(this.stdoutSoFar(), this.stderrSoFar())) {
          finished = true; clearTimeout(timer); resolve();
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          finished = true; clearTimeout(timer);
          reject(new Error(`${this.argv.join(' ')} ended before ${what}`));
        }
      };
      const timer = setTimeout(() => {
        if (finished) return;
        finished = true;
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.listeners.push(check);
      check();
    });
  }

  private poke(): void {
    for (const l of this.listeners) l();
  }
}

export function startProcess(t: Transcript, argv: string[], options: RunOptions & { detached?: boolean } = {}): BackgroundProcess {
  const entry = t.add({ argv, code: null, signal: null, stdout: '', stderr: '', note: options.note });
  const child = spawn(argv[0], argv.slice(1), {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  return new BackgroundProcess(child, argv, entry, options);
}

export function runProcess(t: Transcript, argv: string[], options: RunOptions = {}): Promise<CommandResult> {
  return startProcess(t, argv, options).done;
}
