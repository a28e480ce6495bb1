import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { declareEvent, type EventRecord } from './schema.js';
import {
  deepEqual,
  diffEntries,
  formatValue,
  keyedProjection,
  registerProjection,
  registeredProjections,
  snapshotOf,
  stateSnapshot,
  type Projection,
} from './projection.js';

declare module './schema.js' {
  interface EventPayloads {
    'test.set': { key: string; value: unknown };
    'test.del': { key: string };
    'test.bump': { key: string };
  }
}
declareEvent({ kind: 'test.set', version: 1 });
declareEvent({ kind: 'test.del', version: 1 });
declareEvent({ kind: 'test.bump', version: 1 });

const ev = (seq: number, kind: string, payload: Record<string, unknown>, dom = 1): EventRecord =>
  ({ seq, tsNs: seq * 1000, dom, thread: dom, kind, v: 1, payload }) as EventRecord;

const kv = () =>
  keyedProjection<unknown>({
    name: 'test.kv',
    on: {
      'test.set': (e, m) => m.set(e.payload.key, e.payload.value),
      'test.del': (e, m) => {
        m.delete(e.payload.key);
      },
      'test.bump': (e, m) => m.update(e.payload.key, (n) => ((n as number | undefined) ?? 0) + 1),
    },
  });

function run<S>(p: Projection<S>, events: EventRecord[]): S {
  const s = p.init();
  for (const e of events) p.apply(s, e);
  return s;
}

describe('keyedProjection', () => {
  it('keeps per key the value and the seq of the event that last set it', () => {
    const p = kv();
    const s = run(p, [
      ev(10, 'test.set', { key: 'a', value: 1 }),
      ev(11, 'test.set', { key: 'b', value: { x: [1, 2] } }),
      ev(12, 'test.set', { key: 'a', value: 2 }),
      ev(13, 'test.bump', { key: 'c' }),
      ev(14, 'test.bump', { key: 'c' }),
      ev(15, 'test.set', { key: 'b', value: { x: [1, 2] } }), // same value again: still a change of seq
    ]);
    expect([...p.entries(s)].sort()).toEqual([
      ['a', { value: 2, seq: 12 }],
      ['b', { value: { x: [1, 2] }, seq: 15 }],
      ['c', { value: 2, seq: 14 }],
    ]);
    expect(p.lastEvent!(s, 'a')).toMatchObject({ seq: 12, kind: 'test.set' });
    expect(p.lastEvent!(s, 'zz')).toBeUndefined();
  });

  it('deletes entries without tombstones and ignores kinds it has no handler for', () => {
    const p = kv();
    const s = run(p, [
      ev(1, 'test.set', { key: 'a', value: 1 }),
      ev(2, 'test.unknown', { key: 'a', value: 9 }),
      ev(3, 'log.gap', { from: 0, to: 0, reason: 'x' }),
      ev(4, 'test.del', { key: 'a' }),
      ev(5, 'test.del', { key: 'never' }),
      ev(6, 'test.set', { key: 'b', value: null }),
    ]);
    expect(Object.fromEntries(p.entries(s))).toEqual({ b: { value: null, seq: 6 } });
    expect(p.lastEvent!(s, 'a')).toBeUndefined();
  });

  it('gives each init() an independent state', () => {
    const p = kv();
    const a = run(p, [ev(1, 'test.set', { key: 'k', value: 1 })]);
    const b = p.init();
    expect(p.entries(a).size).toBe(1);
    expect(p.entries(b).size).toBe(0);
  });

  it('refuses use of the map outside a handler (a bug, asserted)', () => {
    const s = kv().init();
    expect(() => s.set('x', 1)).toThrow(/outside an event handler/);
  });

  it('matches a naive fold on random streams (fast-check)', () => {
    const op = fc.record({ k: fc.constantFrom('a', 'b', 'c', 'd'), t: fc.constantFrom('test.set', 'test.del', 'test.bump', 'test.other'), v: fc.integer() });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const p = kv();
        const s = p.init();
        const naive = new Map<string, { value: unknown; seq: number }>();
        ops.forEach((o, i) => {
          const seq = 100 + i;
          p.apply(s, ev(seq, o.t, { key: o.k, value: o.v }));
          if (o.t === 'test.set') naive.set(o.k, { value: o.v, seq });
          else if (o.t === 'test.del') naive.delete(o.k);
          else if (o.t === 'test.bump') naive.set(o.k, { value: ((naive.get(o.k)?.value as number | undefined) ?? 0) + 1, seq });
        });
        expect(diffEntries(naive, p.entries(s))).toEqual([]);
      }),
      { seed: 7, numRuns: 200 },
    );
  });
});

describe('deepEqual', () => {
  it('ignores key order and compares nested data exactly', () => {
    expect(deepEqual({ a: 1, b: { c: [1, 'x', null] } }, { b: { c: [1, 'x', null] }, a: 1 })).toBe(true);
    expect(deepEqual({ a: 1, b: { c: [1, 'x', null] } }, { a: 1, b: { c: [1, 'x'] } })).toBe(false);
    expect(deepEqual([1, [2, [3]]], [1, [2, [3]]])).toBe(true);
  });
  it('distinguishes undefined from missing, holes from undefined, null from undefined', () => {
    expect(deepEqual({ a: undefined }, {})).toBe(false);
    expect(deepEqual({}, { a: undefined })).toBe(false);
    expect(deepEqual({ a: undefined }, { b: undefined })).toBe(false);
    expect(deepEqual({ a: undefined }, { a: undefined })).toBe(true);
    // eslint-disable-next-line no-sparse-arrays
    expect(deepEqual([1, , 3], [1, undefined, 3])).toBe(false);
    expect(deepEqual(null, undefined)).toBe(false);
    expect(deepEqual({ a: null }, { a: undefined })).toBe(false);
  });
  it('compares numbers exactly: no tolerance, no coercion; NaN = NaN; 0 = -0 (msgpack drops the sign)', () => {
    expect(deepEqual(0.1 + 0.2, 0.3)).toBe(false);
    expect(deepEqual(1, '1')).toBe(false);
    expect(deepEqual(1, 1n)).toBe(false);
    expect(deepEqual(2n ** 64n, 2n ** 64n)).toBe(true);
    expect(deepEqual(NaN, NaN)).toBe(true);
    expect(deepEqual(0, -0)).toBe(true);
    expect(deepEqual(2 ** 53, 2 ** 53 + 2)).toBe(false);
  });
  it('distinguishes arrays from objects, compares bytes, and treats non-plain objects by identity', () => {
    expect(deepEqual([1], { 0: 1 })).toBe(false);
    expect(deepEqual({ 0: 1 }, [1])).toBe(false);
    expect(deepEqual(new Uint8Array([1, 2]), Buffer.from([1, 2]))).toBe(true);
    expect(deepEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(deepEqual(new Map([[1, 2]]), new Map([[1, 2]]))).toBe(false);
    expect(deepEqual(Object.assign(Object.create(null), { a: 1 }), { a: 1 })).toBe(true);
  });
  it('is reflexive on random JSON values and symmetric (fast-check)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
        expect(deepEqual(a, structuredClone(a))).toBe(true);
        expect(deepEqual(a, b)).toBe(deepEqual(b, a));
        expect(deepEqual(a, b)).toBe(formatValue(a, Infinity) === formatValue(b, Infinity));
      }),
      { seed: 7, numRuns: 200 },
    );
  });
});

describe('diffEntries and snapshots', () => {
  it('lists every key that differs in value or seq, sorted, with both sides', () => {
    const live = stateSnapshot('p', 20, [
      ['same', { value: { a: 1 }, seq: 3 }],
      ['value', { value: 1, seq: 5 }],
      ['seq', { value: 1, seq: 6 }],
      ['onlyLive', { value: 1, seq: 7 }],
    ]);
    const replayed = new Map([
      ['same', { value: { a: 1 }, seq: 3 }],
      ['value', { value: 2, seq: 5 }],
      ['seq', { value: 1, seq: 4 }],
      ['onlyReplay', { value: 0, seq: 8 }],
    ]);
    expect(diffEntries(live.entries, replayed)).toEqual([
      { key: 'onlyLive', live: { value: 1, seq: 7 } },
      { key: 'onlyReplay', replayed: { value: 0, seq: 8 } },
      { key: 'seq', live: { value: 1, seq: 6 }, replayed: { value: 1, seq: 4 } },
      { key: 'value', live: { value: 1, seq: 5 }, replayed: { value: 2, seq: 5 } },
    ]);
  });
  it('takes a key named __proto__ as an ordinary key', () => {
    const s = stateSnapshot('p', 1, [['__proto__', { value: 1, seq: 1 }]]);
    expect(Object.keys(s.entries)).toEqual(['__proto__']);
    expect(diffEntries(s.entries, new Map([['__proto__', { value: 1, seq: 1 }]]))).toEqual([]);
  });
  it('snapshotOf renders a projection state as a snapshot', () => {
    const p = kv();
    const s = run(p, [ev(4, 'test.set', { key: 'a', value: 'x' })]);
    expect(snapshotOf(p, s, 9)).toEqual({ projection: 'test.kv', atSeq: 9, entries: { a: { value: 'x', seq: 4 } } });
  });
  it('formats values canonically and cuts long ones', () => {
    expect(formatValue({ b: 1, a: [undefined, 2n, 'x'] })).toBe('{"a":[undefined,2n,"x"],"b":1}');
    expect(formatValue('x'.repeat(500), 10)).toBe(`"${'x'.repeat(8)}…`);
  });
});

describe('projection registry', () => {
  it('registers projections once by name and lists them sorted', () => {
    const b = registerProjection(keyedProjection({ name: 'test.registry.b', on: {} }));
    const a = registerProjection(keyedProjection({ name: 'test.registry.a', on: {} }));
    registerProjection(a);
    const mine = registeredProjections().filter((p) => p.name.startsWith('test.registry.'));
    expect(mine).toEqual([a, b]);
    expect(() => registerProjection(keyedProjection({ name: 'test.registry.a', on: {} }))).toThrow(/registered twice/);
  });
});

describe('log.writers (built in)', () => {
  it('is registered and maps writer ids to their name and domain, last announcement winning', async () => {
    const { logWritersProjection: p } = await import('./projection.js');
    expect(registeredProjections()).toContain(p);
    const s = run(p, [
      ev(0, 'log.writer', { writer: 1, name: 'xenstored', dom: 0 }, 0),
      ev(1, 'log.writer', { writer: 2, name: 'blkback', dom: 0 }, 0),
      ev(2, 'log.writer', { writer: 1, name: 'xenstored-2', dom: 0 }, 0),
      ev(3, 'log.writer', { writer: 'x', name: 'junk', dom: 0 }, 0),
    ]);
    expect(Object.fromEntries(p.entries(s))).toEqual({
      '1': { value: { name: 'xenstored-2', dom: 0 }, seq: 2 },
      '2': { value: { name: 'blkback', dom: 0 }, seq: 1 },
    });
  });
});
