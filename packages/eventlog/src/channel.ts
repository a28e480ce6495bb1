/**
 * A writer's channel to the sink — one one-way ring per emitting thread plus a few control
 * words — and the run-wide hub: the sequence counter, the sink's doorbells and the kind table.
 * All in shared memory, so everything a thread emitted survives the thread.
 *
 * Ring slots (`LOG_SLOT_BYTES`) carry a record (record.ts) or a part of one:
 *
 *   0  u8  flags: PART_FIRST | PART_LAST
 *   1  u8  0
 *   2  u16 bytes of record in this slot
 *   4  record bytes …
 *
 * A one-slot record starts at slot+4, so its f64 seq and time (record offsets 12 and 20) are
 * 8-byte aligned in the ring. The sink answers consumed slots with empty responses (the slot is
 * released), per the ring's 1:1 rule.
 */
import { Packr, Unpackr } from 'msgpackr';
import { assert } from '@pvsim/abi';
import { EvtchnDoorbells, SharedRing, allocateRingPages } from '@pvsim/ring';
import { KIND_ID_MAX, localKindDef, kindDefFrom, type KindDef } from './record.js';
import { spinLock, spinUnlock } from './lock.js';

export const LOG_SLOT_BYTES = 128;
export const PART_FIRST = 1;
export const PART_LAST = 2;
export const PART_HEADER_BYTES = 4;
export const PART_PAYLOAD_BYTES = LOG_SLOT_BYTES - PART_HEADER_BYTES;
/** Default ring: 2^10 pages = 4 MiB = 16384 slots per writer (several ms of a busy daemon). */
export const LOG_RING_ORDER_DEFAULT = 10;
/** Writer ids are event-channel ports of the sink's doorbell table; 0 is the sink itself. */
export const LOG_WRITERS_MAX = 1023;

/** Control words (Int32Array over `control`). */
export const CTL_MAGIC = 0;
export const CTL_DROPPED = 1;
export const CTL_WORDS = 4;
const CHANNEL_MAGIC = 0x4c4f4743; // 'LOGC'

/** Kind table: [lock, count] then one 256-byte entry per kind id (id = index + 1). */
export const KIND_TABLE_ENTRIES = 1024;
export const KIND_ENTRY_BYTES = 256;
const KT_LOCK = 0;
const KT_COUNT = 1;
const KT_HEADER_BYTES = 8;

/** Shared by every writer and the sink of one run. */
export interface LogHubSpec {
  /** BigInt64Array[1]: the next global sequence number. */
  readonly seq: SharedArrayBuffer;
  /** The sink's doorbell table; writer `id` raises port `id`. */
  readonly bells: SharedArrayBuffer;
  /** Run-wide kind ids: every thread resolves a kind name to the same id. */
  readonly kinds: SharedArrayBuffer;
  /** Epoch of the run (ms, `performance.timeOrigin + performance.now()` scale). */
  readonly epochMs: number;
}

/** Everything a thread needs to emit, or the sink to drain: postMessage-able. */
export interface LogChannelSpec {
  readonly id: number;
  readonly name: string;
  readonly dom: number;
  readonly pages: Uint8Array[];
  readonly control: SharedArrayBuffer;
  readonly hub: LogHubSpec;
}

export function createLogHub(epochMs = performance.timeOrigin + performance.now()): LogHubSpec {
  const bells = EvtchnDoorbells.create({ maxPorts: LOG_WRITERS_MAX + 1, maxWaiters: 1 });
  return {
    seq: new SharedArrayBuffer(8),
    bells: bells.sab,
    kinds: new SharedArrayBuffer(KT_HEADER_BYTES + KIND_TABLE_ENTRIES * KIND_ENTRY_BYTES),
    epochMs,
  };
}

/** Allocate a channel for writer `id` (1..LOG_WRITERS_MAX). */
export function createLogChannel(hub: LogHubSpec, id: number, name: string, dom: number, order = LOG_RING_ORDER_DEFAULT): LogChannelSpec {
  assert(Number.isInteger(id) && id >= 1 && id <= LOG_WRITERS_MAX, `log writer id must be 1..${LOG_WRITERS_MAX}, got ${id}`);
  const pages = allocateRingPages(order);
  new SharedRing(pages, LOG_SLOT_BYTES).init();
  const control = new SharedArrayBuffer(CTL_WORDS * 4);
  Atomics.store(new Int32Array(control), CTL_MAGIC, CHANNEL_MAGIC);
  EvtchnDoorbells.attach(hub.bells).bind(id, 0);
  return { id, name, dom, pages, control, hub };
}

export function checkChannel(spec: LogChannelSpec): void {
  assert(Atomics.load(new Int32Array(spec.control), CTL_MAGIC) === CHANNEL_MAGIC, 'not a log channel');
}

const ktPackr = new Packr({ useRecords: false });
const ktUnpackr = new Unpackr({ useRecords: false });

/** The hub's kind table, as one thread sees it (ids cached locally). */
export class KindTable {
  private readonly words: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly byName = new Map<string, KindDef>();
  private readonly byId = new Map<number, KindDef>();

  constructor(hub: LogHubSpec) {
    this.words = new Int32Array(hub.kinds, 0, 2);
    this.bytes = new Uint8Array(hub.kinds);
  }

  /** The run-wide id of `kind`, registering this thread's declaration if it is new. */
  resolve(kind: string): KindDef {
    const cached = this.byName.get(kind);
    if (cached) return cached;
    spinLock(this.words, KT_LOCK);
    try {
      const n = Atomics.load(this.words, KT_COUNT);
      for (let i = this.byId.size; i < n; i++) this.load(i + 1);
      const found = this.byName.get(kind);
      if (found) {
        const mine = localKindDef(kind, found.id);
        assert(
          mine.version === found.version && JSON.stringify(mine.fields) === JSON.stringify(found.fields),
          `event kind '${kind}' is declared differently in two threads (v${mine.version} vs v${found.version})`,
        );
        return found;
      }
      assert(n < KIND_TABLE_ENTRIES && n < KIND_ID_MAX, `more than ${KIND_TABLE_ENTRIES} event kinds`);
      const def = localKindDef(kind, n + 1);
      const body = ktPackr.pack({ kind: def.kind, version: def.version, fields: def.fields });
      assert(body.length + 2 <= KIND_ENTRY_BYTES, `declaration of '${kind}' too large for the kind table`);
      const at = KT_HEADER_BYTES + n * KIND_ENTRY_BYTES;
      this.bytes[at] = body.length & 0xff;
      this.bytes[at + 1] = body.length >>> 8;
      this.bytes.set(body, at + 2);
      Atomics.store(this.words, KT_COUNT, n + 1);
      this.byName.set(kind, def);
      this.byId.set(def.id, def);
      return def;
    } finally {
      spinUnlock(this.words, KT_LOCK);
    }
  }

  /** The definition behind `id` (the sink), or null if no thread registered it. */
  get(id: number): KindDef | null {
    const d = this.byId.get(id);
    if (d) return d;
    if (id < 1 || id > Atomics.load(this.words, KT_COUNT)) return null;
    return this.load(id);
  }

  private load(id: number): KindDef | null {
    const at = KT_HEADER_BYTES + (id - 1) * KIND_ENTRY_BYTES;
    const len = this.bytes[at]! | (this.bytes[at + 1]! << 8);
    let v: unknown;
    try {
      v = ktUnpackr.unpack(Buffer.from(this.bytes.slice(at + 2, at + 2 + len)));
    } catch {
      return null;
    }
    const def = kindDefFrom({ ...(v as object), id });
    if (typeof def === 'string') return null;
    this.byName.set(def.kind, def);
    this.byId.set(id, def);
    return def;
  }
}
