/**
 * Projections: fold events into state.
 *
 * A projection is a pure descriptor (`init`, `apply`, `entries`); the state it folds into is a
 * separate value, so one projection can be replayed any number of times, and later packages
 * (hypervisor, xenstore, blkback, …) register theirs without the replay core knowing them.
 *
 * The canonical, comparable form of any state is a set of keyed entries `{ value, seq }`:
 * `value` is plain JSON-like data (what msgpack carries: null, booleans, numbers, bigints,
 * strings, byte arrays, arrays, plain objects, `undefined`), `seq` the event that last changed
 * the entry. A live daemon exports its real state in the same form (`StateSnapshot`), so replay
 * can compare the two without the daemon ever running the projection ("replay equals state").
 *
 * Convention both sides must follow: an entry's `seq` is the seq of the last event that *set*
 * it, even when it set the same value again. A deleted entry is absent (no tombstone).
 */
import { assert } from '@pvsim/abi';
import type { EventKind, EventRecord } from './schema.js';

/** One entry of a projection's canonical state. */
export interface ProjectedEntry {
  /** Plain JSON-like data; compared with `deepEqual`. */
  readonly value: unknown;
  /** The event that last changed this entry. */
  readonly seq: number;
}

export interface Projection<S = unknown> {
  /** Unique across registered projections; names a snapshot's `projection`. */
  readonly name: string;
  /** A fresh, empty state. */
  init(): S;
  /** Fold one event in. Must ignore kinds it does not know (and payloads it cannot read: the log is input). */
  apply(state: S, e: EventRecord): void;
  /** The canonical form of `state`. Called at snapshot points and at the end, not per event. */
  entries(state: S): Map<string, ProjectedEntry>;
  /**
   * The event that last changed `key`, if the projection remembers it (keyed projections do).
   * Replay uses it to name the first diverging event without keeping the log in memory.
   */
  lastEvent?(state: S, key: string): EventRecord | undefined;
}

/** A live daemon's state (or a replay's), in canonical form, as of the event `atSeq`. */
export interface StateSnapshot {
  readonly projection: string;
  /** Every event with seq <= atSeq is reflected in `entries`; none after it. */
  readonly atSeq: number;
  readonly entries: Record<string, ProjectedEntry>;
}

/** Build a snapshot from canonical entries (a daemon's export, or a projection's `entries`). */
export function stateSnapshot(
  projection: string,
  atSeq: number,
  entries: Iterable<readonly [string, ProjectedEntry]>,
): StateSnapshot {
  // A null-prototype record: a key named `__proto__` is an ordinary key here.
  const out: Record<string, ProjectedEntry> = Object.create(null) as Record<string, ProjectedEntry>;
  for (const [k, e] of entries) out[k] = { value: e.value, seq: e.seq };
  return { projection, atSeq, entries: out };
}

/** A projection's current state as a snapshot at `atSeq` (what a daemon running it would export). */
export function snapshotOf<S>(p: Projection<S>, state: S, atSeq: number): StateSnapshot {
  return stateSnapshot(p.name, atSeq, p.entries(state));
}

// ─── Keyed projections ──────────────────────────────────────────────────────────────────────

/**
 * The state a keyed projection's handlers see. `set` and `delete` stamp the entry with the
 * event being applied; values are treated as immutable (change one with `set` or `update`, never
 * in place, or the change's seq is lost).
 */
export interface KeyedMap<V = unknown> {
  get(key: string): V | undefined;
  has(key: string): boolean;
  /** Set `key` to `value`, stamped with the current event's seq. */
  set(key: string, value: V): void;
  /** `set(key, fn(current))`. */
  update(key: string, fn: (current: V | undefined) => V): void;
  delete(key: string): boolean;
  readonly size: number;
  keys(): IterableIterator<string>;
  /** The current event (the one being applied). */
  readonly event: EventRecord;
}

type KeyedHandler<K extends EventKind, V> = (e: EventRecord<K>, m: KeyedMap<V>) => void;

export interface KeyedProjectionSpec<V> {
  readonly name: string;
  /** One handler per event kind; kinds without a handler are ignored. */
  readonly on: { readonly [K in EventKind]?: KeyedHandler<K, V> };
}

interface KeyedSlot<V> {
  value: V;
  seq: number;
  event: EventRecord;
}

/** The state behind a keyed projection: per key, its value and the record that last set it. */
export class KeyedState<V = unknown> implements KeyedMap<V> {
  private readonly slots = new Map<string, KeyedSlot<V>>();
  private current: EventRecord | null = null;

  get event(): EventRecord {
    assert(this.current !== null, 'KeyedMap used outside an event handler');
    return this.current;
  }

  get size(): number {
    return this.slots.size;
  }

  get(key: string): V | undefined {
    return this.slots.get(key)?.value;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  set(key: string, value: V): void {
    const e = this.event;
    this.slots.set(key, { value, seq: e.seq, event: e });
  }

  update(key: string, fn: (current: V | undefined) => V): void {
    this.set(key, fn(this.get(key)));
  }

  delete(key: string): boolean {
    assert(this.current !== null, 'KeyedMap used outside an event handler');
    return this.slots.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.slots.keys();
  }

  /** @internal Run `fn` with `e` as the current event. */
  applying(e: EventRecord, fn: () => void): void {
    this.current = e;
    try {
      fn();
    } finally {
      this.current = null;
    }
  }

  entries(): Map<string, ProjectedEntry> {
    const out = new Map<string, ProjectedEntry>();
    for (const [k, s] of this.slots) out.set(k, { value: s.value, seq: s.seq });
    return out;
  }

  lastEvent(key: string): EventRecord | undefined {
    return this.slots.get(key)?.event;
  }
}

/**
 * The common case: a projection that is a map from string keys to values, built from one
 * handler per event kind. The seq (and record) of the last change per key is tracked for you.
 *
 *   keyedProjection<{ dom: number }>({ name: 'grants.mapped', on: {
 *     'grant.map':   (e, m) => m.set(`${e.payload.granter}:${e.payload.gref}`, { dom: e.dom }),
 *     'grant.unmap': (e, m) => { m.delete(`${e.payload.granter}:${e.payload.gref}`); },
 *   } })
 */
export function keyedProjection<V = unknown>(spec: KeyedProjectionSpec<V>): Projection<KeyedState<V>> {
  const handlers = new Map<string, (e: EventRecord, m: KeyedMap<V>) => void>();
  for (const [kind, h] of Object.entries(spec.on)) {
    if (typeof h === 'function') handlers.set(kind, h as (e: EventRecord, m: KeyedMap<V>) => void);
  }
  return {
    name: spec.name,
    init: () => new KeyedState<V>(),
    apply(state, e) {
      const h = handlers.get(e.kind);
      if (h) state.applying(e, () => h(e, state));
    },
    entries: (state) => state.entries(),
    lastEvent: (state, key) => state.lastEvent(key),
  };
}

// ─── Registry ───────────────────────────────────────────────────────────────────────────────

const projections = new Map<string, Projection<any>>();

/** Make a projection part of every `pvsim replay`. Re-registering the same object is a no-op. */
export function registerProjection<S>(p: Projection<S>): Projection<S> {
  const prev = projections.get(p.name);
  assert(!prev || prev === p, `projection '${p.name}' registered twice by different objects`);
  projections.set(p.name, p);
  return p;
}

/** Every registered projection, by name. */
export function registeredProjections(): Projection<any>[] {
  return [...projections.keys()].sort().map((n) => projections.get(n)!);
}

/**
 * Built in: the writers (threads) of the run, from the sink's `log.writer` records —
 * key: the writer id, value: { name, dom }. The sink can export the same state for "replay
 * equals state"; every `pvsim replay` runs it.
 */
export const logWritersProjection = registerProjection(
  keyedProjection<{ name: string; dom: number }>({
    name: 'log.writers',
    on: {
      'log.writer': (e, m) => {
        const { writer, name, dom } = e.payload;
        if (Number.isInteger(writer)) m.set(String(writer), { name, dom });
      },
    },
  }),
);

// ─── Comparing values and entries ───────────────────────────────────────────────────────────

/** Values nested deeper than this are never equal (a bound on untrusted snapshot input). */
export const DEEP_EQUAL_DEPTH_MAX = 256;

/**
 * Deterministic deep equality for projection values: plain objects compare by their own
 * enumerable keys in any order, a key holding `undefined` differs from a missing key, arrays
 * compare element-wise (a hole differs from `undefined`), byte arrays byte-wise, numbers exactly
 * (no tolerance; NaN equals NaN; 0 equals -0, because msgpack does not keep the sign of zero),
 * a bigint never equals a number. Anything else (Map, Date, class instances) is equal only to
 * itself: canonical values are plain data.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  return eq(a, b, 0);
}

function eq(a: unknown, b: unknown, depth: number): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b) return false;
  if (typeof a === 'number') return Number.isNaN(a) && Number.isNaN(b);
  if (typeof a !== 'object' || a === null || b === null) return false;
  if (depth >= DEEP_EQUAL_DEPTH_MAX) return false;
  const ob = b as object;
  if (Array.isArray(a)) {
    if (!Array.isArray(ob) || a.length !== ob.length) return false;
    for (let i = 0; i < a.length; i++) {
      if (i in a !== i in ob) return false;
      if (!eq(a[i], ob[i], depth + 1)) return false;
    }
    return true;
  }
  if (Array.isArray(ob)) return false;
  if (a instanceof Uint8Array || ob instanceof Uint8Array) {
    if (!(a instanceof Uint8Array && ob instanceof Uint8Array) || a.length !== ob.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== ob[i]) return false;
    return true;
  }
  if (!isPlain(a) || !isPlain(ob)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(ob).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(ob, k)) return false;
    if (!eq((a as Record<string, unknown>)[k], (ob as Record<string, unknown>)[k], depth + 1)) return false;
  }
  return true;
}

function isPlain(o: object): boolean {
  const p = Object.getPrototypeOf(o) as unknown;
  return p === Object.prototype || p === null;
}

/** One key on which two canonical states differ. A side without the key has no entry. */
export interface EntryDiff {
  readonly key: string;
  readonly live?: ProjectedEntry;
  readonly replayed?: ProjectedEntry;
}

/**
 * Every key on which `live` and `replayed` differ (value or seq), sorted by key.
 * `live` may be a snapshot's record (own keys only are read).
 */
export function diffEntries(
  live: Record<string, ProjectedEntry> | ReadonlyMap<string, ProjectedEntry>,
  replayed: ReadonlyMap<string, ProjectedEntry>,
): EntryDiff[] {
  const liveMap: ReadonlyMap<string, ProjectedEntry> = live instanceof Map ? live : new Map(Object.entries(live));
  const out: EntryDiff[] = [];
  for (const [key, l] of liveMap) {
    const r = replayed.get(key);
    if (!r) out.push({ key, live: l });
    else if (l.seq !== r.seq || !deepEqual(l.value, r.value)) out.push({ key, live: l, replayed: r });
  }
  for (const [key, r] of replayed) if (!liveMap.has(key)) out.push({ key, replayed: r });
  return out.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
}

/** Canonical one-line rendering of a value (sorted keys), cut at `maxChars`; for messages. */
export function formatValue(v: unknown, maxChars = 120): string {
  const s = render(v, 0);
  return s.length > maxChars ? `${s.slice(0, maxChars - 1)}…` : s;
}

function render(v: unknown, depth: number): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'number') return String(v); // -0 renders as 0, as deepEqual sees it
  if (typeof v !== 'object' || v === null) return JSON.stringify(v) ?? String(v);
  if (depth >= 16) return '…';
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (Array.isArray(v)) return `[${Array.from(v, (x) => render(x, depth + 1)).join(',')}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${render((v as Record<string, unknown>)[k], depth + 1)}`).join(',')}}`;
}
