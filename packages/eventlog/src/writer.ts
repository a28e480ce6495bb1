/**
 * The emitting side of the log, one per thread. `emit` is synchronous: it writes the binary
 * record (record.ts) straight into the thread's channel ring — one slot for any ordinary event —
 * takes one `Atomics.add` on the run's sequence counter, and publishes. It never blocks beyond a
 * bounded spin when the ring is full.
 *
 * Order: the sequence number is taken after space is reserved and right before the record is
 * written, so a thread that emits after changing state gets a number after every event emitted
 * before that change (Atomics are sequentially consistent). A record is published (`req_prod`)
 * before `emit` returns: a thread terminated right after emitting loses nothing.
 *
 * Full ring policy: raise the sink's doorbell, spin up to `fullWaitUs` for the sink to free
 * space, then drop the event, counting it in shared memory; the sink turns the count into a
 * `log.dropped` event. No sequence number is consumed by a dropped event, so drops never look
 * like gaps, and they are never silent.
 */
import { assert } from '@pvsim/abi';
import { EvtchnDoorbells, FrontRing, SharedRing, rawSlotCodec } from '@pvsim/ring';
import type { Clock } from '@pvsim/runtime';
import { CTL_DROPPED, KindTable, LOG_SLOT_BYTES, PART_FIRST, PART_HEADER_BYTES, PART_LAST, PART_PAYLOAD_BYTES, checkChannel, type LogChannelSpec } from './channel.js';
import { KindCodec, REC_BYTES_MAX, encodeRecordInto } from './record.js';
import type { EventKind, EventPayloads } from './schema.js';

export interface EventWriterOptions {
  /** How long `emit` may spin waiting for the sink when the ring is full (µs). */
  fullWaitUs?: number;
}

export interface EventEmitter {
  /** Record one transition; returns its sequence number, or -1 if it was dropped (and counted). */
  emit<K extends EventKind>(kind: K, payload: EventPayloads[K], dom?: number): number;
}

interface SlotView {
  u8: Uint8Array;
  dv: DataView;
}

export class EventWriter implements EventEmitter {
  readonly id: number;
  readonly name: string;
  /** The domain this thread acts for; events may name another with `emit(…, dom)`. */
  readonly dom: number;
  private readonly sring: SharedRing;
  private readonly front: FrontRing<Uint8Array, Uint8Array>;
  private readonly seq: BigInt64Array;
  private readonly control: Int32Array;
  private readonly bells: EvtchnDoorbells;
  private readonly clock: Clock;
  private readonly fullWaitUs: number;
  private readonly kinds: KindTable;
  private readonly codecs = new Map<string, KindCodec>();
  /** Per slot: a view to write a one-slot record in place, or null where the slot straddles pages. */
  private readonly slots: (SlotView | null)[];
  private readonly mask: number;
  private rec = Buffer.alloc(1024);
  private recDv = new DataView(this.rec.buffer, this.rec.byteOffset, this.rec.length);
  private readonly part = Buffer.alloc(LOG_SLOT_BYTES);
  private droppedLocal = 0;
  private emittedLocal = 0;
  private readonly e = { seq: 0, tsNs: 0, dom: 0, thread: 0, payload: null as unknown };

  constructor(spec: LogChannelSpec, clock: Clock, opts: EventWriterOptions = {}) {
    checkChannel(spec);
    this.id = spec.id;
    this.name = spec.name;
    this.dom = spec.dom;
    this.sring = new SharedRing(spec.pages, LOG_SLOT_BYTES);
    // Slots are written in place; the codecs are never asked to encode or decode.
    this.front = new FrontRing(this.sring, rawSlotCodec(LOG_SLOT_BYTES), rawSlotCodec(LOG_SLOT_BYTES));
    this.mask = this.sring.mask;
    this.slots = Array.from({ length: this.sring.size }, (_, i) => {
      const u8 = this.sring.directSlot(i);
      return u8 ? { u8, dv: new DataView(u8.buffer, u8.byteOffset, u8.byteLength) } : null;
    });
    this.seq = new BigInt64Array(spec.hub.seq);
    this.control = new Int32Array(spec.control);
    this.bells = EvtchnDoorbells.attach(spec.hub.bells);
    this.kinds = new KindTable(spec.hub);
    this.clock = clock;
    this.fullWaitUs = opts.fullWaitUs ?? 500;
    this.e.thread = spec.id;
  }

  get emitted(): number {
    return this.emittedLocal;
  }

  get dropped(): number {
    return this.droppedLocal;
  }

  private lastKind = '';
  private lastCodec: KindCodec | null = null;

  private codec(kind: string): KindCodec {
    if (kind === this.lastKind) return this.lastCodec!;
    let c = this.codecs.get(kind);
    if (!c) {
      c = new KindCodec(this.kinds.resolve(kind), true);
      this.codecs.set(kind, c);
    }
    this.lastKind = kind;
    this.lastCodec = c;
    return c;
  }

  /**
   * Record one state transition. Returns its sequence number (live state can remember which
   * event last changed it, for replay-equals-state), or -1 if it had to be dropped (counted).
   */
  emit<K extends EventKind>(kind: K, payload: EventPayloads[K], dom: number = this.dom): number {
    const codec = this.codec(kind);
    const p = payload as unknown as Record<string, unknown>;
    const f = this.front;
    // Fastest: a fixed-size kind in one slot, through its compiled writer.
    if (codec.write !== null && codec.fixedBytes + 28 <= PART_PAYLOAD_BYTES && codec.fits!(p)) {
      if (!this.reserve(1)) return this.drop();
      const slot = this.slots[f.reqProdPvt & this.mask];
      if (slot) {
        const ts = this.clock.nowNs();
        const seq = Number(Atomics.add(this.seq, 0, 1n));
        const n = codec.write(slot.dv, PART_HEADER_BYTES, p, seq, ts, dom, this.id);
        const u8 = slot.u8;
        u8[0] = PART_FIRST | PART_LAST;
        u8[1] = 0;
        u8[2] = n & 0xff;
        u8[3] = n >>> 8;
        f.advanceRequests(1);
        return this.publish(seq);
      }
    }
    const fb = codec.fieldsBytes(p);
    const e = this.e;
    e.dom = dom;
    e.payload = p;
    if (fb >= 0 && 28 + fb <= PART_PAYLOAD_BYTES) {
      // The common case: one slot, written in place.
      if (!this.reserve(1)) return this.drop();
      const slot = this.slots[f.reqProdPvt & this.mask];
      if (slot) {
        e.tsNs = this.clock.nowNs();
        const seq = (e.seq = Number(Atomics.add(this.seq, 0, 1n)));
        const n = encodeRecordInto(slot.u8, slot.dv, PART_HEADER_BYTES, codec, e);
        slot.u8[0] = PART_FIRST | PART_LAST;
        slot.u8[1] = 0;
        slot.u8[2] = n & 0xff;
        slot.u8[3] = n >>> 8;
        f.advanceRequests(1);
        return this.publish(seq);
      }
    }
    // Anything else: encode privately, then copy into as many slots as it takes.
    e.tsNs = this.clock.nowNs();
    e.seq = 0;
    const need = 28 + (fb >= 0 ? fb : 0);
    if (this.rec.length < Math.max(need, 1024)) this.growRec(need);
    let n: number;
    for (;;) {
      try {
        n = encodeRecordInto(this.rec, this.recDv, 0, codec, e);
        break;
      } catch (err) {
        if (this.rec.length >= REC_BYTES_MAX + 1) throw err;
        this.growRec(this.rec.length * 4);
      }
    }
    const slots = Math.ceil(n / PART_PAYLOAD_BYTES);
    assert(slots <= f.size, `an event of ${slots} slots can never fit a ${f.size}-slot log ring`);
    if (!this.reserve(slots)) return this.drop();
    const seq = Number(Atomics.add(this.seq, 0, 1n));
    this.recDv.setFloat64(12, seq, true);
    const part = this.part;
    for (let i = 0, from = 0; i < slots; i++) {
      const to = Math.min(n, from + PART_PAYLOAD_BYTES);
      part[0] = (i === 0 ? PART_FIRST : 0) | (to === n ? PART_LAST : 0);
      part[1] = 0;
      part[2] = (to - from) & 0xff;
      part[3] = (to - from) >>> 8;
      part.set(this.rec.subarray(from, to), PART_HEADER_BYTES);
      this.sring.copyIn(f.reqProdPvt, part, PART_HEADER_BYTES + to - from);
      f.advanceRequests(1);
      from = to;
    }
    return this.publish(seq);
  }

  private growRec(n: number): void {
    this.rec = Buffer.alloc(Math.min(REC_BYTES_MAX + 1, Math.max(n, this.rec.length * 2)));
    this.recDv = new DataView(this.rec.buffer, this.rec.byteOffset, this.rec.length);
  }

  private publish(seq: number): number {
    if (this.front.pushRequestsAndCheckNotify()) this.bells.raise(this.id);
    this.emittedLocal++;
    return seq;
  }

  private drop(): number {
    this.droppedLocal++;
    Atomics.add(this.control, CTL_DROPPED, 1);
    return -1;
  }

  private reserve(slots: number): boolean {
    const f = this.front;
    if (f.freeRequests() >= slots) return true;
    f.discardResponses(f.size);
    if (f.freeRequests() >= slots) return true;
    this.bells.raise(this.id);
    if (this.fullWaitUs > 0) {
      const deadline = performance.now() + this.fullWaitUs / 1000;
      while (performance.now() < deadline) {
        for (let k = 0; k < 64; k++) {
          f.discardResponses(f.size);
          if (f.freeRequests() >= slots) return true;
        }
      }
    }
    return false;
  }
}

/** Emits nothing; for daemons run without a log. Numbers its events so callers still get seqs. */
export function nullEmitter(): EventEmitter {
  let seq = 0;
  return { emit: () => seq++ };
}
