'use strict';
/**
 * V8 code cache for the CommonJS modules of this tree (dist/ and
 * node_modules/): the launcher installs it before loading the CLI, so each
 * module is compiled from V8's cached bytecode instead of from source.
 * Node 20 has no module.enableCompileCache (22.1+), hence this small hook.
 *
 * One file per V8 version and architecture, <root>/dist/v8-code-cache/.
 * Every entry carries the sha1 of the source it was made from; an entry for
 * other source, a file that does not parse, or data V8 rejects (other
 * flags, other build) is ignored and the module compiles as usual. A stale
 * or corrupt cache can cost time, never correctness.
 *
 * Who writes it: `node bin/code-cache.js [ROOT]` (build or packaging time;
 * the Debian package's /usr/lib/blksnap-manager is never written at run
 * time), and, in a source checkout only (tsconfig.json next to dist/), the
 * launcher itself at exit when some module it loaded had no valid entry.
 */
const crypto = require('crypto');
const fs = require('fs');
const Module = require('module');
const path = require('path');
const vm = require('vm');

const MAGIC = 'blksnap-v8-code-cache 1';

function cacheFileOf(root) {
  return path.join(root, 'dist', 'v8-code-cache', `${process.versions.v8}-${process.arch}.bin`);
}

function sha1(text) {
  return crypto.createHash('sha1').update(text).digest('hex');
}

/**
 * The entries of a cache file: Map(relative path -> {hash, data}). Layout:
 * u32le header length, JSON header {magic, v8, arch, dataSha1, entries:
 * [{path, hash, offset, length}]}, then the data blobs. Anything that does not check out
 * gives an empty map.
 */
function readCache(file) {
  const entries = new Map();
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return entries;
  }
  try {
    if (buf.length < 4) return entries;
    const headerLength = buf.readUInt32LE(0);
    if (headerLength > buf.length - 4) return entries;
    const header = JSON.parse(buf.toString('utf8', 4, 4 + headerLength));
    if (!header || header.magic !== MAGIC || header.v8 !== process.versions.v8 || header.arch !== process.arch || !Array.isArray(header.entries)) return entries;
    const base = 4 + headerLength;
    // V8 checks only some of the data it is given (version, flags, source
    // length); damaged bytes past those checks must never reach it.
    if (crypto.createHash('sha1').update(buf.subarray(base)).digest('hex') !== header.dataSha1) return entries;
    for (const e of header.entries) {
      if (!e || typeof e.path !== 'string' || typeof e.hash !== 'string') continue;
      if (!Number.isSafeInteger(e.offset) || !Number.isSafeInteger(e.length) || e.offset < 0 || e.length <= 0) continue;
      if (base + e.offset + e.length > buf.length) continue;
      entries.set(e.path, { hash: e.hash, data: buf.subarray(base + e.offset, base + e.offset + e.length) });
    }
  } catch {
    entries.clear();
  }
  return entries;
}

/** Writes the whole file next to its final name and renames it: a reader sees the old file or the new one. */
function writeCache(file, entries) {
  const list = [];
  const blobs = [];
  let offset = 0;
  for (const [rel, e] of [...entries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    list.push({ path: rel, hash: e.hash, offset, length: e.data.length });
    blobs.push(e.data);
    offset += e.data.length;
  }
  const data = Buffer.concat(blobs);
  const dataSha1 = crypto.createHash('sha1').update(data).digest('hex');
  const header = Buffer.from(JSON.stringify({ magic: MAGIC, v8: process.versions.v8, arch: process.arch, dataSha1, entries: list }));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length, 0);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, Buffer.concat([length, header, data]), { mode: 0o644 });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** `require` for a module compiled here, as Node builds it for its own wrapper. */
function requireFor(mod) {
  const req = (id) => mod.require(id);
  req.resolve = (request, options) => Module._resolveFilename(request, mod, false, options);
  req.resolve.paths = (request) => Module._resolveLookupPaths(request, mod);
  req.main = process.mainModule;
  req.extensions = Module._extensions;
  req.cache = Module._cache;
  return req;
}

/**
 * Hooks CommonJS compilation of the files under `root`. Returns
 * {save()}: writes the cache when an entry was missing, stale or rejected
 * (or always with `force`); never throws.
 */
function install(root, { force = false } = {}) {
  const file = cacheFileOf(root);
  const entries = readCache(file);
  const compiled = new Map();
  let stale = false;
  const original = Module.prototype._compile;
  Module.prototype._compile = function compileWithCache(content, filename) {
    const rel = path.relative(root, filename);
    // Outside the tree, and sources Node must treat specially (a hashbang
    // line, dynamic import(), which needs Node's loader callback): as usual.
    if (rel.startsWith('..') || path.isAbsolute(rel) || content.startsWith('#!') || content.includes('import(')) {
      return original.call(this, content, filename);
    }
    const hash = sha1(content);
    const entry = entries.get(rel);
    const cachedData = entry && entry.hash === hash ? entry.data : undefined;
    let script;
    try {
      script = new vm.Script(Module.wrap(content), { filename, cachedData });
    } catch {
      return original.call(this, content, filename); // a syntax error: Node reports it its own way
    }
    if (!cachedData || script.cachedDataRejected) stale = true;
    compiled.set(rel, { script, hash });
    const fn = script.runInThisContext({ displayErrors: true });
    return fn.call(this.exports, this.exports, requireFor(this), this, filename, path.dirname(filename));
  };
  return {
    file,
    save() {
      if (!stale && !force) return false;
      try {
        const next = new Map(entries);
        for (const [rel, c] of compiled) next.set(rel, { hash: c.hash, data: c.script.createCachedData() });
        writeCache(file, next);
        return true;
      } catch {
        return false; // read-only tree, full disk: the next run compiles from source again
      }
    },
  };
}

/** The launcher's use: the cache of this tree; saved at exit only in a source checkout. */
function installForLauncher(root) {
  const cache = install(root);
  if (fs.existsSync(path.join(root, 'tsconfig.json'))) process.once('exit', () => cache.save());
  return cache;
}

module.exports = { install, installForLauncher, readCache, writeCache, cacheFileOf, MAGIC };

// Build step: `node bin/code-cache.js [ROOT]` runs the CLI's start-up path
// in-process (help, and version on a throwaway simulated kernel), so the
// cached data includes the functions that path compiles, then writes it.
if (require.main === module) {
  const os = require('os');
  const root = path.resolve(process.argv[2] || path.join(__dirname, '..'));
  const cache = install(root, { force: true });
  const simDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-code-cache-'));
  const sink = { write: () => true, isTTY: false, columns: 100 };
  const env = { PATH: process.env.PATH || '', BLKSNAP_CONFIG: path.join(simDir, 'none.conf'), BLKSNAP_RUN_DIR: path.join(simDir, 'run') };
  (async () => {
    const { runCli } = require(path.join(root, 'dist', 'lib', 'cli', 'main.js'));
    const io = { stdout: sink, stderr: sink, env, stderrIsTTY: false };
    await runCli(['--help'], io);
    await runCli(['version', '--kernel', 'sim', '--sim-dir', path.join(simDir, 'sim')], io);
  })()
    .then(() => {
      if (!cache.save()) throw new Error(`${cache.file}: could not be written`);
      process.stdout.write(`${cache.file}\n`);
    })
    .catch((err) => {
      process.stderr.write(`code-cache: ${err && err.message ? err.message : err}\n`);
      process.exitCode = 1;
    })
    .finally(() => fs.rmSync(simDir, { recursive: true, force: true }));
}
