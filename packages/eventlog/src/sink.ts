/**
 * The sink: drains every writer's channel, merges the records into one order by sequence
 * number, and appends them to the log (its own thread in worker mode; in-process for tests and
 * the deterministic mode, driven by whoever owns the clock).
 *
 * Merge: each channel is in sequence order (one thread, increasing numbers), so a record is
 * written once every smaller number has been written. A number that stays missing for
 * `gapTimeoutMs` — its writer died between taking it and publishing — is declared lost with a
 * `log.gap` event. Drops counted by writers become `log.dropped` events. Nothing is lost silently.
 *
 * The sink's own events (`log.writer`, `log.gap`, `log.dropped`, `log.end`) take numbers from the
 * same counter and are merged like any writer's (writer id 0, "sink").
 */
import { assert } from '@pvsim/abi';
import { BackRing, EvtchnDoorbells, SharedRing, rawSlotCodec } from '@pvsim/ring';
import type { Clock } from '@pvsim/runtime';
import { CTL_DROPPED, KindTable, LOG_SLOT_BYTES, PART_FIRST, PART_HEADER_BYTES, PART_LAST, PART_PAYLOAD_BYTES, checkChannel, type LogChannelSpec, type LogHubSpec } from './channel.js';
import { SegmentWriter, type SegmentHeader } from './format.js';
import { KindCodec, REC_BYTES_MAX, REC_HEADER_BYTES, REC_KIND, REC_LEN, REC_SEQ, RecordDecoder, encodeRecordInto, type KindDef } from './record.js';
import type { EventKind, EventPayloads, EventRecord } from './schema.js';

export interface LogSinkOptions {
  dir: string;
  hub: LogHubSpec;
  clock: Clock;
  header: Omit<SegmentHeader, 'segment' | 'createdAt' | 'format'>;
  segmentBytes?: number;
  /** How long a missing sequence number is waited for before it is declared lost. */
  gapTimeoutMs?: number;
  /** Records held for merging at most; past this, missing numbers are declared lost at once. */
  pendingMax?: number;
  /** Called with every record written, decoded (live auditors, progress). */
  onRecord?: (e: EventRecord) => void;
}

export interface SinkStats {
  records: number;
  writers: number;
  gaps: number;
  lostSeqs: number;
  dropped: number;
  late: number;
  corruptParts: number;
  segments: number;
  lastSeq: number;
}

/**
 * Records waiting to be merged, in one growable arena per channel: no allocation per record.
 * Records are appended in seq order (one thread's order) and taken from the head.
 */
class RecordQueue {
  buf = new Uint8Array(64 << 10);
  dv = new DataView(this.buf.buffer);
  offs: number[] = [];
  head = 0;
  tail = 0; // bytes used

  get length(): number {
    return this.offs.length - this.head;
  }

  headSeq(): number {
    return this.length > 0 ? this.dv.getFloat64(this.offs[this.head]! + REC_SEQ, true) : Infinity;
  }

  push(src: Uint8Array, off: number, len: number): void {
    if (this.tail + len > this.buf.length) this.grow(len);
    this.buf.set(src.subarray(off, off + len), this.tail);
    this.offs.push(this.tail);
    this.tail += len;
  }

  /** Make room for `len` more bytes at the tail (and return the offset to write at). */
  reserve(len: number): number {
    if (this.tail + len > this.buf.length) this.grow(len);
    return this.tail;
  }

  commit(len: number): void {
    this.offs.push(this.tail);
    this.tail += len;
  }

  /** Offset of the head record; then `shift()`. */
  headOff(): number {
    return this.offs[this.head]!;
  }

  shift(): void {
    this.head++;
    if (this.head === this.offs.length) {
      this.offs.length = 0;
      this.head = 0;
      this.tail = 0;
    }
  }

  private grow(len: number): void {
    // Compact first: drop what was taken.
    if (this.head > 0) {
      const from = this.offs[this.head]!;
      this.buf.copyWithin(0, from, this.tail);
      this.offs = this.offs.slice(this.head).map((o) => o - from);
      this.head = 0;
      this.tail -= from;
    }
    if (this.tail + len > this.buf.length) {
      const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.tail + len));
      bigger.set(this.buf.subarray(0, this.tail));
      this.buf = bigger;
      this.dv = new DataView(bigger.buffer);
    }
  }
}

/** u16 at `off` of a slot given as one or two pieces. */
function readU16(pieces: readonly Uint8Array[], off: number): number {
  const a = pieces[0]!;
  const lo = off < a.length ? a[off]! : pieces[1]![off - a.length]!;
  const hi = off + 1 < a.length ? a[off + 1]! : pieces[1]![off + 1 - a.length]!;
  return lo | (hi << 8);
}

/** Copy `n` part bytes (after the part header) of a slot into `dst` at `at`. */
function copyPart(pieces: readonly Uint8Array[], dst: Uint8Array, at: number, n: number): void {
  const a = pieces[0]!;
  const from = PART_HEADER_BYTES;
  if (pieces.length === 1 || from + n <= a.length) {
    if (n <= 64) for (let i = 0; i < n; i++) dst[at + i] = a[from + i]!;
    else dst.set(a.subarray(from, from + n), at);
    return;
  }
  const first = Math.max(0, a.length - from);
  if (first > 0) dst.set(a.subarray(from, from + first), at);
  const b = pieces[1]!;
  const bFrom = from + first - a.length;
  dst.set(b.subarray(bFrom, bFrom + n - first), at + first);
}

class Channel {
  readonly back: BackRing<Uint8Array, Uint8Array>;
  readonly control: Int32Array;
  readonly queue = new RecordQueue();
  droppedSeen = 0;
  /** A record being reassembled from parts: its bytes so far go at the queue's tail. */
  partialAt = -1;
  partialLen = 0;
  partialWant = 0;

  /** Per slot: views to read a one-slot record in place, or null where the slot straddles pages. */
  readonly slots: ({ u8: Uint8Array; dv: DataView } | null)[];

  constructor(readonly spec: LogChannelSpec) {
    checkChannel(spec);
    const sring = new SharedRing(spec.pages, LOG_SLOT_BYTES);
    this.back = new BackRing(sring, rawSlotCodec(LOG_SLOT_BYTES), rawSlotCodec(LOG_SLOT_BYTES));
    this.control = new Int32Array(spec.control);
    this.slots = Array.from({ length: sring.size }, (_, i) => {
      const u8 = sring.directSlot(i);
      return u8 ? { u8, dv: new DataView(u8.buffer, u8.byteOffset, u8.byteLength) } : null;
    });
  }
}

export class LogSink {
  private readonly channels = new Map<number, Channel>();
  private chans: Channel[] = [];
  private readonly own = new RecordQueue();
  private readonly seq: BigInt64Array;
  private readonly bells: EvtchnDoorbells;
  private readonly kinds: KindTable;
  private readonly ownCodecs = new Map<string, KindCodec>();
  private readonly defined = new Set<number>();
  private readonly out: SegmentWriter;
  private readonly decoder = new RecordDecoder();
  private readonly clock: Clock;
  private readonly gapTimeoutNs: number;
  private readonly pendingMax: number;
  private readonly onRecord: ((e: EventRecord) => void) | undefined;
  private readonly scratch = new Uint8Array(REC_BYTES_MAX + 1);
  private readonly scratchDv = new DataView(this.scratch.buffer);
  private nextSeq = 0;
  private missingSinceNs: number | null = null;
  private closed = false;
  private readonly s: SinkStats = { records: 0, writers: 0, gaps: 0, lostSeqs: 0, dropped: 0, late: 0, corruptParts: 0, segments: 0, lastSeq: -1 };

  constructor(opts: LogSinkOptions) {
    this.seq = new BigInt64Array(opts.hub.seq);
    this.bells = EvtchnDoorbells.attach(opts.hub.bells);
    this.bells.bind(0, 0);
    this.kinds = new KindTable(opts.hub);
    this.out = new SegmentWriter(opts.dir, opts.header, opts.segmentBytes);
    this.clock = opts.clock;
    this.gapTimeoutNs = (opts.gapTimeoutMs ?? 500) * 1e6;
    this.pendingMax = opts.pendingMax ?? 1_000_000;
    this.onRecord = opts.onRecord;
  }

  get stats(): Readonly<SinkStats> {
    return { ...this.s, segments: this.out.segments };
  }

  /** The waiter the sink sleeps on between drains (worker mode). */
  waiter() {
    return this.bells.waiter(0);
  }

  /** Wake a sink sleeping in `runSinkLoop` (port 0 is the sink's own doorbell). */
  wake(): void {
    this.bells.raise(0);
  }

  /** Start draining a writer's channel; announces the writer with a `log.writer` event. */
  attach(spec: LogChannelSpec): void {
    assert(!this.closed, 'attach after close');
    assert(!this.channels.has(spec.id), `log writer ${spec.id} attached twice`);
    const ch = new Channel(spec);
    this.channels.set(spec.id, ch);
    this.chans = [...this.channels.values()];
    this.s.writers++;
    this.emitOwn('log.writer', { writer: spec.id, name: spec.name, dom: spec.dom });
  }

  /**
   * One pass: take everything the writers published, merge, and queue it for the file.
   * Returns the records queued. Cheap when idle.
   */
  drain(): number {
    for (const ch of this.chans) this.drainChannel(ch);
    return this.merge(false);
  }

  /** Write what is queued to disk. */
  async flush(): Promise<void> {
    await this.out.flush();
  }

  /**
   * Final drain: every number taken so far is either written or declared lost; `log.end` is the
   * last record; segments are closed with their footers.
   */
  async close(): Promise<SinkStats> {
    assert(!this.closed, 'sink closed twice');
    for (const ch of this.chans) this.drainChannel(ch);
    this.merge(true);
    // `log.end` names its own number; anything a writer emits after it is not part of the log.
    this.emitOwn('log.end', (seq) => ({ lastSeq: seq, events: this.s.records + 1 }));
    this.merge(true);
    this.closed = true;
    await this.out.close();
    return this.stats;
  }

  private emitOwn<K extends EventKind>(kind: K, payload: EventPayloads[K] | ((seq: number) => EventPayloads[K])): void {
    let codec = this.ownCodecs.get(kind);
    if (!codec) {
      codec = new KindCodec(this.kinds.resolve(kind));
      this.ownCodecs.set(kind, codec);
    }
    const seq = Number(Atomics.add(this.seq, 0, 1n));
    if (typeof payload === 'function') payload = payload(seq);
    const n = encodeRecordInto(this.scratch, this.scratchDv, 0, codec, { seq, tsNs: this.clock.nowNs(), dom: 0, thread: 0, payload });
    this.own.push(this.scratch, 0, n);
  }

  private drainChannel(ch: Channel): void {
    const back = ch.back;
    const sring = back.sring;
    const q = ch.queue;
    let taken = 0;
    let avail: number;
    // Slots are read straight into the merge queue: that is the one copy out of shared memory;
    // the header fields are read once into locals and checked before anything is copied.
    while ((avail = back.unconsumedRequests()) > 0) {
      const mask = sring.mask;
      for (let k = 0; k < avail; k++) {
        // Fast path: a whole record in one slot, carrying exactly the next number, with nothing
        // queued anywhere: it goes straight from the ring into the file's block (one copy).
        const direct = ch.slots[(back.reqCons + k) & mask]!;
        if (direct !== null && direct.u8[0] === (PART_FIRST | PART_LAST) && q.length === 0 && ch.partialAt < 0 && this.own.length === 0) {
          const dv = direct.dv;
          const n = dv.getUint16(2, true);
          if (n >= REC_HEADER_BYTES && n <= PART_PAYLOAD_BYTES && dv.getUint16(PART_HEADER_BYTES, true) === n && dv.getFloat64(PART_HEADER_BYTES + REC_SEQ, true) === this.nextSeq) {
            this.writeFrom(direct.u8, dv, PART_HEADER_BYTES, n);
            this.nextSeq++;
            this.missingSinceNs = null;
            continue;
          }
        }
        const pieces = sring.slotViews(back.reqCons + k);
        const a = pieces[0];
        const flags = a[0]!;
        const n = a[2]! | (a[3]! << 8);
        if (n > PART_PAYLOAD_BYTES) {
          this.corrupt(ch);
          continue;
        }
        const dst = flags & PART_FIRST ? (ch.partialAt >= 0 ? (this.corrupt(ch), -1) : -1) : ch.partialAt + ch.partialLen;
        if (flags & PART_FIRST) {
          const want = n >= 2 ? readU16(pieces, PART_HEADER_BYTES) : 0;
          if (want < REC_HEADER_BYTES || (flags & PART_LAST && want !== n) || (!(flags & PART_LAST) && want <= n)) {
            this.corrupt(ch);
            continue;
          }
          const at = q.reserve(want);
          copyPart(pieces, q.buf, at, n);
          if (flags & PART_LAST) {
            q.commit(n);
            continue;
          }
          ch.partialAt = at;
          ch.partialWant = want;
          ch.partialLen = n;
          continue;
        }
        if (ch.partialAt < 0 || ch.partialLen + n > ch.partialWant) {
          this.corrupt(ch);
          continue;
        }
        copyPart(pieces, q.buf, dst, n);
        ch.partialLen += n;
        if (flags & PART_LAST) {
          if (ch.partialLen === ch.partialWant) q.commit(ch.partialWant);
          else this.corrupt(ch);
          ch.partialAt = -1;
        }
      }
      back.consumeRequests(avail);
      taken += avail;
      back.pushEmptyResponses(avail);
      back.pushResponses();
    }
    void taken;
    // Ask for a doorbell only once half the ring is waiting; the drain loop also polls.
    back.finalCheckForRequests(Math.max(1, back.size >>> 1));
    const dropped = Atomics.load(ch.control, CTL_DROPPED);
    if (dropped !== ch.droppedSeen) {
      const count = (dropped - ch.droppedSeen) >>> 0;
      ch.droppedSeen = dropped;
      this.s.dropped += count;
      this.emitOwn('log.dropped', { writer: ch.spec.id, count, total: dropped >>> 0, reason: 'writer buffer full' });
    }
  }

  private corrupt(ch: Channel): void {
    this.s.corruptParts++;
    ch.partialAt = -1;
  }

  /**
   * Write records in sequence order while the next number is at some queue's head.
   * `final`: declare every missing number lost now (close).
   */
  private merge(final: boolean): number {
    let written = 0;
    const chans = this.chans;
    let last: RecordQueue | null = null;
    for (;;) {
      // Fast path: the queue that gave the previous record, then the sink's own, then the rest.
      let hit: RecordQueue | null = null;
      let hitSeq = Infinity;
      if (last && last.length > 0 && (hitSeq = last.headSeq()) <= this.nextSeq) hit = last;
      else if (this.own.length > 0 && (hitSeq = this.own.headSeq()) <= this.nextSeq) hit = this.own;
      else {
        for (let i = 0; i < chans.length; i++) {
          const q = chans[i]!.queue;
          if (q.length > 0 && (hitSeq = q.headSeq()) <= this.nextSeq) {
            hit = q;
            break;
          }
        }
      }
      if (hit) {
        const off = hit.headOff();
        if (hitSeq < this.nextSeq) {
          // Its number was already declared lost (`log.gap`): the log stays in order, so the
          // record is not written, but it is counted and said, never dropped silently.
          hit.shift();
          this.s.late++;
          this.emitOwn('log.dropped', { writer: hit.dv.getUint16(off + 8, true), count: 1, total: this.s.late, reason: `seq ${hitSeq} arrived after its gap was declared` });
          continue;
        }
        this.write(hit, off);
        hit.shift();
        written++;
        this.nextSeq = hitSeq + 1;
        this.missingSinceNs = null;
        last = hit;
        continue;
      }
      // Nothing carries the next number. Is anything waiting behind it?
      let minHead = this.own.headSeq();
      let pending = this.own.length;
      for (const ch of chans) {
        const h = ch.queue.headSeq();
        if (h < minHead) minHead = h;
        pending += ch.queue.length;
      }
      const taken = Number(Atomics.load(this.seq, 0));
      const target = minHead !== Infinity ? minHead : final ? taken : this.nextSeq;
      if (target <= this.nextSeq) break;
      const now = this.clock.nowNs();
      if (this.missingSinceNs === null) this.missingSinceNs = now;
      if (final || pending > this.pendingMax || now - this.missingSinceNs >= this.gapTimeoutNs) {
        const from = this.nextSeq;
        const to = target - 1;
        const waitedMs = Math.round((now - this.missingSinceNs) / 1e6);
        this.s.gaps++;
        this.s.lostSeqs += to - from + 1;
        this.nextSeq = target;
        this.missingSinceNs = null;
        const reason = final
          ? 'taken but never published before the log closed (writer died mid-emit?)'
          : pending > this.pendingMax
            ? `missing while ${pending} later records waited (limit ${this.pendingMax})`
            : `missing for ${waitedMs} ms (writer died mid-emit?)`;
        this.emitOwn('log.gap', { from, to, reason });
        continue;
      }
      break;
    }
    return written;
  }

  private write(q: RecordQueue, off: number): void {
    this.writeFrom(q.buf, q.dv, off, q.dv.getUint16(off + REC_LEN, true));
  }

  /** Append the record at `buf[off, off+len)` to the log (its kind defined first if new). */
  private writeFrom(buf: Uint8Array, dv: DataView, off: number, len: number): void {
    const kindId = dv.getUint16(off + REC_KIND, true);
    if (!this.defined.has(kindId)) {
      const def = this.kinds.get(kindId);
      if (!def) {
        // A writer used an id the table does not hold: a pvsim bug, but never a silent loss.
        this.s.corruptParts++;
        return;
      }
      this.out.defineKind(def);
      this.decoder.define(def);
      this.defined.add(kindId);
    }
    this.out.addRecord(buf, off, len, dv);
    this.s.records++;
    this.s.lastSeq = dv.getFloat64(off + REC_SEQ, true);
    if (this.onRecord) {
      const e = this.decoder.decode(buf, dv, off, len);
      if (e && typeof e !== 'string') this.onRecord(e);
    }
  }
}

export type { KindDef };

export interface SinkLoopOptions {
  /** Drain at least this often even without a doorbell (ms). */
  pollMs?: number;
  /** Write to disk at least this often (ms); a crash of the process loses at most this much. */
  flushMs?: number;
}

/**
 * Real-time drain loop for a sink in its own thread: sleep on the doorbell (Atomics.waitAsync,
 * never blocking the event loop) or `pollMs`, drain, and flush every `flushMs`. Resolves when
 * `stop()` is called, after the sink's final close.
 */
export function runSinkLoop(sink: LogSink, clock: Clock, opts: SinkLoopOptions = {}): { stop(): Promise<SinkStats>; done: Promise<SinkStats> } {
  const pollMs = opts.pollMs ?? 5;
  const flushNs = (opts.flushMs ?? 20) * 1e6;
  const waiter = sink.waiter();
  let stopping = false;
  let lastFlush = clock.nowNs();
  let flushing: Promise<void> | null = null;
  let flushError: unknown = null;
  const done = (async () => {
    while (!stopping) {
      if (flushError) throw flushError;
      const gen = waiter.generation();
      waiter.takePending(() => {});
      sink.drain();
      const now = clock.nowNs();
      // Disk writes run in the background: writers' rings keep being drained meanwhile.
      if (!flushing && now - lastFlush >= flushNs) {
        lastFlush = now;
        flushing = sink.flush().then(
          () => void (flushing = null),
          (e: unknown) => void ((flushError = e), (flushing = null)),
        );
      }
      if (stopping) break;
      await waiter.wait(gen, { timeoutMs: pollMs });
    }
    if (flushing) await flushing;
    return sink.close();
  })();
  return {
    stop: () => {
      stopping = true;
      sink.wake();
      return done;
    },
    done,
  };
}
