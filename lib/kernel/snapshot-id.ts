import { UsageError } from '../errors';

const CANONICAL = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A snapshot id or CBT generation id: the kernel's `uuid_t`, 16 bytes.
 * The kernel prints uuid_t with %pUb, i.e. the bytes in storage order
 * b[0] b[1] b[2] b[3] - b[4] b[5] - ... (no little-endian field swapping as
 * in Microsoft GUIDs), so the text form is the hex of the bytes in order.
 */
export class SnapshotId {
  private constructor(readonly bytes: Buffer) {}

  static fromBytes(b: Uint8Array): SnapshotId {
    if (b.length !== 16) throw new RangeError(`a uuid has 16 bytes, got ${b.length}`);
    return new SnapshotId(Buffer.from(b));
  }

  /** Parses the canonical 8-4-4-4-12 form; a UsageError names the bad value. */
  static parse(text: string): SnapshotId {
    const t = text.trim();
    if (!CANONICAL.test(t)) {
      throw new UsageError(`invalid snapshot id "${text}"`, {
        hint: 'expected a UUID like 3f2a8c1e-1b2c-4d5e-8f90-123456789abc (see `blksnap snapshot list`)',
      });
    }
    return new SnapshotId(Buffer.from(t.replace(/-/g, ''), 'hex'));
  }

  static isValid(text: string): boolean {
    return CANONICAL.test(text.trim());
  }

  equals(other: SnapshotId): boolean {
    return this.bytes.equals(other.bytes);
  }

  isNil(): boolean {
    return this.bytes.every((x) => x === 0);
  }

  toString(): string {
    const h = this.bytes.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  toJSON(): string {
    return this.toString();
  }
}
