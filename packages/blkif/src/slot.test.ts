/**
 * The canonical fast paths against the general path they stand in for: msgpackr's bytes on the
 * way out, msgpackr + `validateRequest` / `parseResponse` on the way in — on canonical, mutated
 * and random slots. Each comparison uses fresh msgpack codecs; the last tests show that a
 * long-lived one reads the same (ring's codec refuses a peer's record definitions).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { msgpackSlotCodec, type SlotCodec } from '@pvsim/ring';
import {
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_SLOT_BYTES,
  BLKIF_STRUCTURES,
  BlkifRequestReader,
  BlkifResponseReader,
  blkifLooseCodec,
  blkifPeerPair,
  encodeCanonicalRequest,
  encodeCanonicalResponse,
  parseResponse,
  readRequestSlot,
  readResponseSlot,
  validateRequest,
  type BlkifDisk,
  type BlkifRequestWire,
} from './index.js';

/** msgpackr's own encoding of a projected request / response, as the codecs did before. */
function msgpackrBytes(v: unknown): Uint8Array {
  const c = msgpackSlotCodec<unknown>({ slotBytes: BLKIF_SLOT_BYTES, structures: BLKIF_STRUCTURES });
  const dst = new Uint8Array(BLKIF_SLOT_BYTES);
  const n = c.encode(v, dst);
  return n < 0 ? new Uint8Array(0) : dst;
}

/** The general path, with a decoder that has seen nothing before. */
function generalRequest(src: Uint8Array, disk: BlkifDisk) {
  const d = blkifLooseCodec().decode(src);
  if (!d.ok) return { ok: false, error: { kind: 'bad-slot', idx: 0, reason: d.error } };
  return validateRequest(d.value, disk);
}
function generalResponse(src: Uint8Array) {
  const d = blkifLooseCodec().decode(src);
  if (!d.ok) return { ok: false, error: { kind: 'bad-slot', idx: 0, reason: d.error } };
  const r = parseResponse(d.value);
  return r.ok ? r : { ok: false, error: { kind: 'invalid', reason: r.error } };
}

/** A codec whose decode counts calls (the general path's entry). */
function counting(): SlotCodec<unknown> & { decodes: number } {
  const inner = blkifLooseCodec();
  const c = { slotBytes: inner.slotBytes, encode: inner.encode, decodes: 0, decode: (src: Uint8Array) => (c.decodes++, inner.decode(src)) };
  return c;
}

// Numbers of every msgpack form, and the edges the validators care about.
const anyNum = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 0x3f }) },
  { weight: 4, arbitrary: fc.integer({ min: 0x40, max: 0xffff }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) },
  { weight: 2, arbitrary: fc.maxSafeNat() },
  { weight: 2, arbitrary: fc.integer({ min: -0x8000_0000, max: -1 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(-0, 0.5, -1.5, 2 ** 32, 2 ** 53, 2 ** 53 - 1, 2 ** 64, Number.NaN, Infinity, -Infinity, 255, 256, 7, 8, 11, 12, -2, -33, -129, -32769),
  },
);
const small = (max: number) => fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 0, max }) }, { weight: 1, arbitrary: anyNum });
const arbSeg = fc.record({ gref: fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), anyNum), first_sect: small(8), last_sect: small(8) });
const arbReq: fc.Arbitrary<BlkifRequestWire> = fc
  .record({
    operation: fc.oneof({ weight: 10, arbitrary: fc.constantFrom(0, 1, 2, 3) }, { weight: 1, arbitrary: anyNum }),
    nr_segments: small(12),
    handle: fc.oneof(fc.integer({ min: 0, max: 0xffff }), anyNum),
    id: fc.oneof(fc.integer({ min: 0, max: 64 }), anyNum),
    sector_number: fc.oneof(fc.integer({ min: 0, max: 2000 }), anyNum),
    seg: fc.array(arbSeg, { maxLength: 13 }),
    match: fc.boolean(),
    ordered: fc.boolean(),
  })
  .map(({ match, ordered, ...r }) => {
    const seg = ordered
      ? r.seg.map((s) => (typeof s.first_sect === 'number' && typeof s.last_sect === 'number' ? { ...s, first_sect: Math.min(s.first_sect, s.last_sect), last_sect: Math.max(s.first_sect, s.last_sect) } : s))
      : r.seg;
    return { ...r, seg, nr_segments: match ? seg.length : r.nr_segments } as BlkifRequestWire;
  });
const arbDisk: fc.Arbitrary<BlkifDisk> = fc.record({
  sectors: fc.oneof(fc.integer({ min: 0, max: 4000 }), fc.constant(2 ** 53 - 1)),
  readOnly: fc.boolean(),
  sectorSize: fc.constantFrom(512, 512, 1024, 4096),
  featureFlushCache: fc.boolean(),
  featureBarrier: fc.boolean(),
});

/** Mostly acceptable requests and disks (so that the accepting side is exercised too). */
const arbGoodReq: fc.Arbitrary<BlkifRequestWire> = fc
  .record({
    operation: fc.constantFrom(0, 0, 1, 1, 2, 3),
    handle: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constant(51712)),
    id: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.maxSafeNat()),
    sector_number: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: 500 }).map((x) => x * 8) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 4000 }) }),
    seg: fc.array(fc.record({ gref: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffff_ffff })), a: fc.integer({ min: 0, max: 7 }), b: fc.integer({ min: 0, max: 7 }), full: fc.boolean() }), { minLength: 0, maxLength: 11 }),
  })
  .map(({ seg, ...r }) => {
    const s = seg.map((x) => (x.full ? { gref: x.gref, first_sect: 0, last_sect: 7 } : { gref: x.gref, first_sect: Math.min(x.a, x.b), last_sect: Math.max(x.a, x.b) }));
    return { ...r, nr_segments: s.length, seg: s } as BlkifRequestWire;
  });
const arbGoodDisk: fc.Arbitrary<BlkifDisk> = fc.record({
  sectors: fc.oneof(fc.integer({ min: 4000, max: 10_000 }), fc.constant(2 ** 53 - 1), fc.integer({ min: 0, max: 4000 })),
  readOnly: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  sectorSize: fc.oneof({ weight: 4, arbitrary: fc.constant(512) }, { weight: 1, arbitrary: fc.constantFrom(1024, 4096) }),
  featureFlushCache: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.boolean() }),
  featureBarrier: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.boolean() }),
});

/** Canonical bytes of `r` (msgpackr's, checked equal to ours below), or a slot of zeros. */
function canonical(r: BlkifRequestWire): Uint8Array {
  const dst = new Uint8Array(BLKIF_SLOT_BYTES);
  encodeCanonicalRequest(r, dst, BLKIF_SLOT_BYTES);
  return dst;
}

/** A few byte edits of a slot: replace, insert-like shifts, length changes. */
const arbEdits = fc.array(
  fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.integer({ min: 0, max: BLKIF_SLOT_BYTES - 1 }), v: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.integer({ min: 2, max: 30 }), v: fc.constantFrom(0x40, 0x41, 0x42, 0x43, 0x44, 0x7f, 0x90, 0x91, 0x9b, 0x9c, 0xc0, 0xc1, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd4, 0xdc, 0xe0, 0xff) }),
    fc.record({ kind: fc.constant('len' as const), at: fc.constant(0), v: fc.integer({ min: 0, max: 120 }) }),
  ),
  { maxLength: 3 },
);
function edit(src: Uint8Array, edits: readonly { kind: 'set' | 'len'; at: number; v: number }[]): Uint8Array {
  const out = src.slice();
  for (const e of edits) {
    if (e.kind === 'len') {
      out[0] = e.v;
      out[1] = 0;
    } else out[e.at] = e.v;
  }
  return out;
}

describe('canonical encoding = msgpackr bytes', () => {
  it('requests: the same bytes, the same zeroed tail, or -1 (msgpackr then writes it)', () => {
    fc.assert(
      fc.property(arbReq, (r) => {
        const dst = new Uint8Array(BLKIF_SLOT_BYTES).fill(0xaa);
        const n = encodeCanonicalRequest(r, dst, BLKIF_SLOT_BYTES);
        const projected = { operation: r.operation, nr_segments: (r as { nr_segments: number }).nr_segments, handle: r.handle, id: r.id, sector_number: r.sector_number, seg: (r as { seg: { gref: number; first_sect: number; last_sect: number }[] }).seg.map((s) => ({ gref: s.gref, first_sect: s.first_sect, last_sect: s.last_sect })) };
        const want = msgpackrBytes(projected);
        if (n < 0) {
          expect(dst.every((x) => x === 0xaa)).toBe(true);
          // Only a message too large for the slot (or not rw) is left to msgpackr.
          expect(want.length === 0 || r.operation === 5).toBe(true);
        } else {
          expect(Buffer.from(dst)).toEqual(Buffer.from(want));
          expect(n).toBe(2 + (dst[0]! | (dst[1]! << 8)));
        }
      }),
      { seed: 0x5107, numRuns: 3000 },
    );
  });
  it('responses', () => {
    fc.assert(
      fc.property(anyNum, anyNum, anyNum, (id, operation, status) => {
        const dst = new Uint8Array(BLKIF_SLOT_BYTES).fill(0xaa);
        expect(encodeCanonicalResponse(id, operation, status, dst, BLKIF_SLOT_BYTES)).toBeGreaterThan(0);
        expect(Buffer.from(dst)).toEqual(Buffer.from(msgpackrBytes({ id, operation, status })));
      }),
      { seed: 0x5108, numRuns: 2000 },
    );
  });
});

describe('reading a request slot = msgpackr + validateRequest', () => {
  const same = (src: Uint8Array, disk: BlkifDisk) => {
    const got = readRequestSlot(src, disk, blkifLooseCodec());
    expect(got).toEqual(generalRequest(src, disk));
    if (got.ok) {
      expect(Object.isFrozen(got.value)).toBe(true);
      if ('seg' in got.value) expect(Object.isFrozen(got.value.seg) && got.value.seg.every((s) => Object.isFrozen(s))).toBe(true);
    }
    return got;
  };

  it('canonical slots of any request, on any disk', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(arbReq, arbGoodReq), fc.oneof(arbDisk, arbGoodDisk), (r, disk) => {
        if (same(canonical(r), disk).ok) accepted++;
      }),
      { seed: 0x5109, numRuns: 4000 },
    );
    expect(accepted).toBeGreaterThan(800);
  });

  it('canonical slots with a few bytes changed', () => {
    fc.assert(
      fc.property(fc.oneof(arbReq, arbGoodReq), fc.oneof(arbDisk, arbGoodDisk), arbEdits, (r, disk, edits) => {
        same(edit(canonical(r), edits), disk);
      }),
      { seed: 0x510a, numRuns: 4000 },
    );
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: BLKIF_SLOT_BYTES, maxLength: BLKIF_SLOT_BYTES }), fc.integer({ min: 0, max: 120 }), arbDisk, (b, len, disk) => {
        b[0] = len;
        b[1] = 0;
        b[2] = 0x40;
        same(b, disk);
      }),
      { seed: 0x510b, numRuns: 2000 },
    );
  });

  it('a valid canonical request never reaches msgpack; anything else does', () => {
    const disk = { sectors: 1000, readOnly: false };
    const c = counting();
    const r: BlkifRequestWire = { operation: BLKIF_OP_WRITE, nr_segments: 2, handle: 51712, id: 7, sector_number: 8, seg: [{ gref: 9, first_sect: 0, last_sect: 7 }, { gref: 300, first_sect: 0, last_sect: 3 }] };
    expect(readRequestSlot(canonical(r), disk, c).ok).toBe(true);
    expect(c.decodes).toBe(0);
    expect(readRequestSlot(canonical({ ...r, sector_number: 999 }), disk, c)).toMatchObject({ ok: false, error: { kind: 'reject', code: 'beyond-disk' } });
    expect(c.decodes).toBe(1);
  });
});

describe('reading a response slot = msgpackr + parseResponse', () => {
  it('canonical, mutated and random slots', () => {
    fc.assert(
      fc.property(anyNum, fc.oneof(fc.integer({ min: 0, max: 3 }), anyNum), fc.oneof(fc.constantFrom(0, -1, -2), anyNum), arbEdits, (id, op, status, edits) => {
        const dst = new Uint8Array(BLKIF_SLOT_BYTES);
        encodeCanonicalResponse(id, op, status, dst, BLKIF_SLOT_BYTES);
        for (const src of [dst, edit(dst, edits)]) {
          const got = readResponseSlot(src, blkifLooseCodec());
          expect(got).toEqual(generalResponse(src));
          if (got.ok) expect(Object.isFrozen(got.value)).toBe(true);
        }
      }),
      { seed: 0x510c, numRuns: 4000 },
    );
  });
});

describe('the readers over a real ring', () => {
  it('take what the peers put, copy once, advance the consumer index', () => {
    const { front, back } = blkifPeerPair();
    const reader = new BlkifRequestReader(back.ring);
    const disk = { sectors: 64, readOnly: false };
    front.request({ operation: BLKIF_OP_READ, nr_segments: 1, handle: 1, id: 1, sector_number: 0, seg: [{ gref: 3, first_sect: 0, last_sect: 7 }] });
    front.requestAny({ operation: BLKIF_OP_READ, id: 2 });
    front.requestRaw(Uint8Array.of(3, 0, 0xc1, 0xc1, 0xc1));
    front.push();
    expect(back.ring.unconsumedRequests()).toBe(3);
    expect(reader.take(disk)).toMatchObject({ ok: true, value: { id: 1, nr_sectors: 8 } });
    expect(reader.take(disk)).toMatchObject({ ok: false, error: { kind: 'reject', id: 2, code: 'bad-field' } });
    expect(reader.take(disk)).toMatchObject({ ok: false, error: { kind: 'bad-slot', idx: 2 } });
    expect(back.ring.unconsumedRequests()).toBe(0);
    back.respond({ id: 1, operation: BLKIF_OP_READ, status: 0 });
    back.respond({ id: 2, operation: BLKIF_OP_READ, status: 5 });
    back.push();
    const rr = new BlkifResponseReader(front.ring);
    expect(rr.take()).toEqual({ ok: true, value: { id: 1, operation: BLKIF_OP_READ, status: 0 } });
    expect(rr.take()).toEqual({ ok: false, error: { kind: 'invalid', reason: 'backend gave us response status 5' } });
    expect(front.ring.unconsumedResponses()).toBe(0);
  });

  it('is stateless: a peer\'s inline record definition does not change how the next slot reads', () => {
    // A record definition (here: id 0x40 redefined as {a, b}) is a bad slot (ring's codec: only
    // the frozen structures); the canonical reader never depended on it anyway.
    const { front, back } = blkifPeerPair();
    const reader = new BlkifRequestReader(back.ring);
    const redefine = Uint8Array.of(10, 0, 0xd4, 0x72, 0x40, 0x92, 0xa1, 0x61, 0xa1, 0x62, 0x01, 0x02);
    front.requestRaw(redefine);
    front.request({ operation: BLKIF_OP_READ, nr_segments: 1, handle: 1, id: 9, sector_number: 0, seg: [{ gref: 3, first_sect: 0, last_sect: 7 }] });
    front.push();
    expect(reader.take({ sectors: 64, readOnly: false })).toMatchObject({ ok: false, error: { kind: 'bad-slot', reason: expect.stringMatching(/record definition/) } });
    expect(reader.take({ sectors: 64, readOnly: false })).toMatchObject({ ok: true, value: { id: 9 } });
  });

  it('a definition that swaps a segment\'s fields cannot make a later invalid request valid', () => {
    // Record 0x41 (the frozen segment ['gref', 'first_sect', 'last_sect']) redefined with
    // first_sect and last_sect swapped. Had the backend's decoder kept it, the canonical bytes
    // of the request below (first_sect 7 > last_sect 0: the fast path refuses them, so they go
    // the general way) would read as first_sect 0, last_sect 7, and be accepted.
    const { front, back } = blkifPeerPair();
    const reader = new BlkifRequestReader(back.ring);
    const key = (k: string) => [0xa0 | k.length, ...Buffer.from(k)];
    const def = [0xd4, 0x72, 0x41, 0x93, ...key('gref'), ...key('last_sect'), ...key('first_sect'), 0, 0, 0];
    front.requestRaw(Uint8Array.of(def.length, 0, ...def));
    front.request({ operation: BLKIF_OP_READ, nr_segments: 1, handle: 1, id: 10, sector_number: 0, seg: [{ gref: 3, first_sect: 7, last_sect: 0 }] });
    front.push();
    const disk = { sectors: 64, readOnly: false };
    expect(reader.take(disk).ok).toBe(false); // a bad slot (record definition)
    expect(reader.take(disk)).toMatchObject({ ok: false, error: { kind: 'reject', id: 10, code: 'bad-segment', reason: expect.stringMatching(/first_sect 7 > last_sect 0/) } });
  });

  it('one long-lived reader codec reads every slot as a fresh one does, definitions among them (fixed seed)', () => {
    const key = (k: string) => [0xa0 | k.length, ...Buffer.from(k)];
    const names = ['operation', 'nr_segments', 'handle', 'id', 'sector_number', 'seg', 'gref', 'first_sect', 'last_sect', 'status'];
    const arbDefinition = fc
      .record({ id: fc.integer({ min: 0, max: 63 }), twoByte: fc.boolean(), highByte: fc.integer({ min: 0, max: 2 }), keys: fc.shuffledSubarray(names, { minLength: 1, maxLength: 6 }) })
      .map(({ id, twoByte, highByte, keys }) => {
        const body = [...(twoByte ? [0xd5, 0x72, id, highByte] : [0xd4, 0x72, 0x40 | id]), 0x90 | keys.length, ...keys.flatMap(key), ...keys.map(() => 1)];
        const slot = new Uint8Array(BLKIF_SLOT_BYTES);
        slot.set([body.length, 0, ...body]);
        return slot;
      });
    const arbSlot = fc.oneof(
      arbDefinition,
      fc.tuple(fc.oneof(arbReq, arbGoodReq), arbEdits).map(([r, edits]) => edit(canonical(r), edits)),
      fc.oneof(arbReq, arbGoodReq).map(canonical),
    );
    fc.assert(
      fc.property(fc.array(arbSlot, { maxLength: 10 }), fc.oneof(arbDisk, arbGoodDisk), (slots, disk) => {
        const codec = blkifLooseCodec();
        for (const src of slots) expect(readRequestSlot(src, disk, codec)).toEqual(generalRequest(src, disk));
      }),
      { seed: 0x510d, numRuns: 1500 },
    );
  });
});
