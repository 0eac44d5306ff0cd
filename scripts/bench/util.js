'use strict';
/**
 * Benchmark plumbing: timed child processes, the temp directory and loop
 * devices the run creates (always removed, also on failure and on
 * SIGINT/SIGTERM), page-cache dropping, hardware description.
 */
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const MiB = 1 << 20;
const GiB = 1 << 30;

/** Everything the run must undo, in one place. */
class Resources {
  constructor() {
    this.dirs = [];
    this.loops = [];
    this.children = new Set();
    this.cleaned = false;
  }

  tempDir(parent) {
    const dir = fs.mkdtempSync(path.join(parent, 'blksnap-bench-'));
    this.dirs.push(dir);
    return dir;
  }

  /** A read-only loop device over `file`; detached by cleanup() whatever happens. */
  attachLoop(file) {
    const r = spawnSync('losetup', ['--find', '--show', '--read-only', file], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`losetup ${file}: ${(r.stderr || r.error || '').toString().trim()}`);
    const dev = r.stdout.trim();
    this.loops.push(dev);
    return dev;
  }

  detachLoop(dev) {
    const r = spawnSync('losetup', ['-d', dev], { encoding: 'utf8' });
    this.loops = this.loops.filter((d) => d !== dev);
    if (r.status !== 0) process.stderr.write(`bench: losetup -d ${dev}: ${(r.stderr || '').trim()}\n`);
  }

  /** Synchronous, so it also works from an 'exit' handler. */
  cleanup() {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const child of this.children) {
      try { child.kill('SIGKILL'); } catch { /* gone */ }
    }
    for (const dev of [...this.loops]) this.detachLoop(dev);
    for (const dir of this.dirs) {
      try { fs.rmSync(dir, { recursive: true, force: true }); } catch (err) { process.stderr.write(`bench: could not remove ${dir}: ${err.message}\n`); }
    }
  }
}

const resources = new Resources();
let stopping = false;

/**
 * On SIGINT/SIGTERM: pass the signal to the running child (a blksnap backup
 * then destroys its snapshot and removes its temp files), give it time to
 * finish that, then remove everything and exit 130/143.
 */
function installSignalHandlers() {
  const handler = async (sig) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\nbench: ${sig}: stopping and cleaning up\n`);
    const waits = [];
    for (const child of resources.children) {
      waits.push(new Promise((resolve) => child.once('close', resolve)));
      try { child.kill(sig); } catch { /* gone */ }
    }
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 20000))]);
    resources.cleanup();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  process.on('exit', () => resources.cleanup());
}

/**
 * Runs a command; resolves with {code, stdout, stderr, ms, maxRssKiB}.
 * With `rss`, the command runs under /usr/bin/time (its ru_maxrss is exact);
 * without /usr/bin/time, VmHWM of the child is polled instead.
 */
function run(cmd, args, options = {}) {
  return new Promise((resolve, reject) => {
    if (stopping) return reject(new Error('interrupted'));
    let argv = [cmd, ...args];
    let rssFile = null;
    if (options.rss && hasTime()) {
      rssFile = path.join(options.rssDir || os.tmpdir(), `rss-${process.pid}-${Date.now()}`);
      argv = ['/usr/bin/time', '-f', '%M', '-o', rssFile, ...argv];
    }
    const started = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { env: options.env || process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    resources.children.add(child);
    let hwm = 0;
    const poll = options.rss && !rssFile ? setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) hwm = Math.max(hwm, Number(m[1]));
      } catch { /* exited */ }
    }, 20) : null;
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', (e) => {
      resources.children.delete(child);
      if (poll) clearInterval(poll);
      reject(e);
    });
    child.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resources.children.delete(child);
      if (poll) clearInterval(poll);
      let maxRssKiB = hwm || null;
      if (rssFile) {
        try {
          maxRssKiB = Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop());
          fs.rmSync(rssFile, { force: true });
        } catch { /* none */ }
      }
      const result = { code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms, maxRssKiB };
      if (options.check !== false && code !== 0) {
        const e = new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
        e.result = result;
        return reject(e);
      }
      resolve(result);
    });
  });
}

let timeAvailable = null;
function hasTime() {
  if (timeAvailable === null) timeAvailable = fs.existsSync('/usr/bin/time') && spawnSync('/usr/bin/time', ['-f', '%M', 'true']).status === 0;
  return timeAvailable;
}

/**
 * Cold data before a timed run: each file is synced, then its pages are
 * dropped from the page cache (posix_fadvise DONTNEED through GNU dd's
 * nocache flag), so every contender reads it from the disk. Only the data
 * files are evicted: node, the tools and their libraries stay cached, as
 * they would be for a nightly job on a running server.
 */
function evict(...paths) {
  const files = [];
  for (const p of paths) {
    let st;
    try { st = fs.statSync(p); } catch { continue; }
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p, { recursive: true })) {
        const f = path.join(p, String(e));
        try { if (fs.statSync(f).isFile()) files.push(f); } catch { /* raced */ }
      }
    } else if (st.isFile()) files.push(p);
  }
  for (const f of files) {
    spawnSync('sync', [f]);
    const r = spawnSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
    if (r.status !== 0) return false;
  }
  return true;
}

/** The shell form of evict() for every file directly in `dir` (used in a hook). */
function evictShell(dir) {
  return `for f in ${JSON.stringify(dir)}/*; do [ -f "$f" ] && sync "$f" && dd if="$f" iflag=nocache count=0 status=none; done`;
}

function sh(cmd) {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function hardware(workDir) {
  const cpus = os.cpus();
  const fsLine = sh(`findmnt -n -o FSTYPE,SOURCE,OPTIONS -T ${JSON.stringify(workDir)}`) || sh(`stat -f -c %T ${JSON.stringify(workDir)}`) || 'unknown';
  const [fstype, source, mountOptions] = fsLine.split(/\s+/);
  return {
    nproc: Number(sh('nproc')) || cpus.length,
    cpuModel: cpus[0] ? cpus[0].model.trim() : 'unknown',
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    workDir,
    filesystem: { type: fstype || 'unknown', source: source || null, options: mountOptions || null },
    freeBytesAtStart: Number(sh(`df -B1 --output=avail ${JSON.stringify(workDir)} | tail -1`)) || null,
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function human(bytes) {
  if (bytes >= GiB) return `${+(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${+(bytes / MiB).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

module.exports = { MiB, GiB, resources, installSignalHandlers, run, evict, evictShell, hardware, median, human, hasTime, isStopping: () => stopping };
