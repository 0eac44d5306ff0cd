/**
 * Where a command's words go. Data (ids, key=value lines, JSON documents) go
 * to stdout; messages, warnings and errors to stderr. With `--json` stdout
 * carries only JSON (one document, or JSON lines for streaming commands) and
 * errors are a JSON object on stderr. `--quiet` silences informational
 * messages, never data or errors.
 *
 * Command modules use only these helpers to print, so that every command
 * honours --json/--quiet/--no-color the same way:
 *   out.data(doc)      one JSON document (only in --json mode)
 *   out.jsonLine(doc)  one line of a JSON-lines stream (watch)
 *   out.text(line)     a data line in human mode (printed even with --quiet)
 *   out.say(line)      a human status line on stdout (silenced by --quiet/--json)
 *   out.info(msg)      a message on stderr (silenced by --quiet/--json)
 *   out.warn(msg)      a warning on stderr (silenced by --quiet only)
 */
import { BlksnapError } from '../errors';
import { exitCodeFor } from './exit-codes';

export interface TextSink {
  write(chunk: string | Uint8Array): unknown;
}

/** What the CLI talks to: the process, or buffers in an in-process test. */
export interface CliIO {
  stdout: TextSink;
  stderr: TextSink;
  env: NodeJS.ProcessEnv;
  /** Whether stderr is a terminal (colour and progress only then). */
  stderrIsTTY: boolean;
}

export interface OutputOptions {
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  color: boolean;
}

/** JSON.stringify that keeps 64-bit numbers numbers where exact (strings otherwise) and writes bytes as hex. */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_key, v) => {
      if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
      // Buffer.toJSON() gives {type:'Buffer',data:[...]}: bytes read better as hex.
      if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('hex');
      return v;
    },
    indent,
  );
}

/** The JSON form of an error on stderr: `{"error":{"code","kind","errno","message","hint"}}`. */
export interface JsonError {
  error: {
    code: number;
    kind: string;
    errno: string | null;
    message: string;
    hint: string | null;
    op?: string | null;
    path?: string | null;
  };
}

/**
 * The error's own hint, else one by kind, so every failure ends with
 * something to do (the lower layers do not always know the command line).
 */
export function hintFor(err: unknown): string | null {
  if (err instanceof BlksnapError && err.hint) return err.hint;
  const kind = err instanceof BlksnapError ? err.kind : 'failure';
  switch (kind) {
    case 'usage': return 'see blksnap --help, or blksnap COMMAND --help';
    case 'not_found': return 'check the name: devices with lsblk (or blksnap sim state), snapshots with blksnap snapshot list';
    case 'busy': return 'see blksnap snapshot list for the snapshots holding it';
    case 'permission': return 'run blksnap as root (sudo)';
    case 'interrupted': return null;
    default: return err instanceof BlksnapError ? 'run again with --verbose for details' : 'this is a bug in blksnap; run again with --verbose and report the stack';
  }
}

export function jsonError(err: unknown): JsonError {
  const code = exitCodeFor(err);
  if (err instanceof BlksnapError) {
    return { error: { code, kind: err.kind, errno: err.errno ?? null, message: err.message, hint: hintFor(err), op: err.op ?? null, path: err.path ?? null } };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { error: { code, kind: 'failure', errno: null, message, hint: hintFor(err), op: null, path: null } };
}

export class Output {
  constructor(readonly io: CliIO, readonly options: OutputOptions) {}

  get json(): boolean {
    return this.options.json;
  }

  data(doc: unknown): void {
    this.io.stdout.write(toJson(doc, 2) + '\n');
  }

  jsonLine(doc: unknown): void {
    this.io.stdout.write(toJson(doc) + '\n');
  }

  text(line: string): void {
    this.io.stdout.write(line + '\n');
  }

  say(line: string): void {
    if (!this.options.quiet && !this.options.json) this.io.stdout.write(line + '\n');
  }

  info(msg: string): void {
    if (!this.options.quiet && !this.options.json) this.io.stderr.write(msg + '\n');
  }

  warn(msg: string): void {
    if (!this.options.quiet) this.io.stderr.write(`${this.paint('warning:', 33)} ${msg}\n`);
  }

  debug(msg: string): void {
    if (this.options.verbose) this.io.stderr.write(`debug: ${msg}\n`);
  }

  /** The single place an error is written (text or JSON), with a stack only under --verbose. */
  error(err: unknown): void {
    if (this.options.json) {
      this.io.stderr.write(toJson(jsonError(err)) + '\n');
      if (this.options.verbose && err instanceof Error && err.stack) this.io.stderr.write(err.stack + '\n');
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    this.io.stderr.write(`${this.paint('blksnap:', 31)} ${message}\n`);
    const hint = hintFor(err);
    if (hint) this.io.stderr.write(`hint: ${hint}\n`);
    if (this.options.verbose && err instanceof Error && err.stack) {
      this.io.stderr.write(err.stack + '\n');
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof Error && cause.stack) this.io.stderr.write(`caused by: ${cause.stack}\n`);
    }
  }

  private paint(text: string, ansi: number): string {
    return this.options.color ? `\u001b[${ansi}m${text}\u001b[39m` : text;
  }
}

/** Colour only on a terminal, never with NO_COLOR set (https://no-color.org) or --no-color. */
export function colorEnabled(io: CliIO, flag: boolean | undefined): boolean {
  if (flag === false) return false;
  if (io.env.NO_COLOR !== undefined && io.env.NO_COLOR !== '') return false;
  return io.stderrIsTTY;
}
