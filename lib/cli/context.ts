/**
 * Per-invocation state handed to every command: the global options, the
 * output helpers, and lazy access to the kernel. Nothing heavy is loaded
 * until a command asks for it, so `blksnap --help` and `blksnap version`
 * stay fast (the koffi-backed transport is only required by createKernel).
 */
import * as os from 'os';
import * as path from 'path';
import type { FlavourName } from '../../ioctl-defs';
import { UsageError, InterruptedError } from '../errors';
import type { ControlClient, Kernel, KernelSelection } from '../kernel/types';
import type { CliIO } from './output';
import { Output, colorEnabled } from './output';

export const KERNEL_CHOICES: readonly KernelSelection[] = ['auto', 'upstream', 'standalone', 'sim'];

/** The options every command accepts (the "Global Options" group). */
export interface GlobalArgs {
  kernel?: string;
  simDir?: string;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  color?: boolean;
}

export class CliContext {
  readonly out: Output;
  readonly kernelSelection: KernelSelection;
  private kernelPromise: Promise<Kernel> | null = null;
  private controlClient: ControlClient | null = null;
  private readonly cleanups: (() => void)[] = [];

  constructor(readonly io: CliIO, readonly args: GlobalArgs) {
    this.out = new Output(io, {
      json: !!args.json,
      quiet: !!args.quiet,
      verbose: !!args.verbose,
      color: colorEnabled(io, args.color),
    });
    const selection = args.kernel ?? io.env.BLKSNAP_KERNEL ?? 'auto';
    if (!(KERNEL_CHOICES as readonly string[]).includes(selection)) {
      throw new UsageError(`invalid kernel "${selection}"`, { hint: `use --kernel ${KERNEL_CHOICES.join('|')} (or BLKSNAP_KERNEL)` });
    }
    this.kernelSelection = selection as KernelSelection;
  }

  get isSim(): boolean {
    return this.kernelSelection === 'sim';
  }

  /** The simulated kernel's state directory: --sim-dir, $BLKSNAP_SIM_DIR, $XDG_RUNTIME_DIR/blksnap-sim, /tmp/blksnap-sim-UID. */
  simDir(): string {
    const env = this.io.env;
    if (this.args.simDir) return path.resolve(this.args.simDir);
    if (env.BLKSNAP_SIM_DIR) return path.resolve(env.BLKSNAP_SIM_DIR);
    if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'blksnap-sim');
    return path.join(os.tmpdir(), `blksnap-sim-${process.getuid ? process.getuid() : 0}`);
  }

  simFlavour(): FlavourName | undefined {
    const f = this.io.env.BLKSNAP_SIM_FLAVOUR;
    if (f === undefined || f === '') return undefined;
    if (f !== 'upstream' && f !== 'standalone') {
      throw new UsageError(`invalid BLKSNAP_SIM_FLAVOUR "${f}"`, { hint: 'use upstream or standalone' });
    }
    return f;
  }

  /** Where records of the snapshots this tool created live: $BLKSNAP_RUN_DIR, else <simDir>/run on the sim, else /run/blksnap. */
  runDir(): string {
    if (this.io.env.BLKSNAP_RUN_DIR) return path.resolve(this.io.env.BLKSNAP_RUN_DIR);
    return this.isSim ? path.join(this.simDir(), 'run') : '/run/blksnap';
  }

  /** The kernel, created on first use. */
  kernel(): Promise<Kernel> {
    if (!this.kernelPromise) {
      this.kernelPromise = (async () => {
        const { createKernel } = await import('../kernel');
        return createKernel({
          kernel: this.kernelSelection,
          simDir: this.isSim ? this.simDir() : undefined,
          simFlavour: this.isSim ? this.simFlavour() : undefined,
        });
      })();
    }
    return this.kernelPromise;
  }

  /** The control-device client, opened once and closed when the command ends. */
  async control(): Promise<ControlClient> {
    if (!this.controlClient) {
      const kernel = await this.kernel();
      this.controlClient = kernel.control();
    }
    return this.controlClient;
  }

  /** Canonical device path of a user argument (errors name the argument). */
  async resolveDevice(arg: string): Promise<string> {
    const kernel = await this.kernel();
    return (await kernel.resolveDevice(arg)).path;
  }

  onClose(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /**
   * An AbortSignal that fires on SIGINT/SIGTERM for long-running commands
   * (watch, waitevent). `interruption()` tells which signal it was, so the
   * command can end with an InterruptedError (exit 130/143).
   */
  interruptSignal(): { signal: AbortSignal; interruption: () => InterruptedError | null } {
    const controller = new AbortController();
    let received: NodeJS.Signals | null = null;
    const handler = (sig: NodeJS.Signals) => {
      received = sig;
      controller.abort();
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    this.onClose(() => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    });
    return { signal: controller.signal, interruption: () => (received ? new InterruptedError(received) : null) };
  }

  close(): void {
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        fn();
      } catch {
        /* closing is best effort */
      }
    }
    if (this.controlClient) {
      try {
        this.controlClient.close();
      } catch {
        /* already closed */
      }
      this.controlClient = null;
    }
  }
}
