import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { declareEvent, type EventRecord } from './schema.js';
import { destroyedDomainAuditor, sequenceAuditor, type Auditor } from './audit.js';
import { keyedProjection, stateSnapshot, type ProjectedEntry, type StateSnapshot } from './projection.js';
import {
  SnapshotFormatError,
  decodeSnapshot,
  encodeSnapshot,
  readSnapshotFile,
  replay,
  replaySync,
  writeSnapshotFile,
  type ReplayResult,
} from './replay.js';

// ─── A miniature host: domains, grant mappings and in-flight requests ──────────────────────

declare module './schema.js' {
  interface EventPayloads {
    'test.domain_create': { domid: number };
    'test.domain_destroy': { domid: number };
    'test.grant_map': { granter: number; gref: number; handle: number; ro: boolean };
    'test.grant_unmap': { granter: number; gref: number; handle: number };
    'test.req_start': { id: number; op: number; sector: number };
    'test.req_done': { id: number; status: number };
    'test.noise': { n: number };
  }
}
for (const kind of ['test.domain_create', 'test.domain_destroy', 'test.grant_map', 'test.grant_unmap', 'test.req_start', 'test.req_done', 'test.noise'])
  declareEvent({ kind, version: 1 });

const grantKey = (granter: number, gref: number, mapper: number) => `${granter}:${gref}:${mapper}`;
const reqKey = (dom: number, id: number) => `${dom}:${id}`;

/** What a hypervisor package would register: which grants are mapped, and by whom. */
const grantsProjection = keyedProjection<{ handle: number; ro: boolean }>({
  name: 'test.grants.mapped',
  on: {
    'test.grant_map': (e, m) => m.set(grantKey(e.payload.granter, e.payload.gref, e.dom), { handle: e.payload.handle, ro: e.payload.ro }),
    'test.grant_unmap': (e, m) => {
      m.delete(grantKey(e.payload.granter, e.payload.gref, e.dom));
    },
    'test.domain_destroy': (e, m) => {
      for (const k of [...m.keys()]) if (Number(k.split(':')[2]) === e.payload.domid) m.delete(k);
    },
  },
});

/** What a block backend would register: requests in flight per domain. */
const requestsProjection = keyedProjection<{ op: number; sector: number }>({
  name: 'test.requests.inflight',
  on: {
    'test.req_start': (e, m) => m.set(reqKey(e.dom, e.payload.id), { op: e.payload.op, sector: e.payload.sector }),
    'test.req_done': (e, m) => {
      m.delete(reqKey(e.dom, e.payload.id));
    },
    'test.domain_destroy': (e, m) => {
      for (const k of [...m.keys()]) if (Number(k.split(':')[0]) === e.payload.domid) m.delete(k);
    },
  },
});

const PROJECTIONS = [grantsProjection, requestsProjection];
const auditors = (): Auditor[] => [sequenceAuditor(), destroyedDomainAuditor({ destroyKind: 'test.domain_destroy', createKind: 'test.domain_create' })];

const DOMS = [0, 1, 2, 3, 4];
const STATEFUL = new Set(['test.grant_map', 'test.grant_unmap', 'test.req_start', 'test.req_done', 'test.domain_destroy']);

/**
 * The reference model: it runs operations on its own live state (plain maps, written
 * independently of the projections) and emits one event per transition, as a daemon would.
 */
class HostModel {
  readonly events: EventRecord[] = [];
  readonly snapshots: StateSnapshot[] = [];
  readonly alive = new Set<number>([0]);
  readonly grants = new Map<string, ProjectedEntry>();
  readonly reqs = new Map<string, ProjectedEntry>();
  private seq: number;
  private handle = 1;

  constructor(firstSeq: number) {
    this.seq = firstSeq;
    for (const d of DOMS) this.emit(0, 'log.writer', { writer: d + 1, name: `dom${d}`, dom: d });
    for (const d of DOMS.slice(1)) this.create(d);
  }

  get lastSeq(): number {
    return this.seq - 1;
  }

  private emit(dom: number, kind: string, payload: Record<string, unknown>): number {
    const seq = this.seq++;
    this.events.push({ seq, tsNs: seq * 1000, dom, thread: dom + 1, kind, v: 1, payload } as EventRecord);
    return seq;
  }

  create(d: number): void {
    if (this.alive.has(d)) return;
    this.emit(0, 'test.domain_create', { domid: d });
    this.alive.add(d);
  }

  destroy(d: number): void {
    if (d === 0 || !this.alive.has(d)) return;
    const seq = this.emit(0, 'test.domain_destroy', { domid: d });
    void seq;
    this.alive.delete(d);
    for (const [k] of this.grants) if (k.endsWith(`:${d}`)) this.grants.delete(k);
    for (const [k] of this.reqs) if (k.startsWith(`${d}:`)) this.reqs.delete(k);
  }

  map(mapper: number, granter: number, gref: number, ro: boolean): void {
    const key = grantKey(granter, gref, mapper);
    if (!this.alive.has(mapper) || !this.alive.has(granter) || mapper === granter || this.grants.has(key)) return;
    const handle = this.handle++;
    const seq = this.emit(mapper, 'test.grant_map', { granter, gref, handle, ro });
    this.grants.set(key, { value: { handle, ro }, seq });
  }

  unmap(pick: number): void {
    const keys = [...this.grants.keys()];
    if (keys.length === 0) return;
    const key = keys[pick % keys.length]!;
    const [granter, gref, mapper] = key.split(':').map(Number) as [number, number, number];
    const { handle } = this.grants.get(key)!.value as { handle: number };
    this.emit(mapper, 'test.grant_unmap', { granter, gref, handle });
    this.grants.delete(key);
  }

  start(dom: number, id: number, sector: number): void {
    const key = reqKey(dom, id);
    if (!this.alive.has(dom) || this.reqs.has(key)) return;
    const op = sector % 3;
    const seq = this.emit(dom, 'test.req_start', { id, op, sector });
    this.reqs.set(key, { value: { op, sector }, seq });
  }

  done(pick: number): void {
    const keys = [...this.reqs.keys()];
    if (keys.length === 0) return;
    const key = keys[pick % keys.length]!;
    const [dom, id] = key.split(':').map(Number) as [number, number];
    this.emit(dom, 'test.req_done', { id, status: 0 });
    this.reqs.delete(key);
  }

  noise(n: number): void {
    const alive = [...this.alive].sort();
    this.emit(alive[n % alive.length]!, 'test.noise', { n });
  }

  /** A bug in the daemon: a mapping torn down without an event. */
  silentUnmap(pick: number): void {
    const keys = [...this.grants.keys()];
    if (keys.length > 0) this.grants.delete(keys[pick % keys.length]!);
  }

  /** A bug in the daemon: a request's sector rewritten without an event (its seq stays). */
  silentRewrite(pick: number): void {
    const keys = [...this.reqs.keys()];
    if (keys.length === 0) return;
    const key = keys[pick % keys.length]!;
    const e = this.reqs.get(key)!;
    const v = e.value as { op: number; sector: number };
    this.reqs.set(key, { value: { ...v, sector: v.sector + 1 }, seq: e.seq });
  }

  snapshot(): void {
    this.snapshots.push(stateSnapshot(grantsProjection.name, this.lastSeq, this.grants), stateSnapshot(requestsProjection.name, this.lastSeq, this.reqs));
  }
}

type Op = { t: number; a: number; b: number; c: number };
const opArb = fc.record({ t: fc.integer({ min: 0, max: 9 }), a: fc.nat(1000), b: fc.nat(1000), c: fc.nat(1000) });

function runModel(ops: Op[], firstSeq: number, bug?: { at: number; kind: 'unmap' | 'rewrite' }): HostModel {
  const m = new HostModel(firstSeq);
  ops.forEach((o, i) => {
    if (bug?.at === i) (bug.kind === 'unmap' ? m.silentUnmap(o.a) : m.silentRewrite(o.a));
    const alive = [...m.alive].sort();
    switch (o.t) {
      case 0:
      case 1:
        m.map(alive[o.a % alive.length]!, DOMS[o.b % DOMS.length]!, o.c % 6, o.c % 2 === 0);
        break;
      case 2:
        m.unmap(o.a);
        break;
      case 3:
        m.start(alive[o.a % alive.length]!, o.b % 8, o.c);
        break;
      case 4:
        m.done(o.a);
        break;
      case 5:
        m.destroy(o.a % DOMS.length);
        break;
      case 6:
        m.create(o.a % DOMS.length);
        break;
      case 7:
        m.snapshot();
        break;
      default:
        m.noise(o.a);
    }
  });
  m.noise(0);
  m.snapshot();
  return m;
}

/**
 * An independent oracle for broken runs: fold the stream the naive way up to each snapshot and
 * compute which keys differ and the smallest seq among their two sides.
 */
function expectedDivergences(events: EventRecord[], snapshots: StateSnapshot[]): { projection: string; atSeq: number; keys: string[]; firstSeq: number }[] {
  const out: { projection: string; atSeq: number; keys: string[]; firstSeq: number }[] = [];
  for (const snap of [...snapshots].sort((x, y) => x.atSeq - y.atSeq)) {
    const state = new Map<string, { value: string; seq: number }>();
    for (const e of events) {
      if (e.seq > snap.atSeq) break;
      const p = e.payload as Record<string, number>;
      const dropWhere = (f: (k: string) => boolean) => [...state.keys()].filter(f).forEach((k) => state.delete(k));
      if (snap.projection === grantsProjection.name) {
        if (e.kind === 'test.grant_map') state.set(grantKey(p.granter!, p.gref!, e.dom), { value: JSON.stringify([p.handle, p.ro]), seq: e.seq });
        if (e.kind === 'test.grant_unmap') state.delete(grantKey(p.granter!, p.gref!, e.dom));
        if (e.kind === 'test.domain_destroy') dropWhere((k) => k.split(':')[2] === String(p.domid));
      } else {
        if (e.kind === 'test.req_start') state.set(reqKey(e.dom, p.id!), { value: JSON.stringify([p.op, p.sector]), seq: e.seq });
        if (e.kind === 'test.req_done') state.delete(reqKey(e.dom, p.id!));
        if (e.kind === 'test.domain_destroy') dropWhere((k) => k.split(':')[0] === String(p.domid));
      }
    }
    const canon = (v: unknown) => {
      const o = v as Record<string, unknown>;
      return JSON.stringify(snap.projection === grantsProjection.name ? [o.handle, o.ro] : [o.op, o.sector]);
    };
    const keys: string[] = [];
    let firstSeq = Infinity;
    for (const k of new Set([...Object.keys(snap.entries), ...state.keys()])) {
      const l = snap.entries[k];
      const r = state.get(k);
      if (l && r && l.seq === r.seq && canon(l.value) === r.value) continue;
      keys.push(k);
      firstSeq = Math.min(firstSeq, l?.seq ?? Infinity, r?.seq ?? Infinity);
    }
    if (keys.length > 0) out.push({ projection: snap.projection, atSeq: snap.atSeq, keys: keys.sort(), firstSeq });
  }
  return out;
}

const summary = (r: ReplayResult) =>
  r.divergences.map((d) => ({ projection: d.projection, atSeq: d.atSeq, keys: d.entries.map((x) => x.key), firstSeq: d.firstSeq }));

// ─── Replay equals state ────────────────────────────────────────────────────────────────────

describe('replay equals state (reference model, fast-check)', () => {
  it('rebuilds every live snapshot exactly, mid-run and at the end, with no violations', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), fc.nat(1_000_000), (ops, firstSeq) => {
        const m = runModel(ops, firstSeq);
        const r = replaySync(m.events, { projections: PROJECTIONS, auditors: auditors(), snapshots: m.snapshots });
        expect(r.divergences).toEqual([]);
        expect(r.violations).toEqual([]);
        expect(r.snapshotsCompared).toBe(m.snapshots.length);
        expect(r.events).toBe(m.events.length);
        expect(r.lastSeq).toBe(m.lastSeq);
        expect(Object.fromEntries(r.states.get(grantsProjection.name)!)).toEqual(Object.fromEntries(m.grants));
        expect(Object.fromEntries(r.states.get(requestsProjection.name)!)).toEqual(Object.fromEntries(m.reqs));
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  it('a dropped event: a sequence-gap around it, and exactly the divergences the oracle predicts', () => {
    let diverged = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 10, maxLength: 120 }), fc.nat(), fc.boolean(), (ops, pick, anyKind) => {
        const m = runModel(ops, 100);
        // Never the first event (a hole needs something before it) nor the last; mostly a transition.
        const candidates = m.events.map((e, i) => (i > 0 && i < m.events.length - 1 && (anyKind || STATEFUL.has(e.kind)) ? i : -1)).filter((i) => i >= 0);
        const k = candidates[pick % candidates.length] ?? 1;
        const dropped = m.events[k]!.seq;
        const stream = m.events.filter((_, i) => i !== k);
        const r = replaySync(stream, { projections: PROJECTIONS, auditors: [sequenceAuditor()], snapshots: m.snapshots });
        expect(r.violations.map((v) => [v.rule, v.seqs])).toEqual([['sequence-gap', [dropped - 1, dropped + 1]]]);
        const want = expectedDivergences(stream, m.snapshots);
        expect(summary(r)).toEqual(want);
        for (const d of r.divergences) {
          expect(d.firstSeq).toBeLessThanOrEqual(dropped);
          // The record is named whenever the stream had it; the dropped one it cannot have.
          expect(d.firstEvent?.seq).toBe(d.firstSeq === dropped ? undefined : d.firstSeq);
        }
        if (want.length > 0) diverged++;
      }),
      { seed: 7, numRuns: 200 },
    );
    expect(diverged).toBeGreaterThan(50); // the property is not vacuous
  });

  it('a daemon that changes state without emitting: divergences from the first snapshot after it', () => {
    let diverged = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 10, maxLength: 120 }), fc.nat(), fc.boolean(), (ops, at, unmap) => {
        const m = runModel(ops, 1, { at: at % ops.length, kind: unmap ? 'unmap' : 'rewrite' });
        const r = replaySync(m.events, { projections: PROJECTIONS, auditors: auditors(), snapshots: m.snapshots });
        expect(r.violations).toEqual([]); // the log itself is clean
        const want = expectedDivergences(m.events, m.snapshots);
        expect(summary(r)).toEqual(want);
        for (const d of r.divergences) expect(d.firstEvent?.seq).toBe(d.firstSeq);
        if (want.length > 0) diverged++;
      }),
      { seed: 7, numRuns: 200 },
    );
    expect(diverged).toBeGreaterThan(50);
  });
});

// ─── Exact first diverging events ───────────────────────────────────────────────────────────

const ev = (seq: number, dom: number, kind: string, payload: Record<string, unknown>): EventRecord =>
  ({ seq, tsNs: seq * 1000, dom, thread: dom + 1, kind, v: 1, payload }) as EventRecord;
const map = (seq: number, mapper: number, gref: number, handle = seq) => ev(seq, mapper, 'test.grant_map', { granter: 0, gref, handle, ro: false });
const unmap = (seq: number, mapper: number, gref: number) => ev(seq, mapper, 'test.grant_unmap', { granter: 0, gref, handle: 0 });
const noise = (seq: number) => ev(seq, 0, 'test.noise', { n: seq });
const grants = (atSeq: number, entries: Record<string, { handle: number; seq: number }>): StateSnapshot =>
  stateSnapshot(
    grantsProjection.name,
    atSeq,
    Object.entries(entries).map(([k, { handle, seq }]) => [k, { value: { handle, ro: false }, seq }] as const),
  );

describe('first diverging event', () => {
  // The run: dom1 maps gref 5 (seq 2) and 6 (seq 3), unmaps 5 (seq 4); noise at 5.
  const run = [map(2, 1, 5), map(3, 1, 6), unmap(4, 1, 5), noise(5)];
  const live = grants(5, { '0:6:1': { handle: 3, seq: 3 } });

  it('is silent when replay equals state', () => {
    const r = replaySync(run, { projections: [grantsProjection], snapshots: [live] });
    expect(r.divergences).toEqual([]);
    expect(r.snapshotsCompared).toBe(1);
  });

  it('a dropped unmap: replay still holds the mapping; first diverging event is its map (seq 2), named', () => {
    const r = replaySync(
      run.filter((e) => e.seq !== 4),
      { projections: [grantsProjection], auditors: [sequenceAuditor()], snapshots: [live] },
    );
    expect(r.divergences).toHaveLength(1);
    const d = r.divergences[0]!;
    expect(d.entries).toEqual([{ key: '0:5:1', replayed: { value: { handle: 2, ro: false }, seq: 2 } }]);
    expect(d.firstSeq).toBe(2);
    expect(d.firstKey).toBe('0:5:1');
    expect(d.firstEvent).toBe(run[0]);
    expect(d.explanation).toBe(
      'test.grants.mapped: 1 entry differs from the live snapshot at seq 5; first diverging event seq 2 (test.grant_map from dom 1): key "0:5:1" live absent, replay {"handle":2,"ro":false} @seq 2',
    );
    expect(r.violations.map((v) => [v.rule, v.seqs])).toEqual([['sequence-gap', [3, 5]]]);
  });

  it('a dropped map: live cites seq 3, which the stream never had', () => {
    const r = replaySync(
      run.filter((e) => e.seq !== 3),
      { projections: [grantsProjection], snapshots: [live] },
    );
    const d = r.divergences[0]!;
    expect(d.firstSeq).toBe(3);
    expect(d.firstEvent).toBeUndefined();
    expect(d.explanation).toMatch(/first diverging event seq 3 \(not in the stream: lost, dropped or never emitted\)/);
  });

  it('live changed at 120, replay last at 95: the first diverging event is 95', () => {
    const events = [map(95, 2, 7), ...Array.from({ length: 30 }, (_, i) => noise(96 + i))];
    const r = replaySync(events, { projections: [grantsProjection], snapshots: [grants(125, { '0:7:2': { handle: 99, seq: 120 } })] });
    const d = r.divergences[0]!;
    expect(d.entries).toEqual([{ key: '0:7:2', live: { value: { handle: 99, ro: false }, seq: 120 }, replayed: { value: { handle: 95, ro: false }, seq: 95 } }]);
    expect([d.firstSeq, d.firstEvent?.kind]).toEqual([95, 'test.grant_map']);
  });

  it('live older than replay: the record live cites is kept as it passes, though replay overwrote the key', () => {
    // Live missed the remap at seq 30; its entry still says seq 10, an event replay no longer holds per key.
    const events = [map(10, 1, 1, 10), noise(11), unmap(20, 1, 1), map(30, 1, 1, 30), noise(31)];
    const r = replaySync(events, { projections: [grantsProjection], snapshots: [grants(31, { '0:1:1': { handle: 10, seq: 10 } })] });
    const d = r.divergences[0]!;
    expect(d.firstSeq).toBe(10);
    expect(d.firstEvent).toBe(events[0]);
  });

  it('the smallest seq wins across several differing keys and projections', () => {
    const events = [map(1, 1, 1), map(2, 1, 2), map(3, 2, 3), ev(4, 3, 'test.req_start', { id: 1, op: 0, sector: 8 }), noise(5)];
    const r = replaySync(events, {
      projections: PROJECTIONS,
      snapshots: [
        grants(5, { '0:1:1': { handle: 1, seq: 1 }, '0:2:1': { handle: 2, seq: 2 } }), // 0:3:2 missing live
        stateSnapshot(requestsProjection.name, 5, [['3:1', { value: { op: 0, sector: 9 }, seq: 4 }]]),
      ],
    });
    expect(summary(r)).toEqual([
      { projection: grantsProjection.name, atSeq: 5, keys: ['0:3:2'], firstSeq: 3 },
      { projection: requestsProjection.name, atSeq: 5, keys: ['3:1'], firstSeq: 4 },
    ]);
  });
});

// ─── Snapshots mid-run ──────────────────────────────────────────────────────────────────────

describe('snapshots mid-run', () => {
  const events = [map(1, 1, 1), map(2, 1, 2), unmap(3, 1, 1), map(7, 1, 3), noise(8)];

  it('applies exactly the events with seq <= atSeq before comparing, even when atSeq falls in a hole', () => {
    const snaps = [
      grants(0, {}),
      grants(2, { '0:1:1': { handle: 1, seq: 1 }, '0:2:1': { handle: 2, seq: 2 } }),
      grants(5, { '0:2:1': { handle: 2, seq: 2 } }), // between 3 and 7
      grants(8, { '0:2:1': { handle: 2, seq: 2 }, '0:3:1': { handle: 7, seq: 7 } }),
    ];
    const r = replaySync(events, { projections: [grantsProjection], snapshots: [...snaps].reverse() });
    expect(r.divergences).toEqual([]);
    expect(r.snapshotsCompared).toBe(4);
  });

  it('reports a divergence at the snapshot where it appears and not at the ones before', () => {
    const snaps = [grants(2, { '0:1:1': { handle: 1, seq: 1 }, '0:2:1': { handle: 2, seq: 2 } }), grants(3, { '0:1:1': { handle: 1, seq: 1 }, '0:2:1': { handle: 2, seq: 2 } })];
    const r = replaySync(events, { projections: [grantsProjection], snapshots: snaps });
    expect(summary(r)).toEqual([{ projection: grantsProjection.name, atSeq: 3, keys: ['0:1:1'], firstSeq: 1 }]);
  });

  it('a snapshot past the end of the log is compared at the end and says the log is short', () => {
    const r = replaySync(events.slice(0, 3), { projections: [grantsProjection], snapshots: [grants(8, { '0:2:1': { handle: 2, seq: 2 }, '0:3:1': { handle: 7, seq: 7 } })] });
    expect(r.divergences[0]!.explanation).toMatch(/at seq 8 \(the log ends at seq 3, before it\); first diverging event seq 7/);
  });

  it('skips snapshots of projections this replay does not have', () => {
    const r = replaySync(events, { projections: [grantsProjection], snapshots: [stateSnapshot('test.nobody', 3, [])] });
    expect(r.skippedSnapshots).toEqual([{ projection: 'test.nobody', atSeq: 3, reason: 'no such projection in this replay' }]);
    expect(r.snapshotsCompared).toBe(0);
  });
});

// ─── Sources, progress, misuse ──────────────────────────────────────────────────────────────

describe('replay sources', () => {
  it('takes an async iterable and gives the same result as the in-memory stream', async () => {
    const m = runModel(
      fc.sample(opArb, { seed: 7, numRuns: 300 }),
      1,
    );
    async function* source() {
      for (const e of m.events) {
        if (e.seq % 17 === 0) await new Promise((r) => setImmediate(r));
        yield e;
      }
    }
    const opts = () => ({ projections: PROJECTIONS, auditors: auditors(), snapshots: m.snapshots });
    const a = await replay(source(), opts());
    const s = await replay(m.events, opts());
    expect(a.events).toBe(m.events.length);
    expect(a.divergences).toEqual([]);
    expect(a.snapshotsCompared).toBe(m.snapshots.length);
    expect(a.states).toEqual(s.states);
  });

  it('reports progress every N events and at the end', async () => {
    const seen: [number, number | null][] = [];
    await replay(
      Array.from({ length: 10 }, (_, i) => noise(i + 1)),
      { projections: [], onProgress: (p) => seen.push([p.events, p.lastSeq]), progressEveryEvents: 4 },
    );
    expect(seen).toEqual([
      [4, 4],
      [8, 8],
      [10, 10],
    ]);
  });

  it('an empty stream: no events, lastSeq null, empty states', async () => {
    const r = await replay([], { projections: PROJECTIONS, auditors: auditors() });
    expect([r.events, r.lastSeq, r.states.get(grantsProjection.name)?.size]).toEqual([0, null, 0]);
  });

  it('refuses two projections of the same name (a bug)', () => {
    expect(() => replaySync([], { projections: [grantsProjection, grantsProjection] })).toThrow(/two projections named/);
  });
});

// ─── Snapshot files ─────────────────────────────────────────────────────────────────────────

describe('snapshot files', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  const sample: StateSnapshot[] = [
    stateSnapshot('a', 10, [
      ['k1', { value: { x: 1, nested: [1, 'two', null, { deep: true }] }, seq: 3 }],
      ['k2', { value: undefined, seq: 4 }],
      ['k3', { value: { u: undefined }, seq: 5 }],
      ['big', { value: 2n ** 62n + 1n, seq: 6 }],
    ]),
    stateSnapshot('b', 0, []),
  ];

  it('round-trips through msgpack, keeping undefined values distinct from missing ones', () => {
    const back = decodeSnapshot(encodeSnapshot(sample));
    expect(back).toEqual(sample);
    expect('k2' in back[0]!.entries && 'u' in (back[0]!.entries.k3!.value as object)).toBe(true);
    // and the replay of the same state compares equal to it
    expect(replaySync([], { projections: [], snapshots: back }).skippedSnapshots).toHaveLength(2);
  });

  it('writes and reads a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-snap-'));
    dirs.push(dir);
    const path = join(dir, 'snapshot.msgpack');
    await writeSnapshotFile(path, sample);
    expect(await readSnapshotFile(path)).toEqual(sample);
  });

  it('rejects what is not a snapshot document, saying what is wrong', async () => {
    const bad = (doc: unknown) => () => decodeSnapshot(pack(doc));
    expect(bad([1, 2])).toThrow(SnapshotFormatError);
    expect(bad({ format: 'pvsim-snapshot', version: 2, snapshots: [] })).toThrow(/unsupported snapshot version 2/);
    expect(bad({ format: 'pvsim-snapshot', version: 1, snapshots: [{ projection: 'p', atSeq: -1, entries: {} }] })).toThrow(/bad atSeq/);
    expect(bad({ format: 'pvsim-snapshot', version: 1, snapshots: [{ projection: 'p', atSeq: 1, entries: { k: { seq: 1 } } }] })).toThrow(/entry "k" is not \{ value, seq \}/);
    expect(() => decodeSnapshot(Uint8Array.of(0x93, 0x01))).toThrow(/not msgpack/);
    const dir = mkdtempSync(join(tmpdir(), 'pvsim-snap-'));
    dirs.push(dir);
    writeFileSync(join(dir, 's'), pack({ format: 'x' }));
    await expect(readSnapshotFile(join(dir, 's'))).rejects.toThrow(/\/s: not a pvsim-snapshot document/);
  });
});
