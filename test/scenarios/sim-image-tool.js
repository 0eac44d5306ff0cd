#!/usr/bin/env node
'use strict';
// Reads snapshot images of the simulated kernel for the scenarios, where the
// real environment uses dd: a simulated image is not a plain file (chunks not
// yet copied are read from the device), so it is read through the library's
// ImageReader (dist/, built by `npx tsc -p .`), with BLKSNAP_KERNEL=sim and
// BLKSNAP_SIM_DIR from the environment.
//
//   sim-image-tool.js copy IMAGE OUTFILE    the whole image → OUTFILE
//   sim-image-tool.js reader IMAGE GOFILE   read 1 MiB, print "opened", wait for GOFILE,
//                                           read the rest, print "result rc=N bytes=N"
const fs = require('fs');
const path = require('path');
const { createKernel } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'kernel', 'index.js'));

const PIECE = 1024 * 1024;

async function copy(image, outFile) {
  const kernel = await createKernel({ kernel: 'sim' });
  const reader = await kernel.openImage(image);
  const out = fs.openSync(outFile, 'w');
  try {
    const buf = Buffer.alloc(PIECE);
    for (let pos = 0n; pos < reader.size; pos += BigInt(PIECE)) {
      const len = Number(reader.size - pos < BigInt(PIECE) ? reader.size - pos : BigInt(PIECE));
      await reader.read(buf, len, pos);
      fs.writeSync(out, buf, 0, len, Number(pos));
    }
  } finally {
    fs.closeSync(out);
    await reader.close();
  }
}

async function reader(image, goFile) {
  const kernel = await createKernel({ kernel: 'sim' });
  const r = await kernel.openImage(image);
  const buf = Buffer.alloc(PIECE);
  await r.read(buf, PIECE, 0n);
  process.stdout.write('opened\n');
  while (!fs.existsSync(goFile)) await new Promise((res) => setTimeout(res, 50));
  let bytes = 0;
  let rc = 0;
  try {
    for (let pos = BigInt(PIECE); pos < r.size; pos += BigInt(PIECE)) {
      const len = Number(r.size - pos < BigInt(PIECE) ? r.size - pos : BigInt(PIECE));
      await r.read(buf, len, pos);
      bytes += len;
    }
  } catch (err) {
    rc = 1;
    process.stderr.write(`${err.name}: ${err.message}\n`);
  }
  try { await r.close(); } catch { /* gone */ }
  process.stdout.write(`result rc=${rc} bytes=${bytes}\n`);
}

const [cmd, a, b] = process.argv.slice(2);
const job = cmd === 'copy' ? copy(a, b) : cmd === 'reader' ? reader(a, b) : Promise.reject(new Error(`unknown command ${cmd}`));
job.catch((err) => {
  process.stderr.write(`sim-image-tool: ${err.message}\n`);
  process.exitCode = 1;
});
