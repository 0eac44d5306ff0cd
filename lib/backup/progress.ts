/**
 * A progress bar (bytes, rate, ETA) for long copies, drawn with cli-progress
 * on a terminal's stderr at ~10 fps. The CLI creates one only when stderr is
 * a TTY and neither --quiet nor --json is given.
 */
import { SingleBar } from 'cli-progress';

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function humanDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
  cursorTo?: unknown;
  clearLine?: unknown;
  moveCursor?: unknown;
}

export class ByteProgressBar {
  private bar: SingleBar | null = null;
  private started = 0;
  private label = '';

  constructor(private readonly stream: NodeJS.WritableStream) {}

  /** Starts (or restarts, for the next device) the bar for `total` bytes. */
  start(label: string, total: number): void {
    this.stop();
    this.label = label;
    this.started = Date.now();
    this.bar = new SingleBar(
      {
        stream: this.stream,
        fps: 10,
        hideCursor: true,
        clearOnComplete: true,
        barsize: 24,
        format: (options, params, payload) => {
          const p = payload as { label: string; done: string; total: string; rate: string; eta: string };
          const width = options.barsize ?? 24;
          const filled = Math.round(params.progress * width);
          const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
          return `${p.label} [${bar}] ${(params.progress * 100).toFixed(0).padStart(3)}% ${p.done}/${p.total} ${p.rate} ETA ${p.eta}`;
        },
      },
    );
    this.bar.start(Math.max(total, 1), 0, this.payload(0, total));
  }

  update(done: number, total: number): void {
    this.bar?.update(Math.min(done, Math.max(total, 1)), this.payload(done, total));
  }

  private payload(done: number, total: number) {
    const elapsed = Date.now() - this.started;
    const rate = elapsed > 0 ? (done / elapsed) * 1000 : 0;
    const eta = rate > 0 ? ((total - done) / rate) * 1000 : NaN;
    return { label: this.label, done: humanBytes(done), total: humanBytes(total), rate: `${humanBytes(Math.round(rate))}/s`, eta: humanDuration(eta) };
  }

  stop(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = null;
    }
  }
}
