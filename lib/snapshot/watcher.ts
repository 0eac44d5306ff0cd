/**
 * Watches one snapshot's events until it is destroyed or the watcher is
 * stopped. A snapshot reports an overflow of its difference storage as a
 * `corrupted` event with err_code +ENOSPC (and sometimes `no_space`), §7;
 * either means the images can no longer be trusted.
 */
import { NotFoundError } from '../errors';
import { isOverflowEvent } from '../kernel/clients';
import type { SnapshotId } from '../kernel/snapshot-id';
import type { ControlClient, Kernel, SnapshotEvent } from '../kernel/types';

export type WatcherEnd = 'destroyed' | 'stopped' | 'error';

export interface WatcherOptions {
  onEvent?: (event: SnapshotEvent) => void;
  /** Length of each waitEvent call in ms (the loop runs until stopped). */
  sliceMs?: number;
}

export class SnapshotWatcher {
  readonly events: SnapshotEvent[] = [];
  /** Why the loop ended; null while it runs. */
  ended: WatcherEnd | null = null;
  /** The error that ended the loop when `ended` is 'error'. */
  error: unknown = null;
  readonly done: Promise<void>;
  private readonly abort = new AbortController();
  private readonly control: ControlClient;

  constructor(kernel: Kernel, readonly id: SnapshotId, private readonly options: WatcherOptions = {}) {
    // Its own control fd, so a long wait never holds up other requests.
    this.control = kernel.control();
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    const slice = this.options.sliceMs ?? 1000;
    try {
      while (!this.abort.signal.aborted) {
        const ev = await this.control.waitEvent(this.id, slice, this.abort.signal);
        if (ev) {
          this.events.push(ev);
          try {
            this.options.onEvent?.(ev);
          } catch {
            // a listener's failure must not stop the watch
          }
        }
      }
      this.ended = 'stopped';
    } catch (err) {
      if (err instanceof NotFoundError) {
        this.ended = 'destroyed';
      } else {
        this.ended = 'error';
        this.error = err;
      }
    } finally {
      this.control.close();
    }
  }

  /** True when an event said the difference storage overflowed. */
  get overflowed(): boolean {
    return this.events.some(isOverflowEvent);
  }

  /** True when any corruption or overflow event arrived. */
  get failed(): boolean {
    return this.events.some((e) => e.code === 'corrupted' || e.code === 'no_space');
  }

  /** The first event that makes the snapshot unusable, or null. */
  get failure(): SnapshotEvent | null {
    return this.events.find((e) => e.code === 'corrupted' || e.code === 'no_space') ?? null;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}
