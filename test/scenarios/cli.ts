/**
 * The CLI as a scenario uses it: one function per command form, each
 * returning the parsed JSON answer (schemas are documented at the top of
 * each lib/cli/commands/*.ts) and failing with the command's output when the
 * command did not do what the scenario needed.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Environment } from './env';
import { check, fail, json, ok } from './checks';
import type { CommandResult } from './process';

export interface CbtInfoDoc {
  device: string;
  device_capacity: number;
  block_size: number;
  block_count: number;
  generation_id: string;
  changes_number: number;
}

export interface SnapshotInfoDoc {
  device: string;
  error_code: number;
  image_name: string;
  image: string | null;
}

export interface CreatedSnapshot {
  id: string;
  /** Image path by canonical device path. */
  images: Map<string, string>;
  result: CommandResult;
}

export async function cbtInfo(env: Environment, device: string): Promise<CbtInfoDoc> {
  return json<CbtInfoDoc>(ok(await env.blksnap(['cbt', 'info', device, '--json']), `cbt info ${device}`), 'cbt info');
}

export async function cbtMap(env: Environment, device: string, dir: string): Promise<Buffer> {
  const out = path.join(dir, `map-${path.basename(device)}-${Date.now()}`);
  ok(await env.blksnap(['cbt', 'map', device, '--out', out]), `cbt map ${device}`);
  return fs.readFileSync(out);
}

export async function snapshotInfo(env: Environment, device: string): Promise<{ doc: SnapshotInfoDoc; result: CommandResult }> {
  const r = await env.blksnap(['snapshot', 'info', device, '--json']);
  // Exit 8 (overflowed/corrupted) still prints the document.
  if (r.code !== 0 && r.code !== 8) fail(`snapshot info ${device}: exit ${r.code}: ${r.stderr.trim()}`);
  return { doc: json<SnapshotInfoDoc>(r, 'snapshot info'), result: r };
}

/** Pulls the id and the images out of `snapshot create --json`. */
export function parseCreated(r: CommandResult): CreatedSnapshot {
  const doc = json<any>(r, 'snapshot create');
  const id: unknown = doc.id ?? doc.snapshot?.id;
  check(typeof id === 'string' && /^[0-9a-f-]{36}$/i.test(id), `snapshot create --json gave no id: ${r.stdout}`);
  const images = new Map<string, string>();
  const list: any[] = Array.isArray(doc.devices) ? doc.devices : Array.isArray(doc.snapshot?.devices) ? doc.snapshot.devices : [];
  for (const d of list) if (d && typeof d.device === 'string' && typeof d.image === 'string') images.set(d.device, d.image);
  if (doc.images && typeof doc.images === 'object' && !Array.isArray(doc.images)) {
    for (const [dev, img] of Object.entries(doc.images)) if (typeof img === 'string') images.set(dev, img);
  }
  return { id: id as string, images, result: r };
}

export async function createSnapshot(
  env: Environment,
  devices: string[],
  options: { diffStorage: string; limit: string; extra?: string[] },
): Promise<CreatedSnapshot> {
  const r = await env.blksnap(['snapshot', 'create', ...devices, '--diff-storage', options.diffStorage, '--limit', options.limit, ...(options.extra ?? []), '--json']);
  ok(r, `snapshot create ${devices.join(' ')}`);
  const created = parseCreated(r);
  for (const d of devices) check(created.images.has(d), `snapshot create --json names no image for ${d}: ${r.stdout}`);
  return created;
}

export async function destroySnapshot(env: Environment, id: string): Promise<void> {
  ok(await env.blksnap(['snapshot', 'destroy', id]), `snapshot destroy ${id}`);
}

/** `snapshot_collect`: one id per line, in creation order; without those that existed before the scenario. */
export async function collect(env: Environment): Promise<string[]> {
  const r = ok(await env.blksnap(['snapshot_collect']), 'snapshot_collect');
  return r.stdout.split('\n').map((l) => l.trim()).filter((id) => id && !env.preexistingSnapshots.includes(id));
}

export interface ChangesDoc {
  device: string;
  generation_id: string;
  since: number;
  changes_number: number;
  block_size: number;
  device_capacity: number;
  changed_bytes: number;
  ranges: { offset: number; count: number }[];
}

export async function cbtChanges(env: Environment, device: string, since: number, generation?: string): Promise<CommandResult> {
  return env.blksnap(['cbt', 'changes', device, '--since', String(since), ...(generation ? ['--generation', generation] : []), '--json']);
}

/** Every file under `dir` with its size and content hash, to prove a failed command wrote nothing. */
export function listTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const data = fs.readFileSync(p);
        out.set(path.relative(dir, p), `${data.length}:${require('crypto').createHash('sha1').update(data).digest('hex')}`);
      }
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}
