import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ringEntries } from '@pvsim/abi';
import { msgpackSlotCodec } from '@pvsim/ring';
import {
  BLKIF_C_REQUEST_BYTES,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_DISCARD,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RSP_OKAY,
  BLKIF_SLOT_BYTES,
  BLKIF_STRUCTURES,
  allocateBlkifSharedRing,
  blkifPeerPair,
  blkifRequestCodec,
  blkifResponse,
  blkifResponseCodec,
  validateRequest,
  type BlkifRequestRwWire,
  type BlkifRequestWire,
} from './index.js';

const seg = (gref: number, n = BLKIF_MAX_SEGMENTS_PER_REQUEST) => Array.from({ length: n }, () => ({ gref, first_sect: 0, last_sect: 7 }));
const worst: BlkifRequestRwWire = { operation: BLKIF_OP_WRITE, nr_segments: 11, handle: 0xffff, id: 2 ** 53 - 1, sector_number: 2 ** 53 - 1, seg: seg(0xffff_ffff) };
const typical: BlkifRequestRwWire = { operation: BLKIF_OP_WRITE, nr_segments: 11, handle: 51712, id: 17, sector_number: 1 << 30, seg: seg(4000) };

describe('blkif slot size', () => {
  it('fits a typical 11-segment request in Xen\'s 112 bytes', () => {
    const c = msgpackSlotCodec({ slotBytes: BLKIF_C_REQUEST_BYTES, structures: BLKIF_STRUCTURES });
    expect(c.encode(typical, new Uint8Array(BLKIF_C_REQUEST_BYTES))).toBeGreaterThan(0);
    expect(c.encode(typical, new Uint8Array(BLKIF_C_REQUEST_BYTES))).toBeLessThanOrEqual(BLKIF_C_REQUEST_BYTES);
  });
  it('uses the smallest slot that fits the largest legal request (115), still 32 entries a page', () => {
    const c = blkifRequestCodec();
    expect(c.encode(worst, new Uint8Array(BLKIF_SLOT_BYTES))).toBe(BLKIF_SLOT_BYTES);
    const small = msgpackSlotCodec({ slotBytes: BLKIF_SLOT_BYTES - 1, structures: BLKIF_STRUCTURES });
    expect(small.encode(worst, new Uint8Array(BLKIF_SLOT_BYTES - 1))).toBe(-BLKIF_SLOT_BYTES);
    expect([0, 1, 2, 3, 4].map((o) => allocateBlkifSharedRing(o).size)).toEqual([32, 64, 128, 256, 512]);
    expect([0, 1, 2, 3, 4].map((o) => ringEntries(o, BLKIF_C_REQUEST_BYTES))).toEqual([32, 64, 128, 256, 512]);
  });
  it('zeroes the slot beyond the message (XSA-216) and writes only Xen\'s response fields', () => {
    const dst = new Uint8Array(BLKIF_SLOT_BYTES).fill(0xaa);
    const withSecret = { ...blkifResponse(3, 0, 0), secret: 'backend stack' } as ReturnType<typeof blkifResponse>;
    const n = blkifResponseCodec().encode(withSecret, dst);
    expect(n).toBeGreaterThan(0);
    expect(dst.subarray(n).every((x) => x === 0)).toBe(true);
    const back = blkifResponseCodec().decode(dst);
    expect(back).toEqual({ ok: true, value: { id: 3, operation: 0, status: 0 } });
  });
});

const arbRw: fc.Arbitrary<BlkifRequestWire> = fc
  .tuple(
    fc.constantFrom(0, 1, 2, 3),
    fc.integer({ min: 1, max: 11 }),
    fc.integer({ min: 0, max: 0xffff }),
    fc.maxSafeNat(),
    fc.integer({ min: 0, max: 10_000 }),
    fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 7 })), { minLength: 11, maxLength: 11 }),
  )
  .map(([operation, n, handle, id, sector_number, s]) => ({
    operation,
    nr_segments: n,
    handle,
    id,
    sector_number,
    seg: s.slice(0, n).map(([gref, a, b]) => ({ gref, first_sect: Math.min(a, b), last_sect: Math.max(a, b) })),
  }));
const arbDiscard: fc.Arbitrary<BlkifRequestWire> = fc.record({
  operation: fc.constant(BLKIF_OP_DISCARD as typeof BLKIF_OP_DISCARD),
  flag: fc.constant(0),
  handle: fc.integer({ min: 0, max: 0xffff }),
  id: fc.maxSafeNat(),
  sector_number: fc.integer({ min: 0, max: 10_000 }),
  nr_sectors: fc.integer({ min: 0, max: 10_000 }),
});

describe('round trip through a real ring', () => {
  it('every legal request arrives equal and validates; its response arrives back', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(arbRw, arbDiscard), { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 2 }), (reqs, order) => {
        const { front, back } = blkifPeerPair(order);
        const disk = { sectors: 1_000_000, readOnly: false };
        let sent = 0;
        while (sent < reqs.length) {
          const batch = reqs.slice(sent, sent + front.ring.freeRequests());
          for (const r of batch) expect(front.request(r).ok).toBe(true);
          front.push();
          const got = back.takeRaw();
          expect(got.length).toBe(batch.length);
          got.forEach((g, i) => {
            expect(g.ok && g.value).toEqual(batch[i]);
            const v = validateRequest(g.ok ? g.value : null, disk);
            expect(v.ok).toBe(true);
            if (v.ok) {
              expect(Object.isFrozen(v.value)).toBe(true);
              expect(back.respond(blkifResponse(v.value.id, v.value.operation, BLKIF_RSP_OKAY)).ok).toBe(true);
            }
          });
          back.push();
          const rsps = front.responses();
          expect(rsps.map((r) => r.ok && r.value)).toEqual(batch.map((b) => ({ id: b.id, operation: b.operation, status: 0 })));
          sent += batch.length;
        }
      }),
      { seed: 0xb1c1f, numRuns: 150 },
    );
  });
  it('moves a worst-case request through a 2-page ring, across the page boundary', () => {
    const { front, back } = blkifPeerPair(1);
    for (let i = 0; i < 40; i++) expect(front.request({ ...worst, id: i, operation: BLKIF_OP_READ }).ok).toBe(true);
    front.push();
    const got = back.takeRaw();
    expect(got.map((g) => g.ok && (g.value as { id: number }).id)).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });
});
