import * as fs from 'fs';
import * as path from 'path';

let cached: string | null = null;

/** The version in this package's package.json (found from source or from dist/). */
export function toolVersion(): string {
  if (cached) return cached;
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, rel), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'blksnap-manager' && pkg.version) return (cached = pkg.version);
    } catch {
      /* try the next location */
    }
  }
  return (cached = '0.0.0');
}
