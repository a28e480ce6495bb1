/**
 * The emitting side of the log, one per thread. `emit` is synchronous and costs one slot in the
 * thread's channel ring and one `Atomics.add` on the run's sequence counter; it never blocks
 * beyond a bounded spin when the ring is full.
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
import { Packr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE } from 'msgpackr';
import { assert } from '@pvsim/abi';
import { EvtchnDoorbells, FrontRing, SharedRing } from '@pvsim/ring';
import type { Clock } from '@pvsim/runtime';
import {
  CONT_PAYLOAD_BYTES,
  CTL_DROPPED,
  EVENT_BYTES_MAX,
  FIRST_PAYLOAD_BYTES,
  LOG_SLOT_BYTES,
  PART_FIRST,
  PART_LAST,
  checkChannel,
  logPartCodec,
  type LogChannelSpec,
  type LogPart,
} from './channel.js';
import { currentVersion, type EventKind, type EventPayloads } from './schema.js';

export interface EventWriterOptions {
  /** How long `emit` may spin waiting for the sink when the ring is full (µs). */
  fullWaitUs?: number;
}

export interface EventEmitter {
  /** Record one transition; returns its sequence number, or -1 if it was dropped (and counted). */
  emit<K extends EventKind>(kind: K, payload: EventPayloads[K], dom?: number): number;
}

export class EventWriter implements EventEmitter {
  readonly id: number;
  readonly name: string;
  /** The domain this thread acts for; events may name another with `emit(…, dom)`. */
  readonly dom: number;
  private readonly front: FrontRing<LogPart, never>;
  private readonly seq: BigInt64Array;
  private readonly control: Int32Array;
  private readonly bells: EvtchnDoorbells;
  private readonly clock: Clock;
  private readonly fullWaitUs: number;
  private readonly packr = new Packr({ useRecords: false });
  private readonly tail: unknown[] = [0, 0, 0, '', 0, null];
  private rec = Buffer.alloc(256);
  private readonly part: LogPart = { flags: 0, total: 0, seq: 0, tsNs: 0, src: this.rec, from: 0, to: 0 };
  private droppedLocal = 0;
  private emittedLocal = 0;

  constructor(spec: LogChannelSpec, clock: Clock, opts: EventWriterOptions = {}) {
    checkChannel(spec);
    this.id = spec.id;
    this.name = spec.name;
    this.dom = spec.dom;
    const sring = new SharedRing(spec.pages, LOG_SLOT_BYTES);
    // Responses are never read; the codec is never asked to decode one.
    this.front = new FrontRing(sring, logPartCodec, logPartCodec as never);
    this.seq = new BigInt64Array(spec.hub.seq);
    this.control = new Int32Array(spec.control);
    this.bells = EvtchnDoorbells.attach(spec.hub.bells);
    this.clock = clock;
    this.fullWaitUs = opts.fullWaitUs ?? 500;
  }

  get emitted(): number {
    return this.emittedLocal;
  }

  get dropped(): number {
    return this.droppedLocal;
  }

  /**
   * Record one state transition. Returns its sequence number (live state can remember which
   * event last changed it, for replay-equals-state), or -1 if it had to be dropped (counted).
   */
  emit<K extends EventKind>(kind: K, payload: EventPayloads[K], dom: number = this.dom): number {
    const tsNs = this.clock.nowNs();
    const tail = this.tail;
    tail[0] = tsNs;
    tail[1] = dom;
    tail[2] = this.id;
    tail[3] = kind;
    tail[4] = currentVersion(kind);
    tail[5] = payload;
    const t = this.packr.pack(tail, REUSE_BUFFER_MODE | RESET_BUFFER_MODE) as Buffer & { start: number; end: number };
    // The six-element tail starts with its fixarray byte 0x96; the record is 0x97, then seq as a
    // float64 (0xcb + 8 bytes, patched in once the seq is taken: exact below 2^53, and decoded
    // as a plain number, where a uint64 would come back as a BigInt), then the tail's items.
    assert(t[t.start] === 0x96, 'msgpackr did not encode the record tail as a fixarray of 6');
    const items = t.end - t.start - 1;
    const total = 10 + items;
    assert(total <= EVENT_BYTES_MAX, `event '${kind}' encodes to ${total} bytes, more than ${EVENT_BYTES_MAX}: an event must not carry unbounded data`);
    if (this.rec.length < total) {
      this.rec = Buffer.alloc(Math.max(total, this.rec.length * 2));
      this.part.src = this.rec;
    }
    const rec = this.rec;
    rec[0] = 0x97;
    rec[1] = 0xcb;
    t.copy(rec, 10, t.start + 1, t.end);
    const slots = total <= FIRST_PAYLOAD_BYTES ? 1 : 1 + Math.ceil((total - FIRST_PAYLOAD_BYTES) / CONT_PAYLOAD_BYTES);
    if (!this.reserve(slots)) {
      this.droppedLocal++;
      Atomics.add(this.control, CTL_DROPPED, 1);
      return -1;
    }
    const seq = Number(Atomics.add(this.seq, 0, 1n));
    rec.writeDoubleBE(seq, 2);
    const p = this.part;
    p.total = total;
    p.seq = seq;
    p.tsNs = tsNs;
    let from = 0;
    for (let i = 0; i < slots; i++) {
      const room = i === 0 ? FIRST_PAYLOAD_BYTES : CONT_PAYLOAD_BYTES;
      const to = Math.min(total, from + room);
      p.flags = (i === 0 ? PART_FIRST : 0) | (to === total ? PART_LAST : 0);
      p.from = from;
      p.to = to;
      const r = this.front.pushRequest(p);
      assert(r.ok, `log ring refused a reserved slot: ${JSON.stringify(r)}`);
      from = to;
    }
    if (this.front.pushRequestsAndCheckNotify()) this.bells.raise(this.id);
    this.emittedLocal++;
    return seq;
  }

  private reserve(slots: number): boolean {
    const f = this.front;
    f.discardResponses(f.size);
    if (f.freeRequests() >= slots) return true;
    assert(slots <= f.size, `an event of ${slots} slots can never fit a ${f.size}-slot log ring`);
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
