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
import { Packr, Unpackr } from 'msgpackr';
import { assert } from '@pvsim/abi';
import { BackRing, EvtchnDoorbells, SharedRing } from '@pvsim/ring';
import type { Clock } from '@pvsim/runtime';
import {
  CONT_HEADER_BYTES,
  CTL_DROPPED,
  FIRST_HEADER_BYTES,
  LOG_SLOT_BYTES,
  PART_FIRST,
  PART_LAST,
  checkChannel,
  logPartCodec,
  type LogChannelSpec,
  type LogHubSpec,
  type LogPart,
} from './channel.js';
import { SegmentWriter, type SegmentHeader } from './format.js';
import { recordFromArray, type EventKind, type EventPayloads, type EventRecord } from './schema.js';

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

interface Queued {
  writer: number;
  seq: number;
  tsNs: number;
  bytes: Uint8Array;
}

class Channel {
  readonly back: BackRing<LogPart, LogPart>;
  readonly control: Int32Array;
  readonly queue: Queued[] = [];
  head = 0;
  droppedSeen = 0;
  // A record being reassembled from parts.
  partial: Buffer | null = null;
  partialAt = 0;
  partialSeq = 0;
  partialTs = 0;

  constructor(readonly spec: LogChannelSpec) {
    checkChannel(spec);
    const sring = new SharedRing(spec.pages, LOG_SLOT_BYTES);
    this.back = new BackRing(sring, logPartCodec, logPartCodec);
    this.control = new Int32Array(spec.control);
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  peek(): Queued | undefined {
    return this.queue[this.head];
  }

  shift(): Queued {
    const q = this.queue[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return q;
  }
}

export class LogSink {
  private readonly channels = new Map<number, Channel>();
  private readonly ownQueue: Queued[] = [];
  private ownHead = 0;
  private readonly seq: BigInt64Array;
  private readonly bells: EvtchnDoorbells;
  private readonly out: SegmentWriter;
  private readonly packr = new Packr({ useRecords: false });
  private readonly unpackr = new Unpackr({ useRecords: false });
  private readonly clock: Clock;
  private readonly gapTimeoutNs: number;
  private readonly pendingMax: number;
  private readonly onRecord: ((e: EventRecord) => void) | undefined;
  private nextSeq = 0;
  private missingSinceNs: number | null = null;
  private closed = false;
  private readonly s: SinkStats = { records: 0, writers: 0, gaps: 0, lostSeqs: 0, dropped: 0, late: 0, corruptParts: 0, segments: 0, lastSeq: -1 };

  constructor(opts: LogSinkOptions) {
    this.seq = new BigInt64Array(opts.hub.seq);
    this.bells = EvtchnDoorbells.attach(opts.hub.bells);
    this.bells.bind(0, 0);
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
    this.channels.set(spec.id, new Channel(spec));
    this.s.writers++;
    this.emitOwn('log.writer', { writer: spec.id, name: spec.name, dom: spec.dom });
  }

  /**
   * One pass: take everything the writers published, merge, and queue it for the file.
   * Returns the records queued. Cheap when idle.
   */
  drain(): number {
    for (const ch of this.channels.values()) this.drainChannel(ch);
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
    for (const ch of this.channels.values()) this.drainChannel(ch);
    this.merge(true);
    // `log.end` names its own number; anything a writer emits after it is not part of the log.
    this.emitOwn('log.end', (seq) => ({ lastSeq: seq, events: this.s.records + 1 }));
    this.merge(true);
    this.closed = true;
    await this.out.close();
    return this.stats;
  }

  private emitOwn<K extends EventKind>(kind: K, payload: EventPayloads[K] | ((seq: number) => EventPayloads[K])): void {
    const seq = Number(Atomics.add(this.seq, 0, 1n));
    if (typeof payload === 'function') payload = payload(seq);
    const tsNs = this.clock.nowNs();
    const bytes = this.packr.pack([seq, tsNs, 0, 0, kind, 1, payload]);
    this.ownQueue.push({ writer: 0, seq, tsNs, bytes: Uint8Array.from(bytes) });
  }

  private drainChannel(ch: Channel): void {
    const back = ch.back;
    let taken = 0;
    while (back.unconsumedRequests() > 0) {
      const r = back.takeRequest();
      taken++;
      if (!r.ok) break;
      this.takePart(ch, r.value as unknown as Uint8Array);
    }
    if (taken > 0) {
      back.pushEmptyResponses(taken);
      back.pushResponses();
    }
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

  /** Reassemble one slot's part (a private copy of the slot). Writers are ours, but a part
   *  that does not fit the protocol is still counted and skipped, never trusted. */
  private takePart(ch: Channel, slot: Uint8Array): void {
    const flags = slot[0]!;
    const n = slot[2]! | (slot[3]! << 8);
    if (flags & PART_FIRST) {
      if (ch.partial) this.s.corruptParts++;
      const dv = new DataView(slot.buffer, slot.byteOffset, LOG_SLOT_BYTES);
      const total = dv.getUint32(4, true);
      const seq = dv.getFloat64(8, true);
      const tsNs = dv.getFloat64(16, true);
      if (n > LOG_SLOT_BYTES - FIRST_HEADER_BYTES || n > total || !Number.isSafeInteger(seq)) {
        this.s.corruptParts++;
        ch.partial = null;
        return;
      }
      if (flags & PART_LAST) {
        if (n !== total) {
          this.s.corruptParts++;
          return;
        }
        // A copy: `slot` is the ring's reused scratch (a Buffer, whose `slice` would not copy).
        ch.queue.push({ writer: ch.spec.id, seq, tsNs, bytes: new Uint8Array(slot.subarray(FIRST_HEADER_BYTES, FIRST_HEADER_BYTES + n)) });
        return;
      }
      ch.partial = Buffer.alloc(total);
      ch.partial.set(slot.subarray(FIRST_HEADER_BYTES, FIRST_HEADER_BYTES + n), 0);
      ch.partialAt = n;
      ch.partialSeq = seq;
      ch.partialTs = tsNs;
      return;
    }
    const p = ch.partial;
    if (!p || n > LOG_SLOT_BYTES - CONT_HEADER_BYTES || ch.partialAt + n > p.length) {
      this.s.corruptParts++;
      ch.partial = null;
      return;
    }
    p.set(slot.subarray(CONT_HEADER_BYTES, CONT_HEADER_BYTES + n), ch.partialAt);
    ch.partialAt += n;
    if (flags & PART_LAST) {
      if (ch.partialAt !== p.length) this.s.corruptParts++;
      else ch.queue.push({ writer: ch.spec.id, seq: ch.partialSeq, tsNs: ch.partialTs, bytes: p });
      ch.partial = null;
    }
  }

  /**
   * Write records in sequence order while the next number is at some queue's head.
   * `final`: declare every missing number lost now (close).
   */
  private merge(final: boolean): number {
    let written = 0;
    const chans = [...this.channels.values()];
    for (;;) {
      // Fast path: the sink's own queue, then every channel, for the exact next number.
      let hit: Queued | undefined;
      const own = this.ownQueue[this.ownHead];
      if (own && own.seq === this.nextSeq) {
        hit = own;
        this.ownHead++;
        if (this.ownHead === this.ownQueue.length) {
          this.ownQueue.length = 0;
          this.ownHead = 0;
        }
      } else {
        for (const ch of chans) {
          const h = ch.peek();
          if (h && h.seq <= this.nextSeq) {
            hit = ch.shift();
            break;
          }
        }
      }
      if (hit) {
        if (hit.seq < this.nextSeq) {
          // Its number was already declared lost (`log.gap`): the log stays in order, so the
          // record is not written, but it is counted and said, never dropped silently.
          this.s.late++;
          this.emitOwn('log.dropped', { writer: hit.writer, count: 1, total: this.s.late, reason: `seq ${hit.seq} arrived after its gap was declared` });
          continue;
        }
        this.write(hit);
        written++;
        this.nextSeq = hit.seq + 1;
        this.missingSinceNs = null;
        continue;
      }
      // Nothing carries the next number. Is anything waiting behind it?
      let minHead = Infinity;
      let pending = this.ownQueue.length - this.ownHead;
      if (own) minHead = own.seq;
      for (const ch of chans) {
        const h = ch.peek();
        if (h && h.seq < minHead) minHead = h.seq;
        pending += ch.pending;
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

  private write(q: Queued): void {
    this.out.add(q.seq, q.tsNs, q.bytes);
    this.s.records++;
    this.s.lastSeq = q.seq;
    if (this.onRecord) {
      let decoded: unknown;
      try {
        decoded = this.unpackr.unpack(q.bytes);
      } catch {
        decoded = null;
      }
      const e = recordFromArray(decoded);
      if (typeof e !== 'string') this.onRecord(e);
    }
  }
}

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
  const done = (async () => {
    while (!stopping) {
      const gen = waiter.generation();
      waiter.takePending(() => {});
      sink.drain();
      const now = clock.nowNs();
      if (now - lastFlush >= flushNs) {
        lastFlush = now;
        await sink.flush();
      }
      if (stopping) break;
      await waiter.wait(gen, { timeoutMs: pollMs });
    }
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
