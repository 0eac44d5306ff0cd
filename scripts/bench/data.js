'use strict';
/**
 * Test images. Content is pseudo-random (incompressible), every 64 KiB unit
 * distinct, generated from one random pattern so that making 2 GiB costs
 * about as much as writing it.
 */
const crypto = require('crypto');
const fs = require('fs');

const PATTERN_BYTES = 64 << 20;
const UNIT = 64 << 10;

let pattern = null;
function patternBuffer() {
  if (!pattern) pattern = crypto.randomBytes(PATTERN_BYTES);
  return pattern;
}

/** Stamps the absolute unit number into each unit so no two units are equal. */
function stamp(buf, length, fileOffset) {
  for (let at = 0; at + 16 <= length; at += UNIT) {
    const unit = (fileOffset + at) / UNIT;
    buf.writeUInt32LE(unit >>> 0, at);
    buf.writeUInt32LE(Math.floor(unit / 2 ** 32), at + 4);
  }
}

function writeRange(fd, offset, length) {
  const pat = patternBuffer();
  let done = 0;
  while (done < length) {
    const n = Math.min(pat.length, length - done);
    stamp(pat, n, offset + done);
    let w = 0;
    while (w < n) w += fs.writeSync(fd, pat, w, n - w, offset + done + w);
    done += n;
  }
}

/** A `size`-byte image with no zero region (every byte of it data). */
function makeDenseImage(file, size) {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    writeRange(fd, 0, size);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A sparse-ish `size`-byte image: `dataBytes` of data at the start of every
 * `stride` bytes, holes elsewhere (fast to make, large to scan).
 */
function makeSparseImage(file, size, stride, dataBytes) {
  const fd = fs.openSync(file, 'wx', 0o600);
  let written = 0;
  try {
    fs.ftruncateSync(fd, size);
    for (let off = 0; off < size; off += stride) {
      const n = Math.min(dataBytes, size - off);
      writeRange(fd, off, n);
      written += n;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return written;
}

/** `count` distinct block numbers out of `blockCount`, uniformly at random. */
function pickBlocks(blockCount, count) {
  const chosen = new Set();
  while (chosen.size < count) chosen.add(crypto.randomInt(blockCount));
  return [...chosen].sort((a, b) => a - b);
}

module.exports = { makeDenseImage, makeSparseImage, pickBlocks };
