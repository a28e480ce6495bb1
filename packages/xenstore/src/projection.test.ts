import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { replaySync, stateSnapshot, type EventEmitter, type EventRecord, type StateSnapshot } from '@pvsim/eventlog';
import { XenStore } from './store.js';
import { XS_STORE_PROJECTION, xsSnapshot, xsStoreProjection } from './projection.js';
import { XenstoredDaemon } from './daemon.js';
import type { XsConnection, XsPerm } from './types.js';

/** Records events as the log hands them back (payloads copied, as msgpack would). */
function recorder(): EventEmitter & { events: EventRecord[] } {
  const events: EventRecord[] = [];
  return {
    events,
    emit(kind, payload, dom = 0) {
      const seq = events.length;
      events.push({ seq, tsNs: seq, dom, thread: 0, kind, v: 1, payload: structuredClone(payload) } as EventRecord);
      return seq;
    },
  };
}

const lastSeq = (events: readonly EventRecord[]) => events.length - 1;

function replayAgainst(events: readonly EventRecord[], snapshots: StateSnapshot[]) {
  return replaySync(events, { projections: [xsStoreProjection], snapshots });
}

const SEGMENTS = ['a', 'b', 'c', 'dev', 'x-1', 'y_2'];
const PERM_LISTS: XsPerm[][] = [
  [{ dom: 0, mode: 'n' }],
  [{ dom: 2, mode: 'n' }, { dom: 0, mode: 'r' }],
  [{ dom: 2, mode: 'b' }],
  [{ dom: 3, mode: 'r' }, { dom: 2, mode: 'w' }],
];

/** A workload step: who does what, where. Failures (EACCES, ENOENT, EAGAIN, quota) are part of it. */
type Step =
  | { t: 'write'; who: number; path: string; value: Uint8Array | string }
  | { t: 'mkdir'; who: number; path: string }
  | { t: 'rm'; who: number; path: string }
  | { t: 'perms'; who: number; path: string; perms: number }
  | { t: 'tx'; who: number; ops: Step[]; commit: boolean; rival: Step | null };

const arbPath = fc
  .array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 4 })
  .chain((parts) => fc.constantFrom(`/local/domain/2/${parts.join('/')}`, `/tool/${parts.join('/')}`, `${parts.join('/')}`));
const arbValue = fc.oneof(fc.string({ maxLength: 12 }), fc.uint8Array({ maxLength: 8 }), fc.constantFrom('', 'ümlaut', '\u{1F600}'));
const arbWho = fc.constantFrom(0, 0, 2, 3);
const arbSimple: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('write' as const), who: arbWho, path: arbPath, value: arbValue }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('mkdir' as const), who: arbWho, path: arbPath }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('rm' as const), who: arbWho, path: arbPath }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('perms' as const), who: arbWho, path: arbPath, perms: fc.nat(PERM_LISTS.length - 1) }) },
);
const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: arbSimple },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('tx' as const),
      who: arbWho,
      ops: fc.array(arbSimple, { maxLength: 5 }),
      commit: fc.boolean(),
      rival: fc.option(arbSimple, { nil: null }),
    }),
  },
);

function runStep(store: XenStore, conns: Map<number, XsConnection>, s: Step, tx = 0): void {
  const c = conns.get(s.who)!;
  switch (s.t) {
    case 'write':
      store.write(c, s.path, typeof s.value === 'string' ? s.value : Buffer.from(s.value), tx);
      return;
    case 'mkdir':
      store.mkdir(c, s.path, tx);
      return;
    case 'rm':
      store.rm(c, s.path, tx);
      return;
    case 'perms':
      store.setPerms(c, s.path, PERM_LISTS[s.perms]!, tx);
      return;
    case 'tx': {
      const t = store.transactionStart(c);
      if (!t.ok) return;
      for (const op of s.ops) runStep(store, conns, { ...op, who: s.who }, t.value);
      // A rival's change in the middle: the commit may meet EAGAIN.
      if (s.rival) runStep(store, conns, s.rival);
      store.transactionEnd(c, t.value, s.commit);
      return;
    }
  }
}

function liveStore(quota?: { nodesPerDomain: number }) {
  const rec = recorder();
  const store = new XenStore({ events: rec, ...(quota ? { quota } : {}) });
  const conns = new Map<number, XsConnection>();
  for (const d of [0, 2, 3]) conns.set(d, store.connect(d, () => {}));
  const c0 = conns.get(0)!;
  store.mkdir(c0, '/local/domain/2');
  store.setPerms(c0, '/local/domain/2', [{ dom: 2, mode: 'n' }]);
  store.mkdir(c0, '/local/domain/3');
  store.setPerms(c0, '/local/domain/3', [{ dom: 3, mode: 'n' }, { dom: 2, mode: 'r' }]);
  return { rec, store, conns };
}

describe('xs.store projection', () => {
  it('replaying the log rebuilds exactly the live tree (values, encodings, permissions, seqs)', () => {
    const { rec, store, conns } = liveStore();
    const c0 = conns.get(0)!;
    store.write(c0, '/tool/text', 'hello');
    store.write(c0, '/tool/bin', Buffer.from([0xff, 0x00, 0xfe]));
    store.write(conns.get(2)!, 'device/vbd/768/ring-ref', '8');
    const t = store.transactionStart(c0);
    expect(t.ok).toBe(true);
    if (!t.ok) return;
    store.write(c0, '/tool/tx/a', '1', t.value);
    store.rm(c0, '/tool/text', t.value);
    expect(store.transactionEnd(c0, t.value, true).ok).toBe(true);
    store.rm(c0, '/local/domain/2/device');
    const r = replayAgainst(rec.events, [xsSnapshot(store, lastSeq(rec.events))]);
    expect(r.snapshotsCompared).toBe(1);
    expect(r.divergences).toEqual([]);
    const replayed = r.states.get(XS_STORE_PROJECTION)!;
    expect(replayed.get('/tool/bin')!.value).toEqual({ value: Buffer.from([0xff, 0x00, 0xfe]).toString('base64'), enc: 'base64', perms: 'n0' });
    expect(replayed.has('/tool/text')).toBe(false);
    expect(replayed.has('/local/domain/2/device/vbd')).toBe(false);
    expect([...replayed.keys()].sort()).toEqual([...store.entries().keys()].sort());
  });

  it('property: any workload, with snapshots along the way, replays to the live tree', () => {
    fc.assert(
      fc.property(fc.array(arbStep, { maxLength: 60 }), fc.nat(5), (steps, every) => {
        const { rec, store, conns } = liveStore({ nodesPerDomain: 12 });
        const snaps: StateSnapshot[] = [];
        steps.forEach((s, i) => {
          runStep(store, conns, s);
          if (i % (every + 1) === 0) snaps.push(xsSnapshot(store, lastSeq(rec.events)));
        });
        snaps.push(xsSnapshot(store, lastSeq(rec.events)));
        const r = replayAgainst(rec.events, snaps);
        expect(r.divergences.map((d) => d.explanation)).toEqual([]);
        expect(r.snapshotsCompared).toBe(snaps.length);
      }),
      { seed: 0x5eed, numRuns: 300 },
    );
  });

  it('finds a tampered tree: a node changed without an event', () => {
    const { rec, store, conns } = liveStore();
    const c0 = conns.get(0)!;
    store.write(c0, '/tool/a', '1');
    store.write(c0, '/tool/b', '2');
    const snap = xsSnapshot(store, lastSeq(rec.events));
    const a = snap.entries['/tool/a']!;
    // The live daemon says '/tool/a' is 'one' (as if it changed it silently).
    const tampered = stateSnapshot(XS_STORE_PROJECTION, snap.atSeq, [
      ...Object.entries(snap.entries).filter(([k]) => k !== '/tool/a'),
      ['/tool/a', { value: { ...(a.value as object), value: 'one' }, seq: a.seq }],
    ]);
    const r = replayAgainst(rec.events, [tampered]);
    expect(r.divergences).toHaveLength(1);
    expect(r.divergences[0]!.firstKey).toBe('/tool/a');
    expect(r.divergences[0]!.firstEvent?.kind).toBe('xs.node');
    expect(r.divergences[0]!.explanation).toMatch(/xs\.store: 1 entry differs/);
  });

  it('finds a log that lost an event: a removal and a write', () => {
    const { rec, store, conns } = liveStore();
    const c0 = conns.get(0)!;
    store.write(c0, '/tool/keep/x', '1');
    store.write(c0, '/tool/gone/y', '2');
    store.rm(c0, '/tool/gone');
    store.write(c0, '/tool/keep/x', '3');
    const snap = xsSnapshot(store, lastSeq(rec.events));
    const rmAt = rec.events.findIndex((e) => e.kind === 'xs.rm');
    const withoutRm = rec.events.filter((_, i) => i !== rmAt);
    const r1 = replayAgainst(withoutRm, [snap]);
    expect(r1.divergences).toHaveLength(1);
    expect(r1.divergences[0]!.entries.map((d) => d.key)).toEqual(['/tool/gone', '/tool/gone/y']);
    expect(r1.divergences[0]!.entries.every((d) => d.live === undefined)).toBe(true);
    const lastWrite = rec.events.findLastIndex((e) => e.kind === 'xs.node' && (e.payload as { path: string }).path === '/tool/keep/x');
    const r2 = replayAgainst(
      rec.events.filter((_, i) => i !== lastWrite),
      [snap],
    );
    expect(r2.divergences[0]!.firstKey).toBe('/tool/keep/x');
    // Live says the node was last set by the event the log lost.
    expect(r2.divergences[0]!.entries[0]!.live!.seq).toBe(rec.events[lastWrite]!.seq);
    expect(r2.divergences[0]!.entries[0]!.replayed!.value).toMatchObject({ value: '1' });
  });

  it('ignores payloads that do not carry a node (the log is input)', () => {
    const ev = (seq: number, kind: string, payload: unknown) => ({ seq, tsNs: seq, dom: 1, thread: 0, kind, v: 1, payload }) as EventRecord;
    const r = replaySync(
      [
        ev(0, 'xs.node', { path: '/ok', value: 'v', enc: 'utf8', perms: 'n0' }),
        ev(1, 'xs.node', { path: 'relative', value: 'v', enc: 'utf8', perms: 'n0' }),
        ev(2, 'xs.node', { path: '/bad', value: 3, enc: 'utf8', perms: 'n0' }),
        ev(3, 'xs.node', { path: '/bad', value: 'v', enc: 'rot13', perms: 'n0' }),
        ev(4, 'xs.rm', { path: '/', dom: 1, nodes: 1 }),
        ev(5, 'xs.rm', { path: 7, dom: 1, nodes: 1 }),
      ],
      { projections: [xsStoreProjection] },
    );
    expect([...r.states.get(XS_STORE_PROJECTION)!.keys()]).toEqual(['/ok']);
  });

  it("xenstored's snapshot command takes the live tree at the latest seq", () => {
    const rec = recorder();
    const d = new XenstoredDaemon({ events: rec });
    d.connect(4);
    const c = d.store.connect(0, () => {});
    d.store.write(c, '/local/domain/4/name', 'guest');
    const snap = d.snapshot();
    expect(snap.projection).toBe(XS_STORE_PROJECTION);
    expect(snap.atSeq).toBe(rec.events.findLast((e) => e.kind === 'xs.node')!.seq);
    expect(replayAgainst(rec.events, [snap]).divergences).toEqual([]);
  });
});
