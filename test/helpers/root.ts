/**
 * Tests that need root (loop devices, raw device ioctls, mounts). CI runs as
 * root, so there they run; elsewhere the suite is skipped with one printed
 * line saying why — never silently.
 */

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Why root-only tests cannot run here, or null when they can. */
export function notRootReason(): string | null {
  if (isRoot()) return null;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 'unknown';
  return `needs root (running as uid ${uid}): loop devices and block device ioctls need CAP_SYS_ADMIN; run the tests as root (CI does)`;
}

/**
 * `describe` for a suite that needs root. Not root: the suite is reported as
 * skipped and one line naming it and the reason goes to stderr.
 */
export function describeAsRoot(title: string, fn: () => void): void {
  const reason = notRootReason();
  if (reason === null) {
    describe(title, fn);
    return;
  }
  process.stderr.write(`skipped: ${title}: ${reason}\n`);
  describe.skip(`${title} (skipped: ${reason})`, fn);
}
