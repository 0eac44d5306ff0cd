/**
 * Every command a scenario runs (the CLI, dd, mkfs, mount, ...) and what came
 * back, in order. A failing scenario prints the whole transcript, so the
 * reader sees the commands and the kernel's answers (errno names reach
 * stdout/stderr through the CLI's messages) without re-running anything.
 */

export interface TranscriptEntry {
  /** What ran: the argv of a process, or a short description of an in-process step. */
  argv: string[];
  /** Exit code; null when the process was ended by a signal or has not ended yet. */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Free-form note: what the step was for, or an in-process result. */
  note?: string;
}

const MAX_STREAM_CHARS = 4000;

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function clip(text: string): string {
  if (text.length <= MAX_STREAM_CHARS) return text;
  const half = MAX_STREAM_CHARS / 2;
  return `${text.slice(0, half)}\n… (${text.length - MAX_STREAM_CHARS} characters left out) …\n${text.slice(-half)}`;
}

function indent(text: string): string {
  return text.replace(/\n$/, '').split('\n').map((line) => `    ${line}`).join('\n');
}

export class Transcript {
  readonly entries: TranscriptEntry[] = [];

  add(entry: TranscriptEntry): TranscriptEntry {
    this.entries.push(entry);
    return entry;
  }

  /** Records a step done in-process (e.g. a read of an image through fs.read). */
  note(what: string, result: string): void {
    this.entries.push({ argv: [what], code: null, signal: null, stdout: '', stderr: '', note: result });
  }

  format(): string {
    if (this.entries.length === 0) return '(no commands were run)';
    return this.entries
      .map((e, i) => {
        const head = `[${i + 1}] $ ${e.argv.map(shellQuote).join(' ')}`;
        const status = e.note !== undefined && e.code === null && e.signal === null
          ? `  → ${e.note}`
          : `  → exit ${e.code ?? '-'}${e.signal ? ` (signal ${e.signal})` : ''}${e.note ? `  # ${e.note}` : ''}`;
        const out = e.stdout.trim() ? `\n  stdout:\n${indent(clip(e.stdout))}` : '';
        const err = e.stderr.trim() ? `\n  stderr:\n${indent(clip(e.stderr))}` : '';
        return `${head}\n${status}${out}${err}`;
      })
      .join('\n');
  }
}
