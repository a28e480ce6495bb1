/**
 * Auditors: invariant checks over an event stream — a replay of a log, or live on the sink's
 * stream. Each violation cites the events that prove it (`seqs`), so `pvsim log show --seq`
 * can put the evidence on screen.
 *
 * An auditor is stateful and single-use: build a fresh one (with its factory) per stream.
 * Auditors must hold memory proportional to the state they check (domains, writers, open
 * gaps), never to the length of the log.
 */
import { assert } from '@pvsim/abi';
import type { EventRecord } from './schema.js';

export interface Violation {
  /** The auditor that found it. */
  readonly auditor: string;
  /** A stable, kebab-case identifier of the broken invariant, e.g. 'sequence-gap'. */
  readonly rule: string;
  /** One line for people: what is wrong, in the log's terms. */
  readonly message: string;
  /** The events that prove it, in ascending order. */
  readonly seqs: readonly number[];
  /** The domain at fault, when there is one. */
  readonly dom?: number;
}

export type ReportViolation = (v: Violation) => void;

export interface Auditor {
  readonly name: string;
  /** Check one event; call `report` for each violation it completes. */
  onEvent(e: EventRecord, report: ReportViolation): void;
  /** The stream ended: report what can only be decided at the end (e.g. gaps never explained). */
  finish(report: ReportViolation): void;
}

// ─── Running auditors ───────────────────────────────────────────────────────────────────────

/** Violations kept in memory by default; later ones are counted in `suppressed`. */
export const VIOLATIONS_MAX_DEFAULT = 100_000;

export interface AuditRun {
  onEvent(e: EventRecord): void;
  /** End the stream (once); returns every kept violation. */
  finish(): readonly Violation[];
  /** Kept violations so far, in the order found. */
  readonly violations: readonly Violation[];
  /** Violations found beyond `violationsMax` (reported to `onViolation`, not kept). */
  readonly suppressed: number;
}

export interface AuditRunOptions {
  /** Called for every violation as it is found (live use: the sink logs or counts them). */
  onViolation?: (v: Violation) => void;
  violationsMax?: number;
}

/** Drive several auditors over one stream; the sink uses this to audit live. */
export function runAuditors(auditors: readonly Auditor[], opts: AuditRunOptions = {}): AuditRun {
  const max = opts.violationsMax ?? VIOLATIONS_MAX_DEFAULT;
  const kept: Violation[] = [];
  let suppressed = 0;
  let finished = false;
  const report: ReportViolation = (v) => {
    if (kept.length < max) kept.push(v);
    else suppressed++;
    opts.onViolation?.(v);
  };
  return {
    onEvent(e) {
      assert(!finished, 'AuditRun.onEvent after finish');
      for (const a of auditors) a.onEvent(e, report);
    },
    finish() {
      assert(!finished, 'AuditRun.finish called twice');
      finished = true;
      for (const a of auditors) a.finish(report);
      return kept;
    },
    get violations() {
      return kept;
    },
    get suppressed() {
      return suppressed;
    },
  };
}

// ─── Sequence numbers ───────────────────────────────────────────────────────────────────────

/** Unexplained jumps held while waiting for a `log.gap` record; beyond this they are reported at once. */
export const PENDING_JUMPS_MAX = 4096;

type Range = [from: number, to: number];

/** `parts` minus the inclusive range [from, to]. */
function subtract(parts: Range[], from: number, to: number): Range[] {
  const out: Range[] = [];
  for (const [a, b] of parts) {
    if (to < a || from > b) {
      out.push([a, b]);
      continue;
    }
    if (a < from) out.push([a, from - 1]);
    if (to < b) out.push([to + 1, b]);
  }
  return out;
}

const fmtRange = ([a, b]: Range): string => (a === b ? `${a}` : `${a}..${b}`);

/**
 * Sequence numbers must be strictly increasing and contiguous from the first one.
 *  - 'sequence-order': a seq repeated or went backwards (cites the previous highest and this one).
 *  - 'sequence-gap': seqs that never arrived and no `log.gap` record explains (cites the events
 *    either side of the hole). Decided at `finish` (or when too many holes are open), because
 *    the sink writes its `log.gap` record after the hole, when it gives up waiting.
 *  - 'events-lost': every `log.gap` record (cites it): the loss is explained but still a loss.
 *  - 'events-dropped': every `log.dropped` record (cites it; `dom` is the writer's domain when
 *    its `log.writer` record was seen).
 *  - 'bad-log-record': a `log.gap` whose range is not two integers from <= to.
 * `log.gap` ranges are inclusive at both ends.
 */
export function sequenceAuditor(): Auditor {
  const name = 'sequence';
  let highest: number | null = null;
  /** Holes not (yet) covered by a `log.gap` record. */
  let pending: { before: number; after: number; parts: Range[] }[] = [];
  /** `log.gap` ranges still ahead of `highest` (a hole may open after its record). */
  let explained: Range[] = [];
  const writerDom = new Map<number, number>();

  const reportHole = (h: { before: number; after: number; parts: Range[] }, report: ReportViolation): void => {
    const missing = h.parts.reduce((n, [a, b]) => n + b - a + 1, 0);
    report({
      auditor: name,
      rule: 'sequence-gap',
      message: `${missing} event(s) missing between seq ${h.before} and ${h.after} (seq ${h.parts.map(fmtRange).join(', ')}), and no log.gap record explains them`,
      seqs: [h.before, h.after],
    });
  };

  return {
    name,
    onEvent(e, report) {
      if (highest === null) highest = e.seq;
      else if (e.seq <= highest) {
        report({
          auditor: name,
          rule: 'sequence-order',
          message: e.seq === highest ? `seq ${e.seq} repeated` : `seq ${e.seq} after seq ${highest}: sequence went backwards`,
          seqs: e.seq === highest ? [e.seq] : [e.seq, highest],
        });
        // A late event fills its hole: it arrived out of order, it is not lost.
        pending = pending.map((h) => ({ ...h, parts: subtract(h.parts, e.seq, e.seq) })).filter((h) => h.parts.length > 0);
      } else {
        if (e.seq > highest + 1) {
          let parts: Range[] = [[highest + 1, e.seq - 1]];
          for (const [a, b] of explained) parts = subtract(parts, a, b);
          if (parts.length > 0) {
            pending.push({ before: highest, after: e.seq, parts });
            if (pending.length > PENDING_JUMPS_MAX) reportHole(pending.shift()!, report);
          }
        }
        highest = e.seq;
        explained = explained.filter(([, b]) => b > e.seq);
      }

      switch (e.kind) {
        case 'log.writer': {
          const p = e.payload as Record<string, unknown>;
          if (Number.isInteger(p.writer) && Number.isInteger(p.dom)) writerDom.set(p.writer as number, p.dom as number);
          break;
        }
        case 'log.gap': {
          const p = e.payload as Record<string, unknown>;
          const { from, to } = p;
          if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || (from as number) > (to as number)) {
            report({ auditor: name, rule: 'bad-log-record', message: `log.gap with a malformed range (from ${String(from)}, to ${String(to)})`, seqs: [e.seq] });
            break;
          }
          const [a, b] = [from as number, to as number];
          report({
            auditor: name,
            rule: 'events-lost',
            message: `${b - a + 1} event(s) lost (seq ${fmtRange([a, b])})${typeof p.reason === 'string' && p.reason ? `: ${p.reason}` : ''}`,
            seqs: [e.seq],
          });
          pending = pending.map((h) => ({ ...h, parts: subtract(h.parts, a, b) })).filter((h) => h.parts.length > 0);
          if (highest === null || b > highest) explained.push([a, b]);
          break;
        }
        case 'log.dropped': {
          const p = e.payload as Record<string, unknown>;
          const dom = typeof p.writer === 'number' ? writerDom.get(p.writer) : undefined;
          report({
            auditor: name,
            rule: 'events-dropped',
            message: `writer ${String(p.writer)}${dom !== undefined ? ` (dom ${dom})` : ''} dropped ${String(p.count)} event(s) (${String(p.total)} in total): its buffer stayed full`,
            seqs: [e.seq],
            ...(dom !== undefined ? { dom } : {}),
          });
          break;
        }
      }
    },
    finish(report) {
      for (const h of pending) reportHole(h, report);
      pending = [];
      explained = [];
    },
  };
}

// ─── Events from destroyed domains ──────────────────────────────────────────────────────────

export interface DestroyedDomainOptions {
  /** Kind of the event that destroys a domain. */
  destroyKind?: string;
  /** Kind of the event that creates one (ends a destroyed period: domids are reused). */
  createKind?: string;
  /** Payload field of both naming the domain. */
  domField?: string;
  /** Offending events listed per destroyed period; the rest are counted in one summary violation. */
  reportsPerDomainMax?: number;
}

/**
 * A destroyed domain emits nothing: any event whose `dom` is a domain destroyed earlier (and
 * not created again since) is 'event-after-destroy', citing the destroy event and the offender.
 * The destroy event itself (even if the dying domain emits it) is not an offence.
 */
export function destroyedDomainAuditor(opts: DestroyedDomainOptions = {}): Auditor {
  const name = 'destroyed-domain';
  const destroyKind = opts.destroyKind ?? 'domain.destroy';
  const createKind = opts.createKind ?? 'domain.create';
  const domField = opts.domField ?? 'domid';
  const perDomainMax = opts.reportsPerDomainMax ?? 100;
  /** dom → the destroying event's seq and how many offences were reported/suppressed since. */
  const destroyed = new Map<number, { seq: number; reported: number; suppressed: number; lastSeq: number }>();

  const flushSuppressed = (dom: number, report: ReportViolation): void => {
    const d = destroyed.get(dom);
    if (!d || d.suppressed === 0) return;
    report({
      auditor: name,
      rule: 'event-after-destroy',
      message: `dom ${dom}: ${d.suppressed} more event(s) after its destroy at seq ${d.seq} (not listed; last at seq ${d.lastSeq})`,
      seqs: [d.seq, d.lastSeq],
      dom,
    });
  };

  const domOf = (e: EventRecord): number | undefined => {
    const v = (e.payload as Record<string, unknown>)[domField];
    return Number.isInteger(v) ? (v as number) : undefined;
  };

  return {
    name,
    onEvent(e, report) {
      if (e.kind === createKind) {
        const d = domOf(e);
        if (d !== undefined) {
          flushSuppressed(d, report);
          destroyed.delete(d);
        }
      }
      const gone = destroyed.get(e.dom);
      if (gone) {
        gone.lastSeq = e.seq;
        if (gone.reported < perDomainMax) {
          gone.reported++;
          report({
            auditor: name,
            rule: 'event-after-destroy',
            message: `dom ${e.dom} emitted ${e.kind} at seq ${e.seq} after it was destroyed at seq ${gone.seq}`,
            seqs: [gone.seq, e.seq],
            dom: e.dom,
          });
        } else gone.suppressed++;
      }
      if (e.kind === destroyKind) {
        const d = domOf(e);
        if (d !== undefined && !destroyed.has(d)) destroyed.set(d, { seq: e.seq, reported: 0, suppressed: 0, lastSeq: e.seq });
      }
    },
    finish(report) {
      for (const dom of [...destroyed.keys()].sort((a, b) => a - b)) flushSuppressed(dom, report);
      destroyed.clear();
    },
  };
}

/** The auditors every replay runs (and the sink runs live). */
export function genericAuditors(): Auditor[] {
  return [sequenceAuditor(), destroyedDomainAuditor()];
}

const auditorFactories = new Map<string, () => Auditor>();

/** Packages register their auditors (by name, once) so that `pvsim replay` runs them too. */
export function registerAuditor(name: string, make: () => Auditor): void {
  auditorFactories.set(name, make);
}

/** Fresh instances of the generic auditors and every registered one. */
export function registeredAuditors(): Auditor[] {
  return [...genericAuditors(), ...[...auditorFactories.values()].map((f) => f())];
}
