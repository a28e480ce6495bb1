/**
 * A writer's channel to the sink: one one-way ring per emitting thread plus a few control
 * words, all in shared memory, so that everything a thread emitted survives the thread.
 *
 * Ring slots (`LOG_SLOT_BYTES` each) carry one record, or one part of a record that does not fit:
 *
 *   0  u8  flags: PART_FIRST | PART_LAST
 *   1  u8  0
 *   2  u16 bytes of record in this slot
 *   first part only:
 *   4  u32 total record bytes
 *   8  f64 seq
 *   16 f64 tsNs
 *   24 record bytes …            (continuation parts: record bytes from offset 4)
 *
 * The record bytes are exactly the frame body the sink writes to disk, so the sink merges and
 * writes without decoding. The sink answers consumed slots with empty responses (the slot is
 * released), per the ring's 1:1 rule.
 */
import { assert } from '@pvsim/abi';
import { EvtchnDoorbells, SharedRing, allocateRingPages, type SlotCodec } from '@pvsim/ring';
import { ok } from '@pvsim/abi';

export const LOG_SLOT_BYTES = 128;
export const PART_FIRST = 1;
export const PART_LAST = 2;
export const FIRST_HEADER_BYTES = 24;
export const CONT_HEADER_BYTES = 4;
export const FIRST_PAYLOAD_BYTES = LOG_SLOT_BYTES - FIRST_HEADER_BYTES;
export const CONT_PAYLOAD_BYTES = LOG_SLOT_BYTES - CONT_HEADER_BYTES;
/** Default ring: 2^8 pages = 1 MiB = 4096 slots per writer. */
export const LOG_RING_ORDER_DEFAULT = 8;
/** The largest record an event may encode to; larger is a bug in the emitting package. */
export const EVENT_BYTES_MAX = 64 << 10;
/** Writer ids are event-channel ports of the sink's doorbell table; 0 is the sink itself. */
export const LOG_WRITERS_MAX = 1023;

/** Control words (Int32Array over `control`). */
export const CTL_MAGIC = 0;
export const CTL_DROPPED = 1;
export const CTL_WORDS = 4;
const CHANNEL_MAGIC = 0x4c4f4743; // 'LOGC'

/** Shared by every writer and the sink of one run. */
export interface LogHubSpec {
  /** BigInt64Array[1]: the next global sequence number. */
  readonly seq: SharedArrayBuffer;
  /** The sink's doorbell table; writer `id` raises port `id`. */
  readonly bells: SharedArrayBuffer;
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
  return { seq: new SharedArrayBuffer(8), bells: bells.sab, epochMs };
}

/** Allocate a channel for writer `id` (1..LOG_WRITERS_MAX). */
export function createLogChannel(hub: LogHubSpec, id: number, name: string, dom: number, order = LOG_RING_ORDER_DEFAULT): LogChannelSpec {
  assert(Number.isInteger(id) && id >= 1 && id <= LOG_WRITERS_MAX, `log writer id must be 1..${LOG_WRITERS_MAX}, got ${id}`);
  const pages = allocateRingPages(order);
  const ring = new SharedRing(pages, LOG_SLOT_BYTES);
  ring.init();
  const control = new SharedArrayBuffer(CTL_WORDS * 4);
  Atomics.store(new Int32Array(control), CTL_MAGIC, CHANNEL_MAGIC);
  const bells = EvtchnDoorbells.attach(hub.bells);
  bells.bind(id, 0);
  return { id, name, dom, pages, control, hub };
}

export function checkChannel(spec: LogChannelSpec): void {
  assert(Atomics.load(new Int32Array(spec.control), CTL_MAGIC) === CHANNEL_MAGIC, 'not a log channel');
}

// Little-endian on every platform Node runs on; the sink reads these through a DataView (LE).
const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);
assert(new Uint8Array(Uint16Array.of(1).buffer)[0] === 1, 'pvsim assumes a little-endian host');

/** What the writer hands the ring for one slot. Reused: no allocation per event. */
export interface LogPart {
  flags: number;
  total: number;
  seq: number;
  tsNs: number;
  src: Uint8Array;
  from: number;
  to: number;
}

/** Writes a `LogPart` into a slot; the sink reads slots raw (see `parseFirst`). */
export const logPartCodec: SlotCodec<LogPart> = {
  slotBytes: LOG_SLOT_BYTES,
  encode(p, dst) {
    const n = p.to - p.from;
    const first = (p.flags & PART_FIRST) !== 0;
    const off = first ? FIRST_HEADER_BYTES : CONT_HEADER_BYTES;
    if (off + n > LOG_SLOT_BYTES) return -(off + n);
    dst[0] = p.flags;
    dst[1] = 0;
    dst[2] = n & 0xff;
    dst[3] = n >>> 8;
    if (first) {
      const t = p.total;
      dst[4] = t & 0xff;
      dst[5] = (t >>> 8) & 0xff;
      dst[6] = (t >>> 16) & 0xff;
      dst[7] = t >>> 24;
      f64[0] = p.seq;
      for (let i = 0; i < 8; i++) dst[8 + i] = f64b[i]!;
      f64[0] = p.tsNs;
      for (let i = 0; i < 8; i++) dst[16 + i] = f64b[i]!;
    }
    const src = p.src;
    for (let i = 0; i < n; i++) dst[off + i] = src[p.from + i]!;
    return off + n;
  },
  // The sink parses the private copy itself.
  decode: (src) => ok(src as unknown as LogPart),
};
