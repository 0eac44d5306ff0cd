import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { UsageError } from '../../lib/errors';
import {
  backupArgv,
  CONFIG_KEYS,
  ConfigError,
  configPathFor,
  DEFAULT_CONFIG_PATH,
  DEFAULT_DIFF_STORAGE_LIMIT,
  loadConfig,
  parseConfig,
  requireBackupConfig,
} from '../../lib/config';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'blksnap-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConf(text: string, name = 'blksnap.conf'): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** The ConfigError `fn` throws (fails the test when it throws nothing or something else). */
async function configErrorOf(fn: () => unknown): Promise<ConfigError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

const FULL = `# nightly backup of the data disks
diff_storage_dir = /var/lib/blksnap/diff
diff_storage_limit = 20G
  repository=/srv/backup/blksnap
devices = /dev/sdb /dev/sdc,/dev/disk/by-id/ata-X
; a comment in INI style
mode = incremental

pre_hook = "systemctl stop postgresql # with a hash"
post_hook = systemctl start postgresql
freeze = /srv/data, /srv/logs
`;

describe('loadConfig', () => {
  test('reads every key into typed values, with the line each came from', async () => {
    const file = writeConf(FULL);
    const config = await loadConfig(file);
    expect(config).toEqual({
      path: file,
      exists: true,
      diffStorageDir: '/var/lib/blksnap/diff',
      diffStorageLimit: 20n * 1024n ** 3n,
      repository: '/srv/backup/blksnap',
      devices: ['/dev/sdb', '/dev/sdc', '/dev/disk/by-id/ata-X'],
      mode: 'incremental',
      preHook: 'systemctl stop postgresql # with a hash',
      postHook: 'systemctl start postgresql',
      freeze: ['/srv/data', '/srv/logs'],
      lines: { diff_storage_dir: 2, diff_storage_limit: 3, repository: 4, devices: 5, mode: 7, pre_hook: 9, post_hook: 10, freeze: 11 },
    });
  });

  test('a missing file at the default or $BLKSNAP_CONFIG path gives the defaults', async () => {
    const missing = path.join(dir, 'none.conf');
    const config = await loadConfig(undefined, { env: { BLKSNAP_CONFIG: missing } });
    expect(config).toEqual({
      path: missing,
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
    });
  });

  test('a missing file named explicitly is an error naming it', async () => {
    const missing = path.join(dir, 'typo.conf');
    const err = await configErrorOf(() => loadConfig(missing));
    expect(err.message).toBe(`${missing}: configuration file does not exist`);
    expect(err.kind).toBe('usage');
    expect(err).toBeInstanceOf(UsageError);
    // ... unless the caller asks for defaults.
    expect((await loadConfig(missing, { mustExist: false })).exists).toBe(false);
  });

  test('a directory given as the file is refused', async () => {
    const sub = path.join(dir, 'conf.d');
    mkdirSync(sub);
    const err = await configErrorOf(() => loadConfig(sub));
    expect(err.message).toBe(`${sub}: is a directory, not a configuration file`);
  });

  test('the path: argument, else $BLKSNAP_CONFIG, else /etc/blksnap/blksnap.conf', () => {
    expect(configPathFor('/a.conf', { BLKSNAP_CONFIG: '/b.conf' })).toBe('/a.conf');
    expect(configPathFor(undefined, { BLKSNAP_CONFIG: '/b.conf' })).toBe('/b.conf');
    expect(configPathFor(undefined, {})).toBe(DEFAULT_CONFIG_PATH);
    expect(DEFAULT_CONFIG_PATH).toBe('/etc/blksnap/blksnap.conf');
  });

  test('the environment variable is read from process.env by default', async () => {
    const file = writeConf('mode = full\n');
    const saved = process.env.BLKSNAP_CONFIG;
    process.env.BLKSNAP_CONFIG = file;
    try {
      expect((await loadConfig()).mode).toBe('full');
    } finally {
      if (saved === undefined) delete process.env.BLKSNAP_CONFIG;
      else process.env.BLKSNAP_CONFIG = saved;
    }
  });

  test('the file the package ships is all comments: it changes nothing', async () => {
    const shipped = path.join(__dirname, '../../packaging/blksnap.conf');
    const config = parseConfig(readFileSync(shipped, 'utf8'), shipped);
    expect({ ...config, path: '', exists: false }).toEqual({ ...(await loadConfig(path.join(dir, 'x'), { mustExist: false })), path: '' });
  });

  test('every key is documented in the shipped file, and uncommenting the examples gives a valid file', () => {
    const shipped = readFileSync(path.join(__dirname, '../../packaging/blksnap.conf'), 'utf8');
    const uncommented = shipped
      .split('\n')
      .map((l) => (/^#\s*[a-z_]+\s*=/.test(l) ? l.replace(/^#\s*/, '') : l))
      .join('\n');
    const config = parseConfig(uncommented, 'shipped');
    for (const key of CONFIG_KEYS) expect(config.lines[key]).toBeGreaterThan(0);
    expect(config.repository).not.toBeNull();
  });
});

describe('validation: one line naming the file, the line and the key', () => {
  test.each([
    ['repository = /srv/b\ncompress = yes\n', 2, 'compress', 'unknown key'],
    ['diff-storage-limit = 2G\n', 1, 'diff-storage-limit', 'unknown key (did you mean diff_storage_limit?)'],
    ['devcies = /dev/sda\n', 1, 'devcies', 'unknown key (did you mean devices?)'],
    ['\n\ndiff_storage_limit = 20X\n', 3, 'diff_storage_limit', 'invalid size "20X": expected a number with an optional suffix K, M, G, T, P or E'],
    ['diff_storage_limit = 0\n', 1, 'diff_storage_limit', 'invalid size "0": must be greater than zero'],
    ['diff_storage_limit = -2G\n', 1, 'diff_storage_limit', 'invalid size "-2G": must be greater than zero'],
    ['mode = differential\n', 1, 'mode', 'invalid mode "differential"'],
    ['mode = auto # nightly\n', 1, 'mode', 'invalid mode "auto # nightly"'],
    ['repository = backups\n', 1, 'repository', '"backups" is not an absolute path'],
    ['devices = /dev/sda sdb\n', 1, 'devices', '"sdb" is not an absolute path'],
    ['diff_storage_dir = ./diff\n', 1, 'diff_storage_dir', '"./diff" is not an absolute path'],
    ['freeze = srv\n', 1, 'freeze', '"srv" is not an absolute path'],
    ['mode = full\nmode = auto\n', 2, 'mode', 'set twice (first on line 1)'],
    ['pre_hook = "sync\n', 1, 'pre_hook', 'unterminated quote in "sync'],
  ])('%j', async (text, line, key, what) => {
    const file = writeConf(text);
    const err = await configErrorOf(() => loadConfig(file));
    expect(err.message).toBe(`${file}:${line}: ${key}: ${what}`);
    expect(err.file).toBe(file);
    expect(err.line).toBe(line);
    expect(err.key).toBe(key);
    expect(err.kind).toBe('usage');
  });

  test.each([
    ['[global]\n', 'sections are not supported: "[global]"'],
    ['repository /srv/b\n', 'expected "key = value", got "repository /srv/b"'],
  ])('a line that is not key = value: %j', (text, what) => {
    expect(() => parseConfig(text, '/etc/x.conf')).toThrow(`/etc/x.conf:1: ${what}`);
  });

  test('an empty value means the default; quotes and CRLF line ends are accepted', () => {
    const config = parseConfig("mode =\r\ndiff_storage_limit=\r\nrepository = '/srv/my backups'\r\n", 'f');
    expect(config.mode).toBe('auto');
    expect(config.diffStorageLimit).toBe(DEFAULT_DIFF_STORAGE_LIMIT);
    expect(config.repository).toBe('/srv/my backups');
  });

  test('sizes take the same suffixes as the command line', () => {
    expect(parseConfig('diff_storage_limit = 512m', 'f').diffStorageLimit).toBe(512n * 1024n * 1024n);
    expect(parseConfig('diff_storage_limit = 1T', 'f').diffStorageLimit).toBe(1024n ** 4n);
    expect(parseConfig('diff_storage_limit = 4096', 'f').diffStorageLimit).toBe(4096n);
  });
});

describe('requireBackupConfig and backupArgv', () => {
  test('a missing repository is an error naming the file and the key', () => {
    const config = parseConfig('devices = /dev/sda\n', '/etc/blksnap/blksnap.conf');
    expect(() => requireBackupConfig(config)).toThrow(
      '/etc/blksnap/blksnap.conf: repository: not set; a backup needs one',
    );
  });

  test('when the file does not exist the message says so', async () => {
    const missing = path.join(dir, 'nightly.conf');
    const config = await loadConfig(missing, { mustExist: false });
    expect(() => requireBackupConfig(config)).toThrow(`${missing}: repository: not set (the file does not exist); a backup needs one`);
  });

  test('no devices is an error naming the key', () => {
    const config = parseConfig('repository = /srv/b\n', 'f.conf');
    expect(() => requireBackupConfig(config)).toThrow('f.conf: devices: not set; a backup needs at least one device');
  });

  test('command-line values override the file', () => {
    const config = parseConfig('devices = /dev/sda\n', 'f.conf');
    const backup = requireBackupConfig(config, { repository: '/srv/r', devices: ['/dev/sdz'] });
    expect(backup.repository).toBe('/srv/r');
    expect(backup.devices).toEqual(['/dev/sdz']);
  });

  test('the job runs blksnap backup with every configured option', () => {
    const file = writeConf(FULL);
    const config = requireBackupConfig(parseConfig(FULL, file));
    expect(backupArgv(config, { json: true })).toEqual([
      'backup', '/dev/sdb', '/dev/sdc', '/dev/disk/by-id/ata-X',
      '--repo', '/srv/backup/blksnap',
      '--mode', 'incremental',
      '--diff-storage', '/var/lib/blksnap/diff',
      '--limit', String(20n * 1024n ** 3n),
      '--pre-hook', 'systemctl stop postgresql # with a hash',
      '--post-hook', 'systemctl start postgresql',
      '--freeze', '/srv/data', '--freeze', '/srv/logs',
      '--json',
    ]);
  });

  test('a minimal file leaves out what is not configured', () => {
    const config = requireBackupConfig(parseConfig('repository=/r\ndevices=/dev/vdb\n', 'f'));
    expect(backupArgv(config)).toEqual(['backup', '/dev/vdb', '--repo', '/r', '--mode', 'auto', '--limit', String(DEFAULT_DIFF_STORAGE_LIMIT)]);
  });
});
