import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_UNDECODABLE_ECHO,
  BLKIF_OP_WRITE,
  BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR,
  blkifLooseCodec,
  blkifPeerPair,
  parseResponse,
  rejectResponse,
  validateRequest,
  type BlkifDisk,
} from './index.js';

const disk: BlkifDisk = { sectors: 1000, readOnly: false };
const seg = (n: number, g = 5, first = 0, last = 7) => Array.from({ length: n }, () => ({ gref: g, first_sect: first, last_sect: last }));
const rw = (over: Record<string, unknown> = {}) => ({ operation: BLKIF_OP_READ, nr_segments: 1, handle: 0, id: 7, sector_number: 0, seg: seg(1), ...over });

function rejected(copy: unknown, d: BlkifDisk = disk) {
  const v = validateRequest(copy, d);
  if (v.ok || v.error.kind !== 'reject') throw new Error(`expected a reject, got ${JSON.stringify(v)}`);
  return v.error;
}

describe('validateRequest: valid requests', () => {
  it('accepts an 11-segment write and wraps it frozen, with the sector count', () => {
    const v = validateRequest(rw({ operation: BLKIF_OP_WRITE, nr_segments: 11, seg: seg(11), sector_number: 1000 - 88 }), disk);
    expect(v.ok).toBe(true);
    if (!v.ok || v.value.operation === BLKIF_OP_DISCARD) return;
    expect(v.value.nr_sectors).toBe(88);
    expect(Object.isFrozen(v.value) && Object.isFrozen(v.value.seg) && Object.isFrozen(v.value.seg[0])).toBe(true);
  });
  it('accepts a flush with no segments, and a discard', () => {
    expect(validateRequest(rw({ operation: BLKIF_OP_FLUSH_DISKCACHE, nr_segments: 0, seg: [] }), disk).ok).toBe(true);
    const d = validateRequest({ operation: BLKIF_OP_DISCARD, flag: 0, handle: 1, id: 2, sector_number: 10, nr_sectors: 990 }, disk);
    expect(d.ok && d.value.nr_sectors).toBe(990);
  });
});

describe('validateRequest: hostile cases', () => {
  const cases: [string, unknown, BlkifDisk, number, string, RegExp][] = [
    ['unknown operation', rw({ operation: 4 }), disk, BLKIF_RSP_EOPNOTSUPP, 'unknown-operation', /operation 4/],
    ['indirect not advertised', rw({ operation: BLKIF_OP_INDIRECT }), disk, BLKIF_RSP_EOPNOTSUPP, 'unsupported-operation', /INDIRECT/],
    ['discard not advertised', { operation: 5, flag: 0, handle: 0, id: 7, sector_number: 0, nr_sectors: 1 }, { ...disk, featureDiscard: false }, BLKIF_RSP_EOPNOTSUPP, 'unsupported-operation', /feature-discard/],
    ['secure discard not advertised', { operation: 5, flag: 1, handle: 0, id: 7, sector_number: 0, nr_sectors: 1 }, disk, BLKIF_RSP_EOPNOTSUPP, 'unsupported-operation', /secure/],
    ['operation as a string', rw({ operation: '1' }), disk, BLKIF_RSP_EOPNOTSUPP, 'unknown-operation', /"1"/],
    ['12 segments', rw({ nr_segments: 12, seg: seg(12) }), disk, BLKIF_RSP_ERROR, 'bad-nr-segments', /nr_segments 12/],
    ['0 segments on a read', rw({ nr_segments: 0, seg: [] }), disk, BLKIF_RSP_ERROR, 'bad-nr-segments', /nr_segments 0/],
    ['seg count mismatch', rw({ nr_segments: 2 }), disk, BLKIF_RSP_ERROR, 'bad-field', /1 seg entries for nr_segments 2/],
    ['negative gref', rw({ seg: seg(1, -1) }), disk, BLKIF_RSP_ERROR, 'bad-segment', /gref -1/],
    ['gref 2^32', rw({ seg: seg(1, 2 ** 32) }), disk, BLKIF_RSP_ERROR, 'bad-segment', /gref 4294967296/],
    ['fractional gref', rw({ seg: seg(1, 1.5) }), disk, BLKIF_RSP_ERROR, 'bad-segment', /gref 1.5/],
    ['string gref', rw({ seg: seg(1, '5' as unknown as number) }), disk, BLKIF_RSP_ERROR, 'bad-segment', /gref "5"/],
    ['first_sect > last_sect', rw({ seg: seg(1, 5, 4, 3) }), disk, BLKIF_RSP_ERROR, 'bad-segment', /first_sect 4 > last_sect 3/],
    ['last_sect 8', rw({ seg: seg(1, 5, 0, 8) }), disk, BLKIF_RSP_ERROR, 'bad-segment', /last_sect 8, beyond/],
    ['sector beyond the disk', rw({ sector_number: 993 }), disk, BLKIF_RSP_ERROR, 'beyond-disk', /beyond the disk/],
    ['sector near 2^53 (no wrap)', rw({ sector_number: 2 ** 53 - 1 }), disk, BLKIF_RSP_ERROR, 'beyond-disk', /beyond the disk/],
    ['write to a read-only disk', rw({ operation: BLKIF_OP_WRITE }), { ...disk, readOnly: true }, BLKIF_RSP_ERROR, 'read-only', /read-only/],
    ['discard on a read-only disk', { operation: 5, flag: 0, handle: 0, id: 7, sector_number: 0, nr_sectors: 1 }, { ...disk, readOnly: true }, BLKIF_RSP_ERROR, 'read-only', /read-only/],
    ['handle as a string', rw({ handle: 'x' }), disk, BLKIF_RSP_ERROR, 'bad-field', /handle "x"/],
    ['sector_number negative', rw({ sector_number: -8 }), disk, BLKIF_RSP_ERROR, 'bad-field', /sector_number -8/],
    ['an extra key', rw({ extra: 1 }), disk, BLKIF_RSP_ERROR, 'bad-field', /unexpected key "extra"/],
    ['a "constructor" key', rw({ constructor: 1 }), disk, BLKIF_RSP_ERROR, 'bad-field', /unexpected key "constructor"/],
    ['a missing key', (({ seg: _s, ...r }) => r)(rw()), disk, BLKIF_RSP_ERROR, 'bad-field', /no "seg" field/],
    ['seg not an array', rw({ seg: { 0: { gref: 1, first_sect: 0, last_sect: 0 } } }), disk, BLKIF_RSP_ERROR, 'bad-field', /seg an object/],
    ['segment with an extra key', rw({ seg: [{ gref: 1, first_sect: 0, last_sect: 0, x: 1 }] }), disk, BLKIF_RSP_ERROR, 'bad-segment', /unexpected key "x"/],
    ['misaligned on a 4 KiB-sector disk', rw({ sector_number: 4 }), { ...disk, sectorSize: 4096 }, BLKIF_RSP_ERROR, 'misaligned', /not a multiple of 8/],
  ];
  it.each(cases)('%s', (_name, copy, d, status, code, reason) => {
    const e = rejected(copy, d);
    expect(e.status).toBe(status);
    expect(e.code).toBe(code);
    expect(e.reason).toMatch(/^frontend gave us /);
    expect(e.reason).toMatch(reason);
    expect(e.id).toBe(7);
    expect(rejectResponse(e)).toEqual({ id: 7, operation: e.operation, status });
  });
  it('echoes 0xff for an operation that is not a byte', () => {
    expect(rejected(rw({ operation: 'x' })).operation).toBe(BLKIF_OP_UNDECODABLE_ECHO);
    expect(rejected(rw({ operation: 4 })).operation).toBe(4);
  });
  it('reads only own properties: a polluted prototype supplies nothing', () => {
    const proto = { seg: seg(1) };
    const o = Object.assign(Object.create(proto) as object, (({ seg: _s, ...r }) => r)(rw()));
    // A class-made object is not a decoded record at all.
    expect(validateRequest(o, disk)).toMatchObject({ ok: false, error: { kind: 'violation' } });
    const nul = Object.assign(Object.create(null) as object, (({ seg: _s, ...r }) => r)(rw()));
    expect(rejected(nul).reason).toMatch(/no "seg" field/);
  });
  it('a __proto__ key from msgpack never reaches a validated request', () => {
    const c = blkifLooseCodec();
    const buf = new Uint8Array(c.slotBytes);
    // JSON.parse makes "__proto__" an own key, which msgpack writes as an ordinary map key.
    const hostile = JSON.parse('{"operation":0,"nr_segments":1,"handle":0,"id":7,"sector_number":0,"seg":[{"gref":1,"first_sect":0,"last_sect":0,"__proto__":{"x":1}}]}');
    expect(c.encode(hostile, buf)).toBeGreaterThan(0);
    const d = c.decode(buf);
    const v = validateRequest(d.ok ? d.value : undefined, disk);
    expect(v.ok).toBe(false);
    const top = JSON.parse('{"__proto__":{"id":7},"operation":0}');
    expect(c.encode(top, buf)).toBeGreaterThan(0);
    const d2 = c.decode(buf);
    expect(d2.ok ? validateRequest(d2.value, disk).ok : false).toBe(false);
  });
  it.each([
    ['null', null],
    ['a number', 5],
    ['an array', [1, 2]],
    ['a string id', rw({ id: '7' })],
    ['a negative id', rw({ id: -1 })],
    ['an id beyond 2^53', rw({ id: 2 ** 53 })],
    ['a bigint id', rw({ id: 7n })],
    ['no id', (({ id: _i, ...r }) => r)(rw())],
    ['a getter id', Object.defineProperty(rw(), 'id', { get: () => 7, enumerable: true })],
    ['a throwing proxy', new Proxy({}, { getOwnPropertyDescriptor: () => { throw new Error('boom'); }, getPrototypeOf: () => Object.prototype })],
  ])('no usable id (%s) → protocol violation, no response', (_n, copy) => {
    const v = validateRequest(copy, disk);
    expect(v.ok).toBe(false);
    if (!v.ok) {
      expect(v.error.kind).toBe('violation');
      expect(v.error.reason).toMatch(/^frontend gave us /);
    }
  });
});

describe('validateRequest against a simple model', () => {
  const u32 = 2 ** 32;
  const garbage = fc.oneof(fc.constant(-1), fc.constant(1.5), fc.constant('3'), fc.constant(null), fc.constant(u32), fc.constant(true), fc.constant([]));
  const field = <T>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 40, arbitrary: good }, { weight: 1, arbitrary: garbage });
  const sect = fc.oneof({ weight: 30, arbitrary: fc.integer({ min: 0, max: 7 }) }, { weight: 1, arbitrary: fc.integer({ min: 8, max: 9 }) });
  const arbSeg = fc.record({ gref: field(fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constant(u32 - 1))), first_sect: field(sect), last_sect: field(sect) });
  const arbReq = fc.record({
    operation: field(fc.constantFrom(0, 0, 1, 1, 2, 3, 4, 5, 6, 9)),
    nr_segments: field(fc.integer({ min: 0, max: 13 })),
    handle: field(fc.integer({ min: 0, max: 0xffff })),
    id: field(fc.integer({ min: 0, max: 1000 })),
    sector_number: field(fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 0, max: 200 }) }, { weight: 1, arbitrary: fc.constant(2 ** 53 - 1) })),
    seg: fc.array(arbSeg, { minLength: 13, maxLength: 13 }),
    short: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }) }),
    ordered: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    flag: field(fc.constantFrom(0, 0, 0, 1, 2)),
    nr_sectors: field(fc.integer({ min: 0, max: 300 })),
    extra: fc.oneof({ weight: 10, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom('x', 'constructor', 'toString') }),
  });
  const arbDisk = fc.record({ sectors: fc.integer({ min: 0, max: 400 }), readOnly: fc.boolean(), sectorSize: fc.constantFrom(512, 512, 4096) });

  /** Does `r` form a valid request on `d`? Written as one plain predicate, independently. */
  function model(r: Record<string, unknown>, d: { sectors: number; readOnly: boolean; sectorSize: number }): 'violation' | -2 | -1 | 0 {
    const isInt = (v: unknown, lo: number, hi: number) => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
    if (!isInt(r.id, 0, 2 ** 53 - 1)) return 'violation';
    const op = r.operation;
    if (![0, 1, 2, 3, 5].includes(op as number)) return -2;
    const keys = Object.keys(r).sort().join();
    if (op === 5) {
      if (keys !== 'flag,handle,id,nr_sectors,operation,sector_number') return -1;
      if (r.flag !== 0 && r.flag !== 1) return -1;
      if (r.flag === 1) return -2;
      if (!isInt(r.handle, 0, 0xffff) || !isInt(r.sector_number, 0, 2 ** 53 - 1) || !isInt(r.nr_sectors, 0, 2 ** 53 - 1)) return -1;
      const n = r.nr_sectors as number;
      if (n > 0 && (r.sector_number as number) + n > d.sectors) return -1;
      return d.readOnly ? -1 : 0;
    }
    if (keys !== 'handle,id,nr_segments,operation,sector_number,seg') return -1;
    if (!isInt(r.handle, 0, 0xffff) || !isInt(r.sector_number, 0, 2 ** 53 - 1) || !isInt(r.nr_segments, 0, 255)) return -1;
    const n = r.nr_segments as number;
    if (n > 11 || (n === 0 && op !== 2 && op !== 3)) return -1;
    const segs = r.seg as Record<string, unknown>[];
    if (!Array.isArray(segs) || segs.length !== n) return -1;
    let total = 0;
    for (const s of segs) {
      if (Object.keys(s).sort().join() !== 'first_sect,gref,last_sect') return -1;
      if (!isInt(s.gref, 0, u32 - 1) || !isInt(s.first_sect, 0, 7) || !isInt(s.last_sect, 0, 7)) return -1;
      if ((s.first_sect as number) > (s.last_sect as number)) return -1;
      total += (s.last_sect as number) - (s.first_sect as number) + 1;
    }
    // BigInt: the model's own overflow-free sum.
    if (total > 0 && BigInt(r.sector_number as number) + BigInt(total) > BigInt(d.sectors)) return -1;
    if (op !== 0 && d.readOnly) return -1;
    const per = d.sectorSize / 512;
    if ((r.sector_number as number) % per !== 0 || segs.some((s) => ((s.last_sect as number) - (s.first_sect as number) + 1) % per !== 0)) return -1;
    return 0;
  }

  it('never throws and accepts exactly the valid requests, with the model\'s status', () => {
    let accepted = 0;
    fc.assert(
      fc.property(arbReq, arbDisk, (g, d) => {
        const r: Record<string, unknown> = { operation: g.operation, id: g.id, handle: g.handle, sector_number: g.sector_number };
        if (g.operation === 5) Object.assign(r, { flag: g.flag, nr_sectors: g.nr_sectors });
        else {
          const segs = g.seg.map((x) =>
            g.ordered && typeof x.first_sect === 'number' && typeof x.last_sect === 'number'
              ? { ...x, first_sect: Math.min(x.first_sect, x.last_sect), last_sect: Math.max(x.first_sect, x.last_sect) }
              : x,
          );
          const n = typeof g.nr_segments === 'number' && Number.isInteger(g.nr_segments) && g.nr_segments >= 0 ? g.nr_segments : 1;
          Object.assign(r, { nr_segments: g.nr_segments, seg: segs.slice(0, Math.max(0, n - g.short)) });
        }
        if (g.extra !== null) r[g.extra] = 1;
        let v!: ReturnType<typeof validateRequest>;
        expect(() => (v = validateRequest(r, d))).not.toThrow();
        const want = model(r, d);
        if (want === 0) {
          expect(v.ok).toBe(true);
          accepted++;
        } else if (want === 'violation') {
          expect(!v.ok && v.error.kind).toBe('violation');
        } else {
          expect(!v.ok && v.error.kind === 'reject' && v.error.status).toBe(want);
        }
      }),
      { seed: 0x5eed, numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(100);
  });
});

describe('backend peer serving hostile slots', () => {
  it('answers each hostile request with its status and keeps the ring', () => {
    const { front, back } = blkifPeerPair();
    front.requestAny(rw({ id: 1, nr_segments: 12, seg: seg(12) }));
    front.requestAny(rw({ id: 2, seg: seg(1, 5, 0, 8) }));
    front.requestAny(rw({ id: 3, operation: BLKIF_OP_WRITE }));
    front.requestAny(rw({ id: 4, operation: 99 }));
    front.requestAny(rw({ id: 5 }));
    front.push();
    const saw = back.serve({ sectors: 8, readOnly: true });
    expect(saw.map((s) => s.kind)).toEqual(['invalid', 'invalid', 'invalid', 'invalid', 'valid']);
    expect(back.ring.broken).toBeNull();
    expect(front.responses().map((r) => r.ok && [r.value.id, r.value.status])).toEqual([[1, -1], [2, -1], [3, -1], [4, -2], [5, 0]]);
  });
  it('marks the ring broken for a slot with no id or raw garbage bytes, and sends nothing', () => {
    for (const put of [
      (f: ReturnType<typeof blkifPeerPair>['front']) => f.requestAny({ operation: 0 }),
      (f: ReturnType<typeof blkifPeerPair>['front']) => f.requestRaw(Uint8Array.of(3, 0, 0xc1, 0xc1, 0xc1)),
      (f: ReturnType<typeof blkifPeerPair>['front']) => f.requestRaw(Uint8Array.of(0xff, 0xff)),
    ]) {
      const { front, back } = blkifPeerPair();
      put(front);
      front.requestAny(rw({ id: 9 }));
      front.push();
      const saw = back.serve(disk);
      expect(saw).toHaveLength(1);
      expect(back.ring.broken).toMatchObject({ kind: 'marked', culprit: 'frontend' });
      expect(front.responses()).toEqual([]);
    }
  });
  it('frontend rejects a forged response', () => {
    const { front, back } = blkifPeerPair();
    front.requestAny(rw());
    front.push();
    back.takeRaw();
    const buf = new Uint8Array(back.sring.slotBytes);
    const n = blkifLooseCodec().encode({ id: 7, operation: 0, status: 5 }, buf);
    back.respondRaw(buf.subarray(0, n));
    back.push();
    const r = front.responses();
    expect(r[0]).toEqual({ ok: false, error: 'backend gave us response status 5' });
    expect(parseResponse({ id: 1, operation: 0, status: -2 }).ok).toBe(true);
  });
  it('the ring halts on a forged req_prod', () => {
    const { front, back } = blkifPeerPair();
    front.forgeReqProd(1000);
    expect(back.serve(disk)).toEqual([]);
    expect(back.ring.broken).toMatchObject({ kind: 'req-prod-overflow', culprit: 'frontend' });
  });
});
