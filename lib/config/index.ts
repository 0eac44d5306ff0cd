/**
 * The configuration file, `/etc/blksnap/blksnap.conf` by default.
 *
 * Format (documented for admins in docs/operations.md and in the shipped
 * file itself):
 *   - one `key = value` per line; spaces around `=` are optional;
 *   - lines whose first non-blank character is `#` or `;` are comments, and
 *     comments take whole lines only (hooks are shell commands and may
 *     contain `#`);
 *   - a value may be wrapped in one pair of double or single quotes;
 *   - an empty value means the built-in default;
 *   - lists (`devices`, `freeze`) are separated by spaces or commas;
 *   - each key may appear once; an unknown key is an error.
 *
 * The file is validated as a whole when it is loaded: the first problem is a
 * ConfigError whose one-line message reads `FILE:LINE: KEY: what is wrong`.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { UsageError } from '../errors';
import { parseSize, SIZE_SYNTAX_HINT } from './size';

export { parseSize, formatSize, SIZE_SYNTAX_HINT, MAX_SIZE_BYTES } from './size';

export const DEFAULT_CONFIG_PATH = '/etc/blksnap/blksnap.conf';
export const CONFIG_PATH_ENV = 'BLKSNAP_CONFIG';

/**
 * Used when the file sets no limit. The kernel allocates the difference
 * storage in steps of `diff_storage_minimum` (1 GiB by default, blksnap-abi.md
 * §6), and a directory storage gets a temporary file of the limit's size.
 */
export const DEFAULT_DIFF_STORAGE_LIMIT = 1n << 30n;

export type BackupMode = 'auto' | 'full' | 'incremental';
export const BACKUP_MODES: readonly BackupMode[] = ['auto', 'full', 'incremental'];

/** The keys of the file, in the order the shipped file documents them. */
export const CONFIG_KEYS = [
  'diff_storage_dir',
  'diff_storage_limit',
  'repository',
  'devices',
  'mode',
  'pre_hook',
  'post_hook',
  'freeze',
] as const;
export type ConfigKey = (typeof CONFIG_KEYS)[number];

export interface BlksnapConfig {
  /** The file the values were read from (or would have been, when it does not exist). */
  readonly path: string;
  /** False when the file does not exist and every value is a default. */
  readonly exists: boolean;
  /** Directory for the difference storage (absolute); null: not configured, the caller picks or refuses. */
  readonly diffStorageDir: string | null;
  /** Difference storage limit in bytes. */
  readonly diffStorageLimit: bigint;
  /** Backup repository directory (absolute); null: not configured. */
  readonly repository: string | null;
  /** Devices a scheduled backup copies (absolute paths, as written). */
  readonly devices: readonly string[];
  readonly mode: BackupMode;
  /** Shell command run before the snapshot is taken; null: none. */
  readonly preHook: string | null;
  /** Shell command run after the snapshot is taken (also after a failed take); null: none. */
  readonly postHook: string | null;
  /** Mount points frozen (fsfreeze) around the take. */
  readonly freeze: readonly string[];
  /** Line number of each key the file set; a key not listed has its default. */
  readonly lines: Readonly<Partial<Record<ConfigKey, number>>>;
}

/** What a backup needs from the file: the same values, with the required ones present. */
export interface BackupConfig extends BlksnapConfig {
  readonly repository: string;
}

/**
 * The configuration file is wrong. Its message is one line naming the file,
 * the line and the key (`/etc/blksnap/blksnap.conf:7: mode: ...`).
 */
export class ConfigError extends UsageError {
  readonly file: string;
  readonly line: number | null;
  readonly key: string | null;
  constructor(file: string, line: number | null, key: string | null, what: string, hint?: string, cause?: unknown) {
    const where = line === null ? file : `${file}:${line}`;
    super(`${where}: ${key === null ? '' : key + ': '}${what}`, { path: file, hint, cause });
    this.file = file;
    this.line = line;
    this.key = key;
  }
}

/** The path `loadConfig` reads: the argument, else $BLKSNAP_CONFIG, else /etc/blksnap/blksnap.conf. */
export function configPathFor(configPath?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (configPath !== undefined && configPath !== '') return configPath;
  const fromEnv = env[CONFIG_PATH_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return DEFAULT_CONFIG_PATH;
}

export function defaultConfig(file: string = DEFAULT_CONFIG_PATH): BlksnapConfig {
  return {
    path: file,
    exists: false,
    diffStorageDir: null,
    diffStorageLimit: DEFAULT_DIFF_STORAGE_LIMIT,
    repository: null,
    devices: [],
    mode: 'auto',
    preHook: null,
    postHook: null,
    freeze: [],
    lines: {},
  };
}

export interface LoadConfigOptions {
  /**
   * Refuse a file that does not exist instead of returning the defaults.
   * Default: true when `configPath` was passed (a `--config` with a typo must
   * not silently back up nothing), false for $BLKSNAP_CONFIG and the default path.
   */
  mustExist?: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * Reads and validates the configuration file (see the module comment for the
 * path rules and the format). Returns the defaults when the file does not
 * exist (unless `mustExist`). Throws ConfigError for anything wrong in it.
 */
export async function loadConfig(configPath?: string, options: LoadConfigOptions = {}): Promise<BlksnapConfig> {
  const file = configPathFor(configPath, options.env);
  const mustExist = options.mustExist ?? (configPath !== undefined && configPath !== '');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !mustExist) return defaultConfig(file);
    const why =
      code === 'ENOENT' ? 'configuration file does not exist'
      : code === 'EISDIR' ? 'is a directory, not a configuration file'
      : code === 'EACCES' || code === 'EPERM' ? 'cannot read the configuration file: permission denied'
      : `cannot read the configuration file: ${(err as Error).message}`;
    throw new ConfigError(file, null, null, why, undefined, err);
  }
  return parseConfig(text, file);
}

/** Parses the text of a configuration file; `file` is only used in messages and the result. */
export function parseConfig(text: string, file: string): BlksnapConfig {
  const values: Partial<Record<ConfigKey, string>> = {};
  const lines: Partial<Record<ConfigKey, number>> = {};
  const physical = text.split(/\r?\n/);
  for (let i = 0; i < physical.length; i++) {
    const lineNo = i + 1;
    const line = physical[i].trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('[')) {
      throw new ConfigError(file, lineNo, null, `sections are not supported: "${line}"`, 'write one "key = value" per line');
    }
    const eq = line.indexOf('=');
    if (eq < 0) {
      throw new ConfigError(file, lineNo, null, `expected "key = value", got "${line}"`);
    }
    const key = line.slice(0, eq).trim();
    if (!isConfigKey(key)) {
      const suggestion = closestKey(key);
      throw new ConfigError(
        file, lineNo, key === '' ? '(empty)' : key,
        `unknown key${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
        `known keys: ${CONFIG_KEYS.join(', ')}`,
      );
    }
    if (lines[key] !== undefined) {
      throw new ConfigError(file, lineNo, key, `set twice (first on line ${lines[key]})`);
    }
    values[key] = unquote(line.slice(eq + 1).trim(), file, lineNo, key);
    lines[key] = lineNo;
  }

  const config = defaultConfig(file) as { -readonly [K in keyof BlksnapConfig]: BlksnapConfig[K] };
  config.exists = true;
  config.lines = lines;
  for (const key of CONFIG_KEYS) {
    const raw = values[key];
    if (raw === undefined || raw === '') continue;
    const at = lines[key] as number;
    switch (key) {
      case 'diff_storage_dir':
        config.diffStorageDir = absolutePath(raw, file, at, key);
        break;
      case 'diff_storage_limit':
        try {
          config.diffStorageLimit = parseSize(raw, key);
        } catch (err) {
          // parseSize names `key` already; keep its reason, add where.
          const reason = (err as Error).message.replace(`${key}: `, '');
          throw new ConfigError(file, at, key, reason, SIZE_SYNTAX_HINT, err);
        }
        break;
      case 'repository':
        config.repository = absolutePath(raw, file, at, key);
        break;
      case 'devices':
        config.devices = splitList(raw).map((p) => absolutePath(p, file, at, key));
        break;
      case 'mode':
        if (!(BACKUP_MODES as readonly string[]).includes(raw)) {
          throw new ConfigError(file, at, key, `invalid mode "${raw}"`, `mode is one of ${BACKUP_MODES.join(', ')}`);
        }
        config.mode = raw as BackupMode;
        break;
      case 'pre_hook':
        config.preHook = raw;
        break;
      case 'post_hook':
        config.postHook = raw;
        break;
      case 'freeze':
        config.freeze = splitList(raw).map((p) => absolutePath(p, file, at, key));
        break;
    }
  }
  return config;
}

/**
 * The configuration a backup run needs: a repository and at least one device
 * (from the file, or overridden by the caller). ConfigError names the file
 * and the key otherwise.
 */
export function requireBackupConfig(
  config: BlksnapConfig,
  overrides: { repository?: string | null; devices?: readonly string[] } = {},
): BackupConfig {
  const repository = overrides.repository ?? config.repository;
  const devices = overrides.devices && overrides.devices.length > 0 ? overrides.devices : config.devices;
  const missing = config.exists ? 'not set' : 'not set (the file does not exist)';
  if (repository === null) {
    throw new ConfigError(config.path, null, 'repository', `${missing}; a backup needs one`,
      'add "repository = /srv/backup/blksnap" to the file, or pass --repo DIR');
  }
  if (devices.length === 0) {
    throw new ConfigError(config.path, null, 'devices', `${missing}; a backup needs at least one device`,
      'add "devices = /dev/sda" to the file, or name the devices on the command line');
  }
  return { ...config, repository, devices };
}

/**
 * The `blksnap backup` arguments (issue 5's command line) that run the backup
 * this configuration describes; what the scheduled job runs.
 */
export function backupArgv(config: BackupConfig, options: { json?: boolean } = {}): string[] {
  const argv = ['backup', ...config.devices, '--repo', config.repository, '--mode', config.mode];
  if (config.diffStorageDir !== null) argv.push('--diff-storage', config.diffStorageDir);
  argv.push('--limit', config.diffStorageLimit.toString());
  if (config.preHook !== null) argv.push('--pre-hook', config.preHook);
  if (config.postHook !== null) argv.push('--post-hook', config.postHook);
  for (const mountpoint of config.freeze) argv.push('--freeze', mountpoint);
  if (options.json) argv.push('--json');
  return argv;
}

function isConfigKey(key: string): key is ConfigKey {
  return (CONFIG_KEYS as readonly string[]).includes(key);
}

function unquote(value: string, file: string, line: number, key: string): string {
  const q = value[0];
  if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q) && !value.slice(1, -1).includes(q)) {
    return value.slice(1, -1);
  }
  if ((q === '"' || q === "'") && !value.slice(1).includes(q)) {
    throw new ConfigError(file, line, key, `unterminated quote in ${value}`);
  }
  return value;
}

function splitList(value: string): string[] {
  return value.split(/[\s,]+/).filter((item) => item !== '');
}

function absolutePath(value: string, file: string, line: number, key: string): string {
  if (!path.isAbsolute(value)) {
    // The kernel resolves a relative difference storage path against the
    // caller's working directory (blksnap-abi.md §7), and a scheduled job
    // runs in `/`: only absolute paths mean the same thing everywhere.
    throw new ConfigError(file, line, key, `"${value}" is not an absolute path`);
  }
  return path.normalize(value);
}

/** The known key within edit distance 2 of `key`, for "did you mean". */
function closestKey(key: string): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of CONFIG_KEYS) {
    const d = editDistance(key.toLowerCase().replace(/-/g, '_'), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}
