/**
 * Around the TAKE: the admin's pre/post hook commands (e.g. flush a
 * database) and fsfreeze of mounted filesystems, so the snapshot holds a
 * consistent state. Hook output goes to our stderr (stdout may be --json).
 */
import execa from 'execa';
import { BlksnapError, InterruptedError } from '../errors';

export async function runHook(name: string, command: string, env: Record<string, string>, signal?: AbortSignal): Promise<void> {
  const child = execa(command, {
    shell: true,
    env,
    stdin: 'ignore',
    stdout: process.stderr.fd === 2 ? 2 : 'ignore',
    stderr: process.stderr.fd === 2 ? 2 : 'ignore',
    reject: false,
    // Its own process group, so stopping it reaches the commands the shell started too.
    detached: true,
  } as execa.Options);
  const onAbort = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGTERM');
    } catch {
      child.kill('SIGTERM');
    }
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const r = await child;
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new InterruptedError('SIGINT');
    if (r.exitCode !== 0) {
      const how = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.exitCode}`;
      throw new BlksnapError(`${name} \`${command}\` ${how}`, { op: name, hint: `the backup was stopped because the ${name} failed; fix the command or drop --${name}` });
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

export interface FrozenSet {
  readonly mountpoints: string[];
  /** Thaws every frozen filesystem (each attempted even if one fails). */
  thaw(): Promise<void>;
}

/**
 * Freezes the mount points in order with `fsfreeze --freeze`. If one fails,
 * those already frozen are thawed before the error is thrown.
 */
export async function freezeFilesystems(mountpoints: readonly string[]): Promise<FrozenSet | null> {
  if (mountpoints.length === 0) return null;
  const frozen: string[] = [];
  const thaw = async () => {
    let first: unknown = null;
    for (const mp of frozen.splice(0).reverse()) {
      const r = await execa('fsfreeze', ['--unfreeze', mp], { reject: false });
      if (r.exitCode !== 0 && first === null) {
        first = new BlksnapError(`fsfreeze --unfreeze ${mp} failed: ${r.stderr.trim() || `status ${r.exitCode}`}`, { path: mp, op: 'fsfreeze', hint: `run \`fsfreeze --unfreeze ${mp}\` by hand` });
      }
    }
    if (first) throw first;
  };
  for (const mp of mountpoints) {
    const r = await execa('fsfreeze', ['--freeze', mp], { reject: false });
    if (r.exitCode !== 0) {
      await thaw().catch(() => undefined);
      throw new BlksnapError(`fsfreeze --freeze ${mp} failed: ${r.stderr.trim() || `status ${r.exitCode}`}`, { path: mp, op: 'fsfreeze', hint: 'is it a mounted filesystem that supports freezing?' });
    }
    frozen.push(mp);
  }
  return { mountpoints: [...mountpoints], thaw };
}
