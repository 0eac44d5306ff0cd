'use strict';
/**
 * CLI start-up: wall time from spawn to exit of `blksnap version --kernel sim`
 * against `node -e 0`, runs interleaved (A B A B ...) so that drift in the
 * machine's speed hits both alike; median of `runs` each after 2 warm-ups.
 */
const { spawnSync } = require('child_process');
const path = require('path');
const { median } = require('./util');

function timeOnce(argv, env) {
  const t = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited with ${r.status}: ${String(r.stderr).trim()}`);
  return ms;
}

function measureStartup({ runs, simDir, bin = path.join(__dirname, '..', '..', 'bin', 'blksnap') }) {
  const env = { ...process.env, BLKSNAP_SIM_DIR: simDir, BLKSNAP_CONFIG: path.join(simDir, 'no-such.conf') };
  const cli = [process.execPath, bin, 'version', '--kernel', 'sim'];
  const bare = [process.execPath, '-e', '0'];
  for (let i = 0; i < 2; i++) { timeOnce(cli, env); timeOnce(bare, env); }
  const a = [];
  const b = [];
  for (let i = 0; i < runs; i++) {
    a.push(timeOnce(cli, env));
    b.push(timeOnce(bare, env));
  }
  return { cliMs: median(a), nodeMs: median(b), cliAll: a, nodeAll: b };
}

module.exports = { measureStartup };
