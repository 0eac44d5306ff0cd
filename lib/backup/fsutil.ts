/**
 * File primitives of the repository: private modes, atomic replacement and
 * durable directory entries. A backup repository holds whole disk images
 * (/etc/shadow included), so everything is created 0700/0600 whatever the
 * umask; and a commit is only a commit once the rename is on disk, which
 * needs an fsync of the directory that holds the entry.
 */
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/** fsync of a directory, so a create/rename/unlink inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    await handle.sync();
  } catch (err) {
    // Some filesystems (and FUSE) refuse fsync on a directory with EINVAL;
    // the rename is still atomic there, only its durability is the FS's.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
  } finally {
    await handle?.close();
  }
}

export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    fs.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** mkdir 0700 (chmod after, because the umask may have removed bits we did not ask to remove — never adds any). */
export async function mkdirPrivate(dir: string): Promise<boolean> {
  try {
    await fsp.mkdir(dir, { mode: DIR_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  await fsp.chmod(dir, DIR_MODE);
  await fsyncDir(path.dirname(dir));
  return true;
}

/**
 * Writes `data` to `file` atomically: a temporary file next to it (0600),
 * fsync, rename over `file`, fsync of the directory. A reader sees the old
 * content or the new, never a mix; a crash leaves at most a stray temp file
 * (named `.NAME.tmp-PID-RANDOM`, removed by `blksnap cleanup`).
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(16).slice(2, 10)}`);
  const handle = await fsp.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, FILE_MODE);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** Whether a temp name was made by writeFileAtomic (for cleanup of a killed writer). */
export function isAtomicTempName(name: string): boolean {
  return /^\..+\.tmp-\d+-[0-9a-f]+$/.test(name);
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
