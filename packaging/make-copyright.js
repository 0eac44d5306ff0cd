#!/usr/bin/env node
'use strict';
// make-copyright.js APPDIR MAINTAINER: prints the machine-readable Debian
// copyright file (DEP-5) for the package: our code (GPL-2+), then one
// paragraph per bundled npm package under APPDIR/node_modules with its
// license name and its own license text, so the file stays true whenever the
// dependencies change.
const fs = require('fs');
const path = require('path');

const [appDir, maintainer] = process.argv.slice(2);
if (!appDir || !maintainer) {
  process.stderr.write('usage: make-copyright.js APPDIR MAINTAINER\n');
  process.exit(2);
}
const installDir = '/usr/lib/blksnap-manager';

// SPDX (package.json) to Debian's short names; texts in /usr/share/common-licenses need no copy.
const DEBIAN_NAME = { MIT: 'Expat', ISC: 'ISC', 'Apache-2.0': 'Apache-2.0', 'BSD-2-Clause': 'BSD-2-clause', 'BSD-3-Clause': 'BSD-3-clause' };
const COMMON = {
  'Apache-2.0': 'On Debian systems, the full text of the Apache License 2.0 is in\n/usr/share/common-licenses/Apache-2.0.',
};

function packagesUnder(dir) {
  const found = [];
  if (!fs.existsSync(dir)) return found;
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue;
    const full = path.join(dir, name);
    if (name.startsWith('@')) {
      found.push(...packagesUnder(full));
      continue;
    }
    if (fs.existsSync(path.join(full, 'package.json'))) {
      found.push(full);
      found.push(...packagesUnder(path.join(full, 'node_modules')));
    }
  }
  return found;
}

function licenseFile(dir) {
  const name = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(-mit)?(\.(md|txt))?$/i.test(f));
  return name ? fs.readFileSync(path.join(dir, name), 'utf8') : null;
}

/** A DEP-5 text field: continuation lines start with a space, blank lines are " .". */
function field(text) {
  return text
    .replace(/\r/g, '')
    .trim()
    .split('\n')
    .map((line, i) => (i === 0 ? line : line.trim() === '' ? ' .' : ' ' + line.replace(/\s+$/, '')))
    .join('\n');
}

const out = [];
out.push(
  'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
  'Upstream-Name: blksnap-manager',
  '',
  'Files: *',
  `Copyright: 2026 ${maintainer}`,
  'License: GPL-2+',
  '',
);

const modules = path.join(appDir, 'node_modules');
for (const dir of packagesUnder(modules)) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const spdx = typeof pkg.license === 'string' ? pkg.license : (pkg.licenses && pkg.licenses[0] && pkg.licenses[0].type) || null;
  if (!spdx || !DEBIAN_NAME[spdx]) {
    process.stderr.write(`make-copyright.js: ${pkg.name}: license "${spdx}" has no Debian name here; add it to DEBIAN_NAME\n`);
    process.exit(1);
  }
  let text = licenseFile(dir);
  // koffi's per-platform binary packages carry no license file of their own; they are koffi's.
  if (text === null && pkg.name.startsWith('@koromix/koffi-')) text = licenseFile(path.join(modules, 'koffi'));
  const copyrightLines = text ? text.split('\n').filter((l) => /^\s*copyright\b/i.test(l) && /\d{4}/.test(l)) : [];
  const author = typeof pkg.author === 'string' ? pkg.author : pkg.author && pkg.author.name;
  const holders = copyrightLines.length > 0
    ? copyrightLines.map((l) => l.trim().replace(/^copyright\s*(\(c\)|©)?\s*/i, ''))
    : [author || `the ${pkg.name} authors`];
  const rel = path.relative(appDir, dir).split(path.sep).join('/');
  const license = DEBIAN_NAME[spdx];
  out.push(`Files: ${installDir.slice(1)}/${rel}/*`, `Copyright: ${field(holders.join('\n'))}`);
  if (COMMON[spdx]) out.push(`License: ${license}`, ' ' + field(COMMON[spdx]));
  else if (text) out.push(`License: ${license}`, ' ' + field(text));
  else {
    process.stderr.write(`make-copyright.js: ${pkg.name}: no license file to copy\n`);
    process.exit(1);
  }
  out.push('');
}

out.push(
  'License: GPL-2+',
  ' This program is free software; you can redistribute it and/or modify',
  ' it under the terms of the GNU General Public License as published by',
  ' the Free Software Foundation; either version 2 of the License, or',
  ' (at your option) any later version.',
  ' .',
  ' This program is distributed in the hope that it will be useful,',
  ' but WITHOUT ANY WARRANTY; without even the implied warranty of',
  ' MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the',
  ' GNU General Public License for more details.',
  ' .',
  ' On Debian systems, the full text of the GNU General Public License',
  ' version 2 is in /usr/share/common-licenses/GPL-2.',
);
process.stdout.write(out.join('\n') + '\n');
