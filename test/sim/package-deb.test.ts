/**
 * The Debian package, end to end: build it with scripts/package-deb.sh,
 * inspect it (dpkg-deb -I/-c), lint it (lintian: no errors), install it on
 * this machine with `dpkg -i`, run the installed blksnap on the simulated
 * kernel (version, a scheduled-job backup, verify), check that it replaces
 * the C++ `blksnap-tools` package cleanly, and purge it leaving no file.
 *
 * Why `dpkg -i` on the machine and not `dpkg --root` into a scratch root: a
 * scratch root needs its own dpkg database with `nodejs` and libc in it (or
 * --force-depends, which hides exactly the dependency errors we want to see),
 * and dpkg runs the maintainer scripts chrooted into it, so it would need a
 * shell, systemd-tmpfiles and node inside; and the installed copy would not
 * run at the paths it ships (/usr/bin/blksnap → /usr/lib/blksnap-manager).
 * CI is a root VM thrown away after the run; the test refuses to start where
 * blksnap-manager or blksnap-tools is already installed (it would remove an
 * admin's copy), and purges in afterAll whatever happens.
 *
 * Needs root, dpkg-deb, dpkg-shlibdeps (dpkg-dev), lintian, Debian's nodejs
 * package, and a compiled dist/ (`npm test` runs tsc first; it is not
 * rebuilt here because other test files may be reading dist/ meanwhile).
 */
import { execFileSync, spawnSync, SpawnSyncReturns } from 'child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';

const repo = path.join(__dirname, '..', '..');
const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { name: string; version: string };
const NAME = 'blksnap-manager';
const INSTALL_DIR = `/usr/lib/${NAME}`;

jest.setTimeout(180_000);

function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    encoding: 'utf8',
    cwd: options.cwd ?? repo,
    env: options.env ?? process.env,
    input: options.input,
    timeout: 120_000,
  });
}

/** A command that must succeed: its output, or a failure showing the command and what it printed. */
function ok(cmd: string, args: string[], options: Parameters<typeof run>[2] = {}): string {
  const r = run(cmd, args, options);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}${r.error ? '\n' + r.error.message : ''}`);
  }
  return r.stdout;
}

/** dpkg's status line for a package (`install ok installed`), or `not-installed`. */
function dpkgStatus(pkgName: string): string {
  const r = run('dpkg-query', ['-W', '-f=${Status}', pkgName]);
  const status = r.status === 0 ? r.stdout.trim() : '';
  return status === '' || status.endsWith(' not-installed') ? 'not-installed' : status;
}
/** Known to dpkg in any state but gone (unpacked, half-installed, config-files...). */
const isPresent = (pkgName: string) => dpkgStatus(pkgName) !== 'not-installed';

function have(tool: string): boolean {
  return run('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/**
 * Drives the installed copy's simulated kernel admin API in a child node:
 * `['createDevice', path, bytes]`, `['writeDevice', path, offset, length, byte]`.
 */
function simAdmin(simDir: string, ops: Array<[string, ...Array<string | number>]>): void {
  const script = `
    const sim = require(${JSON.stringify(`${INSTALL_DIR}/dist/lib/kernel/sim`)});
    (async () => {
      const admin = await sim.openSimAdmin(process.argv[1]);
      for (const [op, file, a, b, c] of JSON.parse(process.argv[2])) {
        if (op === 'createDevice') await admin.createDevice(file, a);
        else await admin.writeDevice(file, a, Buffer.alloc(b, c));
      }
    })().catch((err) => { console.error(err.stack || err); process.exit(1); });`;
  ok(process.execPath, ['-e', script, simDir, JSON.stringify(ops)]);
}

let work: string;
let deb: string;
let listing: string[] = [];
/** Paths of ours that existed before the test (left alone by the leftover check). */
const existedBefore = new Map<string, boolean>();
const WATCHED = ['/etc/blksnap', '/run/blksnap', INSTALL_DIR, '/usr/bin/blksnap', `/usr/share/doc/${NAME}`];

beforeAll(() => {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (dpkg -i)');
  for (const [tool, from] of [['dpkg-deb', 'dpkg'], ['dpkg-shlibdeps', 'dpkg-dev'], ['lintian', 'lintian']]) {
    if (!have(tool)) missing.push(`${tool} (apt-get install ${from})`);
  }
  if (dpkgStatus('nodejs') !== 'install ok installed') missing.push("Debian's nodejs package (the .deb depends on it)");
  if (missing.length > 0) throw new Error(`package test needs: ${missing.join(', ')}`);
  for (const other of [NAME, 'blksnap-tools']) {
    if (isPresent(other)) {
      throw new Error(`${other} is installed on this machine (${dpkgStatus(other)}); this test installs and purges packages: run it on a scratch machine (or \`dpkg --purge ${other}\` if a killed run of this test left it)`);
    }
  }
  for (const p of WATCHED) existedBefore.set(p, existsSync(p));
  work = mkdtempSync(path.join(tmpdir(), 'blksnap-pkgtest-'));
});

afterAll(() => {
  // Whatever failed above: leave no package behind.
  for (const other of [NAME, 'blksnap-tools']) {
    if (isPresent(other)) run('dpkg', ['--purge', other]);
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('blksnap-manager.deb', () => {
  test('npm run package:deb builds blksnap-manager_<version>_<arch>.deb', () => {
    const out = path.join(work, 'out');
    const printed = ok('bash', ['scripts/package-deb.sh', '--out', out]);
    const arch = ok('dpkg', ['--print-architecture']).trim();
    deb = path.join(out, `${NAME}_${pkg.version}_${arch}.deb`);
    expect(printed).toContain(deb);
    expect(statSync(deb).size).toBeGreaterThan(0);
  });

  test('dpkg-deb -I: name, version, architecture, dependencies, conflicts, conffile', () => {
    const field = (name: string) => ok('dpkg-deb', ['-f', deb, name]).trim();
    expect(field('Package')).toBe(NAME);
    expect(field('Version')).toBe(pkg.version);
    expect(field('Architecture')).toBe(ok('dpkg', ['--print-architecture']).trim());
    // koffi ships native code: the package is per architecture, and its
    // library dependencies come from dpkg-shlibdeps.
    expect(field('Architecture')).not.toBe('all');
    expect(field('Depends')).toMatch(/^nodejs \(>= 18\), .*libc6 \(>= [0-9.]+\)/);
    expect(field('Conflicts')).toBe('blksnap-tools');
    expect(field('Replaces')).toBe('blksnap-tools');
    const info = ok('dpkg-deb', ['-I', deb]);
    expect(info).toMatch(/\bconffiles\b/);
    expect(info).toMatch(/postinst/);
    expect(ok('dpkg-deb', ['-I', deb, 'conffiles']).trim()).toBe('/etc/blksnap/blksnap.conf');
  });

  test('dpkg-deb -c: what an admin needs, and nothing a build leaves behind', () => {
    const lines = ok('dpkg-deb', ['-c', deb]).trim().split('\n');
    // "drwxr-xr-x root/root 0 2026-11-30 03:00 ./usr/" → owner and path
    const entries = lines.map((l) => {
      const cols = l.split(/\s+/);
      return { mode: cols[0], owner: cols[1], path: cols.slice(5).join(' ').replace(/^\./, '').replace(/ -> .*$/, '') };
    });
    listing = entries.map((e) => e.path);
    for (const e of entries) expect(`${e.path} ${e.owner}`).toBe(`${e.path} root/root`);
    for (const wanted of [
      '/usr/bin/blksnap',
      `${INSTALL_DIR}/bin/blksnap`,
      `${INSTALL_DIR}/package.json`,
      `${INSTALL_DIR}/dist/lib/cli/main.js`,
      `${INSTALL_DIR}/dist/lib/config/index.js`,
      `${INSTALL_DIR}/libexec/blksnap-backup-job`,
      `${INSTALL_DIR}/node_modules/yargs/package.json`,
      `${INSTALL_DIR}/node_modules/koffi/package.json`,
      '/usr/share/man/man8/blksnap.8.gz',
      '/usr/share/bash-completion/completions/blksnap',
      '/etc/blksnap/blksnap.conf',
      '/lib/systemd/system/blksnap-backup@.service',
      '/lib/systemd/system/blksnap-backup@.timer',
      `/usr/lib/tmpfiles.d/${NAME}.conf`,
      `/usr/share/doc/${NAME}/copyright`,
      `/usr/share/doc/${NAME}/changelog.gz`,
    ]) {
      expect(listing).toContain(wanted);
    }
    const executable = (p: string) => entries.find((e) => e.path === p)?.mode;
    expect(executable('/usr/bin/blksnap')).toBe('-rwxr-xr-x');
    expect(executable(`${INSTALL_DIR}/libexec/blksnap-backup-job`)).toBe('-rwxr-xr-x');
    // No tests, TypeScript, source maps or dev dependencies.
    expect(listing.filter((p) => /\/dist\/test\/|\.ts$|\.map$|\/node_modules\/(jest|typescript|@swc|fast-check)\//.test(p))).toEqual([]);
    // Native code only for this machine: one koffi.node, glibc, this CPU.
    const natives = listing.filter((p) => p.endsWith('.node'));
    expect(natives).toHaveLength(1);
    expect(natives[0]).toContain(`linux_${process.arch}/koffi.node`);
  });

  test('lintian finds no errors', () => {
    const r = run('lintian', ['--fail-on', 'error', '--no-tag-display-limit', deb]);
    const errors = r.stdout.split('\n').filter((l) => l.startsWith('E:'));
    expect(errors).toEqual([]);
    expect(r.status).toBe(0);
  });

  test('it replaces the C++ blksnap-tools package, which ships the same command', () => {
    // A stand-in for blksnap-tools with the files that collide.
    const tools = path.join(work, 'blksnap-tools');
    mkdirSync(path.join(tools, 'DEBIAN'), { recursive: true });
    mkdirSync(path.join(tools, 'usr/bin'), { recursive: true });
    mkdirSync(path.join(tools, 'usr/share/man/man8'), { recursive: true });
    writeFileSync(path.join(tools, 'usr/bin/blksnap'), '#!/bin/sh\necho reference blksnap\n', { mode: 0o755 });
    writeFileSync(path.join(tools, 'usr/share/man/man8/blksnap.8.gz'), execFileSync('gzip', ['-9n'], { input: '.TH BLKSNAP 8\n' }));
    writeFileSync(
      path.join(tools, 'DEBIAN/control'),
      `Package: blksnap-tools\nVersion: 1.0.0.0\nArchitecture: ${ok('dpkg', ['--print-architecture']).trim()}\nMaintainer: test <test@example.org>\nDescription: stand-in for the reference tool\n`,
    );
    const toolsDeb = path.join(work, 'blksnap-tools.deb');
    ok('dpkg-deb', ['--root-owner-group', '--build', tools, toolsDeb]);
    ok('dpkg', ['-i', toolsDeb]);
    expect(readFileSync('/usr/bin/blksnap', 'utf8')).toContain('reference blksnap');

    // Installing ours removes it (Conflicts + Replaces) and takes over the command.
    ok('dpkg', ['-i', deb]);
    expect(dpkgStatus(NAME)).toBe('install ok installed');
    expect(isPresent('blksnap-tools')).toBe(false);
    expect(readFileSync('/usr/bin/blksnap', 'utf8')).toContain(`${INSTALL_DIR}/bin/blksnap`);

    // The other way round dpkg refuses, and ours stays intact.
    const back = run('dpkg', ['-i', toolsDeb]);
    expect(back.status).not.toBe(0);
    expect(back.stderr).toMatch(/conflict/i);
    expect(readFileSync('/usr/bin/blksnap', 'utf8')).toContain(`${INSTALL_DIR}/bin/blksnap`);
    run('dpkg', ['--purge', 'blksnap-tools']);
  });

  test('the maintainer scripts made /run/blksnap (root only) and the units are valid', () => {
    const st = statSync('/run/blksnap');
    expect(st.isDirectory()).toBe(true);
    if (!existedBefore.get('/run/blksnap')) expect(st.mode & 0o777).toBe(0o700);
    // systemd-analyze checks units offline; a template needs an instance name.
    const units = path.join(work, 'units');
    mkdirSync(units);
    for (const kind of ['service', 'timer']) {
      writeFileSync(path.join(units, `blksnap-backup@pkgtest.${kind}`), readFileSync(`/lib/systemd/system/blksnap-backup@.${kind}`));
    }
    const r = run('systemd-analyze', ['verify', '--man=no', path.join(units, 'blksnap-backup@pkgtest.service'), path.join(units, 'blksnap-backup@pkgtest.timer')]);
    expect(`${r.status} ${r.stderr}`).toBe('0 ');
  });

  test('the installed blksnap runs: --version, version --kernel sim, completion', () => {
    const simDir = path.join(work, 'sim-version');
    expect(ok('/usr/bin/blksnap', ['--version']).trim()).toBe(pkg.version);
    const version = ok('/usr/bin/blksnap', ['version', '--kernel', 'sim', '--sim-dir', simDir]);
    expect(version).toContain(pkg.version);
    const completion = ok('bash', ['-c', 'source /usr/share/bash-completion/completions/blksnap && complete -p blksnap']);
    expect(completion).toMatch(/complete .* blksnap$/m);
  });

  test('the scheduled job backs up the configured sim devices with the installed copy', () => {
    const simDir = path.join(work, 'sim');
    const repoDir = path.join(work, 'repo');
    const device = path.join(work, 'disk.img');
    simAdmin(simDir, [
      ['createDevice', device, 8 * 1024 * 1024],
      ['writeDevice', device, 0, 65536, 0x5a],
    ]);

    const conf = path.join(work, 'pkgtest.conf');
    const diffDir = path.join(work, 'diff');
    mkdirSync(diffDir);
    writeFileSync(conf, `# written by the package test\nrepository = ${repoDir}\ndevices = ${device}\nmode = auto\ndiff_storage_dir = ${diffDir}\ndiff_storage_limit = 64M\n`);
    const env = { ...process.env, BLKSNAP_KERNEL: 'sim', BLKSNAP_SIM_DIR: simDir };
    const job = run(`${INSTALL_DIR}/libexec/blksnap-backup-job`, [conf], { env });
    expect({ status: job.status, stderr: job.stderr }).toEqual({ status: 0, stderr: expect.stringContaining(`blksnap backup ${device} --repo ${repoDir}`) });
    // The summary the journal keeps: one JSON line.
    expect(job.stdout.trim().split('\n')).toHaveLength(1);
    const summary = JSON.parse(job.stdout);
    expect(summary.repository).toBe(repoDir);
    expect(summary.devices.map((d: { mode: string }) => d.mode)).toEqual(['full']);

    ok('/usr/bin/blksnap', ['verify', '--repo', repoDir, '--kernel', 'sim', '--sim-dir', simDir]);

    // A second night, after a write: an incremental.
    simAdmin(simDir, [['writeDevice', device, 1024 * 1024, 4096, 0xa5]]);
    const second = run(`${INSTALL_DIR}/libexec/blksnap-backup-job`, [conf], { env });
    expect(second.status).toBe(0);
    const next = JSON.parse(second.stdout);
    expect(next.devices.map((d: { mode: string }) => d.mode)).toEqual(['incremental']);
    expect(next.devices[0].changed_blocks).toBe(1);
  });

  test('the job refuses a bad configuration with one line naming file, line and key, and backs up nothing', () => {
    const conf = path.join(work, 'bad.conf');
    const repoDir = path.join(work, 'bad-repo');
    writeFileSync(conf, `repository = ${repoDir}\ndevices = /dev/null\ndiff_storage_limit = 20X\n`);
    const r = run(`${INSTALL_DIR}/libexec/blksnap-backup-job`, [conf]);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(`blksnap-backup-job: ${conf}:3: diff_storage_limit: invalid size "20X": expected a number with an optional suffix K, M, G, T, P or E`);
    expect(existsSync(repoDir)).toBe(false);
  });

  test('remove keeps the edited configuration; purge leaves no file behind', () => {
    writeFileSync('/etc/blksnap/blksnap.conf', readFileSync('/etc/blksnap/blksnap.conf', 'utf8') + 'mode = full\n');
    ok('dpkg', ['--remove', NAME]);
    expect(existsSync('/usr/bin/blksnap')).toBe(false);
    expect(existsSync(INSTALL_DIR)).toBe(false);
    expect(readFileSync('/etc/blksnap/blksnap.conf', 'utf8')).toContain('mode = full');
    expect(dpkgStatus(NAME)).toBe('deinstall ok config-files');

    ok('dpkg', ['--purge', NAME]);
    expect(dpkgStatus(NAME)).toBe('not-installed');
    const left = listing.filter((p) => {
      if (p === '/' || existedBefore.get(p)) return false;
      try {
        const st = lstatSync(p);
        // Shared directories (/usr, /etc, /lib/systemd/system...) stay, of course.
        return !st.isDirectory() || p.startsWith(INSTALL_DIR) || p.startsWith('/etc/blksnap') || p.startsWith(`/usr/share/doc/${NAME}`);
      } catch {
        return false;
      }
    });
    expect(left).toEqual([]);
    for (const p of WATCHED) {
      if (!existedBefore.get(p)) expect(`${p} exists: ${existsSync(p)}`).toBe(`${p} exists: false`);
    }
  });
});
