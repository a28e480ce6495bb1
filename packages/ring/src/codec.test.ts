import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { msgpackSlotCodec, rawSlotCodec } from './codec.js';

describe('msgpack slot codec', () => {
  const codec = msgpackSlotCodec<Record<string, unknown>>({ slotBytes: 64, structures: [['op', 'id', 'sector']] });

  it('round-trips shared and unshared shapes without learning new shared structures', () => {
    const dst = Buffer.alloc(64);
    for (const v of [{ op: 1, id: 2, sector: 3 }, { other: 'shape', n: [1, 2] }, { op: 1, id: 5, sector: 9 }]) {
      const n = codec.encode(v, dst);
      expect(n).toBeGreaterThan(0);
      // A fresh decoder with only the frozen structures can read every message.
      const fresh = msgpackSlotCodec({ slotBytes: 64, structures: [['op', 'id', 'sector']] });
      expect(fresh.decode(dst)).toEqual({ ok: true, value: v });
    }
  });

  it('encodes the typical request to a handful of bytes', () => {
    expect(codec.encode({ op: 1, id: 123456, sector: 8192 }, Buffer.alloc(64))).toBeLessThanOrEqual(16);
  });

  it('reports a message larger than the slot as a negative size', () => {
    const n = codec.encode({ s: 'x'.repeat(100) }, Buffer.alloc(64));
    expect(n).toBeLessThan(-64);
  });

  it('rejects empty slots, oversize lengths, garbage and foreign prototypes without throwing', () => {
    expect(codec.decode(Buffer.alloc(64)).ok).toBe(false);
    const big = Buffer.alloc(64);
    big.writeUInt16LE(63);
    expect(codec.decode(big)).toMatchObject({ ok: false });
    const proto = Buffer.alloc(64);
    const bytes = [0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x61, 1];
    proto.writeUInt16LE(bytes.length);
    proto.set(bytes, 2);
    expect(codec.decode(proto)).toMatchObject({ ok: false, error: expect.stringMatching(/prototype/) });
  });

  it('never throws on arbitrary slot bytes (fixed seed)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.integer({ min: 0, max: 62 }), (bytes, len) => {
        const b = Buffer.from(bytes);
        b.writeUInt16LE(len);
        const r = codec.decode(b);
        expect(typeof r.ok).toBe('boolean');
      }),
      { seed: 0x5eed, numRuns: 3000 },
    );
  });
});

describe('raw slot codec', () => {
  it('copies bytes and refuses oversize messages', () => {
    const c = rawSlotCodec(16);
    const dst = new Uint8Array(16);
    expect(c.encode(Uint8Array.of(1, 2, 3), dst)).toBe(3);
    expect(c.encode(new Uint8Array(17), dst)).toBe(-17);
  });
});
