/**
 * Property test of the simulated kernel against an independent oracle:
 * random admin writes, writes by other programs, CBTDIRTY marks and takes
 * (with bursts of takes that cross the reset at 256). After every TAKE:
 *  (i)  the image equals the device content at that TAKE, and images of
 *       earlier takes still equal their TAKE-time content after later writes;
 *  (ii) for every earlier take j of the same generation that reported
 *       changes_number c, the blocks whose map byte is > c are exactly the
 *       blocks written (or marked dirty) since take j.
 * The take that performs the reset reports changes_number 255 with the new
 * generation and keeps the old read map (§4); it is no base for (ii).
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';
import {
  attachedDevice, cbtInfo, cbtMap, createSnapshot, destroy, makeSim, markDirty, readImage, snapshotAdd, snapshotInfo, take,
  type Sim,
} from './sim-helpers';

const BLOCK = 4096; // tracking_block_minimum_shift 12 (SMALL_PARAMS)
const BLOCKS = 48;
const SIZE = BLOCK * BLOCKS;

type Cmd =
  | { kind: 'admin'; offset: number; length: number; seed: number }
  | { kind: 'external'; offset: number; length: number; seed: number }
  | { kind: 'dirty'; ranges: Array<[number, number]> }
  | { kind: 'take'; burst: number };

const span = fc.tuple(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 3 * BLOCK })).map(([o, l]) => [o, Math.min(l, SIZE - o)] as const);
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(span, fc.integer()).map(([[offset, length], seed]) => ({ kind: 'admin' as const, offset, length, seed })) },
  { weight: 3, arbitrary: fc.tuple(span, fc.integer()).map(([[offset, length], seed]) => ({ kind: 'external' as const, offset, length, seed })) },
  {
    weight: 2,
    arbitrary: fc.array(fc.tuple(fc.integer({ min: 0, max: SIZE / 512 - 1 }), fc.integer({ min: 1, max: 40 })), { minLength: 1, maxLength: 3 })
      .map((rs) => ({ kind: 'dirty' as const, ranges: rs.map(([o, c]) => [o, Math.min(c, SIZE / 512 - o)] as [number, number]) })),
  },
  { weight: 3, arbitrary: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 12 })).map((burst) => ({ kind: 'take' as const, burst })) },
);

/** Deterministic non-trivial bytes for a seed. */
function bytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

interface TakeRecord { seq: number; gen: string; c: number }

class Oracle {
  content = Buffer.alloc(SIZE);
  lastWrite = new Array<number>(BLOCKS).fill(0);
  seq = 1;
  takes: TakeRecord[] = [];

  wrote(offset: number, length: number, onlyChanged: Buffer | null): void {
    const s = ++this.seq;
    for (let b = Math.floor(offset / BLOCK); b <= Math.floor((offset + length - 1) / BLOCK); b++) {
      if (onlyChanged) {
        const a = Math.max(offset, b * BLOCK);
        const e = Math.min(offset + length, (b + 1) * BLOCK);
        if (this.content.subarray(a, e).equals(onlyChanged.subarray(a - offset, e - offset))) continue;
      }
      this.lastWrite[b] = s;
    }
  }
}

async function run(flavour: 'upstream' | 'standalone', preTakes: number, cmds: Cmd[], mode: 'copy' | 'cow' = 'copy'): Promise<void> {
  const sim: Sim = await makeSim(flavour);
  try {
    await sim.admin.setImageMode(mode);
    const dev = await attachedDevice(sim, 'disk.img', SIZE);
    const storage = path.join(sim.dir, 'diff');
    fs.mkdirSync(storage);
    const o = new Oracle();
    let live: { id: Buffer; image: string; frozen: Buffer } | null = null;

    const oneTake = async (check: boolean): Promise<void> => {
      if (live) {
        if (check) expect((await readImage(sim, live.image)).equals(live.frozen)).toBe(true);
        destroy(sim, live.id);
      }
      const id = createSnapshot(sim, storage, 1n << 20n);
      snapshotAdd(sim, dev, id);
      take(sim, id);
      const frozen = Buffer.from(o.content);
      const image = snapshotInfo(sim, dev).image;
      const info = cbtInfo(sim, dev);
      const gen = info.generation_id.b.toString('hex');
      const seq = ++o.seq;
      if (check) {
        expect((await readImage(sim, image)).equals(frozen)).toBe(true); // (i)
        const map = cbtMap(sim, dev);
        for (const j of o.takes) {
          if (j.gen !== gen || j.c === 255) continue;
          const got = [...map.keys()].filter((b) => map[b] > j.c);
          const want = [...o.lastWrite.keys()].filter((b) => o.lastWrite[b] > j.seq);
          expect({ base: j.c, blocks: got }).toEqual({ base: j.c, blocks: want }); // (ii)
        }
      }
      o.takes.push({ seq, gen, c: info.changes_number });
      live = { id, image, frozen };
    };

    for (let i = 0; i < preTakes; i++) await oneTake(false);
    for (const c of cmds) {
      switch (c.kind) {
        case 'admin': {
          const data = bytes(c.length, c.seed);
          await sim.admin.writeDevice(dev, c.offset, data);
          o.wrote(c.offset, c.length, null);
          data.copy(o.content, c.offset);
          break;
        }
        case 'external': {
          // Another program: only a content change is visible (documented difference).
          const data = bytes(c.length, c.seed);
          const fd = fs.openSync(dev, 'r+');
          fs.writeSync(fd, data, 0, data.length, c.offset);
          fs.closeSync(fd);
          o.wrote(c.offset, c.length, data);
          data.copy(o.content, c.offset);
          break;
        }
        case 'dirty': {
          expect(markDirty(sim, dev, c.ranges.map(([s, n]) => [BigInt(s), BigInt(n)]))).toBe(0);
          for (const [s, n] of c.ranges) o.wrote(s * 512, n * 512, null);
          break;
        }
        case 'take':
          for (let k = 1; k < c.burst; k++) await oneTake(false);
          await oneTake(true);
          break;
      }
    }
    await oneTake(true);
  } finally {
    sim.cleanup();
  }
}

test('cow image mode: the same properties when every write goes through the simulated block layer', async () => {
  const noExternal = cmd.filter((c) => c.kind !== 'external');
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('upstream' as const, 'standalone' as const), fc.array(noExternal, { minLength: 1, maxLength: 25 }), (flavour, cmds) => run(flavour, 0, cmds, 'cow')),
    { numRuns: 10 },
  );
}, 120_000);

describe.each(['upstream', 'standalone'] as const)('simulated %s kernel against an oracle', (flavour) => {
  test('images equal the device at TAKE; map bytes > c are exactly the blocks written since the take that reported c', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(0, 0, 0, 240), fc.array(cmd, { minLength: 1, maxLength: 25 }), (pre, cmds) => run(flavour, pre, cmds)),
      {
        numRuns: 14,
        // Always cross the reset at 256 once, with writes on both sides of it.
        examples: [[240, [
          { kind: 'admin', offset: 0, length: 9000, seed: 1 }, { kind: 'take', burst: 12 },
          { kind: 'external', offset: 20000, length: 5000, seed: 2 }, { kind: 'take', burst: 5 },
          { kind: 'dirty', ranges: [[100, 20]] }, { kind: 'admin', offset: 60000, length: 100, seed: 3 }, { kind: 'take', burst: 1 },
        ]]],
      },
    );
  }, 120_000);
});
