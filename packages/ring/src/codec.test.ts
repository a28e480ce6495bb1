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
    // A top-level value of an extension type (here a timestamp: a Date).
    const date = Buffer.alloc(64);
    date.writeUInt16LE(6);
    date.set([0xd6, 0xff, 0, 0, 0, 0], 2);
    expect(codec.decode(date)).toMatchObject({ ok: false, error: expect.stringMatching(/prototype/) });
  });

  it('reads a `__proto__` key as an own key `__proto_`, never as the prototype', () => {
    const proto = Buffer.alloc(64);
    const bytes = [0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x61, 1];
    proto.writeUInt16LE(bytes.length);
    proto.set(bytes, 2);
    const r = codec.decode(proto);
    expect(r).toEqual({ ok: true, value: { __proto_: { a: 1 } } });
    expect(r.ok && Object.getPrototypeOf(r.value)).toBe(Object.prototype);
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

/**
 * msgpackr's record extension lets a message define a record id inline (`d4 72 id keys` or the
 * two-byte form `d5 72 id highByte keys`). Its decoder keeps such a definition in the record table
 * of the Unpackr, so one slot could change how every later slot of that decoder reads. The codec
 * admits the frozen structures only: a slot that defines a record is a bad slot, and decoding is a
 * pure function of the slot's bytes.
 */
describe('msgpack slot codec and a hostile peer', () => {
  const STRUCTURES = [['op', 'id', 'sector']];
  const fresh = () => msgpackSlotCodec<unknown>({ slotBytes: 64, structures: STRUCTURES });
  const slot = (bytes: readonly number[]): Buffer => {
    const b = Buffer.alloc(64);
    b.writeUInt16LE(bytes.length);
    b.set(bytes, 2);
    return b;
  };
  const fixstr = (s: string): number[] => [0xa0 | s.length, ...Buffer.from(s)];
  const honest = (): Buffer => {
    const b = Buffer.alloc(64);
    expect(fresh().encode({ op: 1, id: 2, sector: 3 }, b)).toBeGreaterThan(0);
    return b;
  };

  it('a record definition in one slot does not change how the next slot reads', () => {
    const codec = fresh();
    // Record 0x40 (the frozen ['op','id','sector']) redefined as ['a','b','c'], used once.
    codec.decode(slot([0xd4, 0x72, 0x40, 0x93, ...fixstr('a'), ...fixstr('b'), ...fixstr('c'), 1, 2, 3]));
    // The honest encoder's bytes for {op, id, sector}: 40 01 02 03 (once read as {a, b, c}).
    expect([...honest().subarray(2, 6)]).toEqual([0x40, 1, 2, 3]);
    expect(codec.decode(honest())).toEqual({ ok: true, value: { op: 1, id: 2, sector: 3 } });
  });

  it('a two-byte definition (a negative record id) does not persist into later slots', () => {
    const codec = fresh();
    // A defines id -32 (d5 72 00 01); B defines 0x40 as a two-byte record and then refers to
    // record (0x40, high byte 1), which only A defined.
    const a = slot([0xd5, 0x72, 0x00, 0x01, 0x91, ...fixstr('x'), 7]);
    const b = slot([0x92, 0xd5, 0x72, 0x00, 0x00, 0x91, ...fixstr('y'), 1, 0x40, 0x01, 9]);
    const bAlone = fresh().decode(b);
    codec.decode(a);
    expect(codec.decode(b)).toEqual(bAlone);
    expect(bAlone.ok).toBe(false);
  });

  it('rejects every form of record definition as a bad slot, whatever the id', () => {
    const codec = fresh();
    for (let id = 0; id < 64; id++) {
      for (const def of [[0xd4, 0x72, 0x40 | id], [0xd5, 0x72, 0x40 | id, 0], [0xd5, 0x72, id, 1], [0xd5, 0x72, id, 0xff]]) {
        const r = codec.decode(slot([...def, 0x91, ...fixstr('k'), 5]));
        expect(r).toMatchObject({ ok: false, error: expect.stringMatching(/record definition/) });
      }
      // Nested in a map value and in an array, not at the top.
      expect(codec.decode(slot([0x81, ...fixstr('m'), 0xd4, 0x72, 0x40 | id, 0x91, ...fixstr('k'), 5])).ok).toBe(false);
      expect(codec.decode(slot([0x92, 1, 0xd4, 0x72, 0x40 | id, 0x91, ...fixstr('k'), 5])).ok).toBe(false);
    }
    expect(codec.decode(honest())).toEqual({ ok: true, value: { op: 1, id: 2, sector: 3 } });
  });

  it('writes shapes outside the frozen structures as plain maps, never as inline records', () => {
    const codec = fresh();
    const dst = Buffer.alloc(64);
    const v = { x: 1, y: [{ z: 2 }] };
    const n = codec.encode(v, dst);
    // A map (msgpackr writes map16 for speed), not `d4 72 id` and the keys.
    const map16 = (size: number) => [0xde, 0, size];
    expect([...dst.subarray(2, n)]).toEqual([...map16(2), ...fixstr('x'), 1, ...fixstr('y'), 0x91, ...map16(1), ...fixstr('z'), 2]);
    expect(fresh().decode(dst)).toEqual({ ok: true, value: v });
  });

  it('structures beyond one-byte record ids are refused at construction', () => {
    const many = Array.from({ length: 33 }, (_, i) => [`k${i}`]);
    expect(() => msgpackSlotCodec({ slotBytes: 64, structures: many })).toThrow(RangeError);
    expect(() => msgpackSlotCodec({ slotBytes: 64, structures: many.slice(0, 32) })).not.toThrow();
  });

  // Keys as a peer might choose them; `__proto__` is left out (msgpackr renames it on decode).
  const key = fc.oneof(fc.constantFrom('op', 'id', 'sector', 'a', 'x'), fc.string({ maxLength: 6 })).filter((k) => k !== '__proto__');
  const leaf = fc.oneof(fc.integer(), fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)), fc.string({ maxLength: 8 }), fc.boolean(), fc.constant(null));
  const { tree: value } = fc.letrec((tie) => ({
    tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('arr'), tie('obj')),
    arr: fc.array(tie('tree'), { maxLength: 4 }),
    obj: fc.dictionary(key, tie('tree'), { maxKeys: 4 }),
  }));

  it('the encoder never writes a definition: any value reads back on a fresh decoder (fixed seed)', () => {
    const codec = msgpackSlotCodec<unknown>({ slotBytes: 1024, structures: STRUCTURES });
    const dst = Buffer.alloc(1024);
    fc.assert(
      fc.property(value, (v) => {
        const n = codec.encode(v, dst);
        if (n < 0) return;
        // The decoder rejects every definition, so reading back proves none was written.
        expect(msgpackSlotCodec({ slotBytes: 1024, structures: STRUCTURES }).decode(dst)).toEqual({ ok: true, value: v });
      }),
      { seed: 0x5eed, numRuns: 2000 },
    );
    // After thousands of shapes (the encoder's shape index is dropped and rebuilt on the way),
    // the frozen shape is still the one-byte record.
    for (let i = 0; i < 5000; i++) codec.encode({ [`k${i}`]: i }, dst);
    expect(codec.encode({ op: 1, id: 2, sector: 3 }, dst)).toBe(6);
    expect([...dst.subarray(2, 6)]).toEqual([0x40, 1, 2, 3]);
  });

  /** A slot of hostile bytes: random, a definition then uses of it, or an honest message. */
  const definition = fc
    .record({
      twoByte: fc.boolean(),
      id: fc.integer({ min: 0, max: 63 }),
      highByte: fc.integer({ min: 0, max: 3 }),
      keys: fc.array(fc.constantFrom('op', 'id', 'sector', 'a', 'b'), { minLength: 1, maxLength: 3 }),
      uses: fc.integer({ min: 0, max: 2 }),
    })
    .map(({ twoByte, id, highByte, keys, uses }) => {
      const head = twoByte ? [0xd5, 0x72, id, highByte] : [0xd4, 0x72, 0x40 | id];
      const ref = twoByte ? [0x40 | id, highByte] : [0x40 | id];
      const body = [...head, 0x90 | keys.length, ...keys.flatMap(fixstr), ...keys.map((_, i) => i)];
      const refs = Array.from({ length: uses }, () => [...ref, ...keys.map((_, i) => i + 10)]).flat();
      return slot([0x90 | (1 + uses), ...body, ...refs]);
    });
  const randomBytes = fc
    .tuple(fc.uint8Array({ minLength: 62, maxLength: 62 }), fc.integer({ min: 0, max: 62 }))
    .map(([bytes, len]) => {
      const b = Buffer.alloc(64);
      b.writeUInt16LE(len);
      b.set(bytes, 2);
      return b;
    });
  const honestSlot = fc.oneof(fc.record({ op: fc.nat(), id: fc.nat(), sector: fc.nat() }), value).chain((v) => {
    const b = Buffer.alloc(64);
    return fresh().encode(v, b) > 0 ? fc.constant(b) : fc.constant(honest());
  });
  const anySlot = fc.oneof(definition, randomBytes, honestSlot);

  it('decoding is a pure function of the slot: any slots, then an honest message, read as on a fresh decoder (fixed seed)', () => {
    fc.assert(
      fc.property(fc.array(anySlot, { maxLength: 12 }), honestSlot, (slots, last) => {
        const codec = fresh();
        for (const s of slots) expect(codec.decode(s)).toEqual(fresh().decode(s));
        const r = codec.decode(last);
        expect(r).toEqual(fresh().decode(last));
        expect(r.ok).toBe(true);
      }),
      { seed: 0x5eed, numRuns: 1500 },
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
