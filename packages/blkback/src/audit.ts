/**
 * The block path's grant auditor (`blk.response-after-unmap`), over the event stream:
 *
 *  - 'response-while-mapped': a `blk.response` went to the frontend while a grant its request
 *    used was still mapped by the backend, or had been unmapped (`grant.unmap` /
 *    `grant.unmap_replace`) while something still held a reference to the mapped page (a
 *    `page.get` left the count above 1): the holder still reaches the frontend's page (`sync`:
 *    its next access faults; `replace`: it reads our scratch frame). Holds under `async`. Cites
 *    the request's live (or held-then-unmapped) `grant.map` events, the holders' `page.get`, the
 *    forced unmaps and the response.
 *  - 'mapping-left-at-teardown': a grant of a frontend still mapped by its block backend when
 *    either domain is destroyed, or when the log ends (ring pages included). Cites the map and
 *    the destroy (or only the map at the end of the log).
 *
 * A request is named by backend, frontend, `vdev` and id: two disks of one guest reuse ids (each
 * ring has its own), so the id alone is not enough. Records of version 1 (no `vdev`) read as vdev
 * -1: one device per frontend, as before.
 *
 * Which grants a request used: blkback maps a request's segments in one batch right after its
 * `blk.request`, on the same thread, one `grant.map` per segment (ok or failed). So the request's
 * mappings are the next `nsegs` `grant.map` events of that backend of that frontend's grants
 * EMITTED BY THE SAME WRITER THREAD (`EventRecord.thread`), with nothing else of that thread in
 * between but the allocator's chatter (balloon, p2m population). A thread's events are in its
 * program order whatever other threads do, so another thread of the backend domain (a netback, a
 * second blkback thread) mapping the same frontend's grants at the same time is never mistaken
 * for the request's. (A `grefs` list on `blk.request` would say the same at the price of a
 * msgpack payload on the hottest event — ~0.7 µs more per I/O with the log on, against ~0.2 µs
 * for its fixed fields — and would still be ambiguous when a frontend grants one gref to two
 * requests in flight; the handle-exact mapping comes from the map events themselves.)
 *
 * Memory: proportional to live mappings, held pages and requests in flight.
 */
import { registerAuditor, type Auditor, type EventRecord, type ReportViolation } from '@pvsim/eventlog';

export const BLK_RESPONSE_AUDITOR = 'blk.response-after-unmap';

interface LiveMap {
  readonly seq: number;
  readonly mapper: number;
  readonly granter: number;
  readonly gref: number;
  readonly hostGfn: number;
}

interface Forced {
  readonly map: LiveMap;
  readonly unmapSeq: number;
  readonly getSeqs: readonly number[];
}

interface Req {
  readonly seq: number;
  readonly mapKeys: string[];
}

/** Events a backend emits while mapping one request's segments (do not end the request's window). */
const MAPPING_CHATTER = new Set(['balloon.alloc', 'mem.populate', 'mem.decrease']);

/** A request whose segment maps are still to come, on one writer thread of its backend. */
interface Window {
  readonly reqKey: string;
  readonly front: number;
  /** `grant.map` events still expected (one per segment). */
  left: number;
}

/** The `vdev` of a request/response payload (version 1 had none: -1). */
const vdevOf = (p: Record<string, number>): number => (typeof p.vdev === 'number' ? p.vdev : -1);

export function blkResponseAfterUnmapAuditor(): Auditor {
  const name = BLK_RESPONSE_AUDITOR;
  /** `${mapper}/${handle}` → the live mapping. */
  const maps = new Map<string, LiveMap>();
  /** `${mapper}/${hostGfn}` → the page's count and the `page.get`s that took it above 1. */
  const held = new Map<string, { count: number; getSeqs: number[] }>();
  /** Mappings of an in-flight request unmapped while their page was still held. */
  const forced = new Map<string, Forced>();
  /** `${backend}/${front}/${vdev}/${id}` → the request in flight. */
  const reqs = new Map<string, Req>();
  /** `${backend}/${thread}` → the request whose segments that thread is mapping now. */
  const window = new Map<string, Window>();
  /** Mapping key → the request it serves. */
  const owner = new Map<string, string>();
  /** `${backend}/${front}` pairs seen on the block path. */
  const pairs = new Set<string>();

  /** Any other event of this thread of `backend` ends its window. */
  const closeWindow = (backend: number, thread: number): void => {
    if (window.size > 0) window.delete(`${backend}/${thread}`);
  };

  const unmapped = (p: Record<string, number>, seq: number): void => {
    const key = `${p.mapper}/${p.handle}`;
    const m = maps.get(key);
    if (!m) return;
    maps.delete(key);
    const pk = `${m.mapper}/${m.hostGfn}`;
    const h = held.get(pk);
    held.delete(pk);
    const rk = owner.get(key);
    if (rk !== undefined && h && h.count > 1) forced.set(key, { map: m, unmapSeq: seq, getSeqs: h.getSeqs });
    else owner.delete(key);
  };

  const leftovers = (report: ReportViolation, pred: (m: LiveMap) => boolean, at?: EventRecord): void => {
    for (const [key, m] of maps) {
      if (!pairs.has(`${m.mapper}/${m.granter}`) || !pred(m)) continue;
      report({
        auditor: name,
        rule: 'mapping-left-at-teardown',
        message: at
          ? `d${m.mapper} still maps d${m.granter} gref ${m.gref} (mapping ${key}, seq ${m.seq}) when d${(at.payload as { domid: number }).domid} is destroyed at seq ${at.seq}`
          : `d${m.mapper} still maps d${m.granter} gref ${m.gref} (mapping ${key}, seq ${m.seq}) at the end of the log`,
        seqs: at ? [m.seq, at.seq] : [m.seq],
        dom: m.mapper,
      });
    }
  };

  return {
    name,
    onEvent(e, report) {
      const p = e.payload as Record<string, number>;
      switch (e.kind) {
        case 'blk.request': {
          const key = `${e.dom}/${p.dom}/${vdevOf(p)}/${p.id}`;
          pairs.add(`${e.dom}/${p.dom}`);
          reqs.set(key, { seq: e.seq, mapKeys: [] });
          const wk = `${e.dom}/${e.thread}`;
          if (p.nsegs! > 0) window.set(wk, { reqKey: key, front: p.dom!, left: p.nsegs! });
          else window.delete(wk);
          return;
        }
        case 'blk.response': {
          closeWindow(e.dom, e.thread);
          const key = `${e.dom}/${p.dom}/${vdevOf(p)}/${p.id}`;
          const r = reqs.get(key);
          if (!r) return;
          reqs.delete(key);
          const live: LiveMap[] = [];
          const hold: Forced[] = [];
          for (const mk of r.mapKeys) {
            const m = maps.get(mk);
            if (m) live.push(m);
            const f = forced.get(mk);
            if (f) hold.push(f);
            forced.delete(mk);
            owner.delete(mk);
          }
          if (live.length === 0 && hold.length === 0) return;
          const seqs = new Set<number>([e.seq, ...live.map((m) => m.seq)]);
          for (const f of hold) for (const s of [f.map.seq, ...f.getSeqs, f.unmapSeq]) seqs.add(s);
          const what = [
            ...live.map((m) => `gref ${m.gref} still mapped (seq ${m.seq})`),
            ...hold.map((f) => `gref ${f.map.gref} unmapped at seq ${f.unmapSeq} while its page was still held (page.get at seq ${f.getSeqs.join(', ')})`),
          ];
          const vdev = vdevOf(p);
          report({
            auditor: name,
            rule: 'response-while-mapped',
            message: `d${e.dom} answered d${p.dom}'s request ${p.id} (${vdev >= 0 ? `vdev ${vdev}, ` : ''}blk.request seq ${r.seq}) at seq ${e.seq} with ${what.join('; ')}`,
            seqs: [...seqs].sort((a, b) => a - b),
            dom: e.dom,
          });
          return;
        }
        case 'grant.map': {
          const wk = `${p.mapper}/${e.thread}`;
          const w = window.get(wk);
          // One map event per segment of the request this thread is mapping, ok or failed.
          const mine = w !== undefined && w.front === p.granter;
          if (w) {
            if (!mine || --w.left === 0) window.delete(wk);
          }
          if (p.status !== 0) return;
          const key = `${p.mapper}/${p.handle}`;
          const m: LiveMap = { seq: e.seq, mapper: p.mapper!, granter: p.granter!, gref: p.gref!, hostGfn: p.hostGfn! };
          maps.set(key, m);
          held.delete(`${m.mapper}/${m.hostGfn}`);
          if (mine) {
            const r = reqs.get(w.reqKey);
            if (r) {
              r.mapKeys.push(key);
              owner.set(key, w.reqKey);
            }
          }
          return;
        }
        case 'grant.unmap':
        case 'grant.unmap_replace':
          closeWindow(p.mapper!, e.thread);
          if (p.status === 0) unmapped(p, e.seq);
          return;
        case 'page.get':
        case 'page.put': {
          closeWindow(e.dom, e.thread);
          const pk = `${e.dom}/${p.gfn}`;
          const h = held.get(pk) ?? { count: 1, getSeqs: [] };
          h.count = p.count!;
          if (e.kind === 'page.get' && h.count > 1) h.getSeqs.push(e.seq);
          if (h.count <= 1) held.delete(pk);
          else held.set(pk, h);
          return;
        }
        case 'domain.destroy': {
          const d = p.domid!;
          const gone = (m: LiveMap): boolean => m.mapper === d || m.granter === d;
          leftovers(report, gone, e);
          // Reported once: the hypervisor's own teardown auditor follows what becomes of them.
          for (const [key, m] of maps) if (gone(m) && pairs.has(`${m.mapper}/${m.granter}`)) maps.delete(key);
          return;
        }
        default: {
          if (window.size === 0 || MAPPING_CHATTER.has(e.kind) || e.kind.startsWith('log.')) return;
          if (e.kind.startsWith('blk.') || e.kind.startsWith('grant.unmap.')) closeWindow(e.dom, e.thread);
          else if (e.kind.startsWith('evtchn.') || e.kind.startsWith('mem.')) closeWindow(p.dom!, e.thread);
        }
      }
    },
    finish(report) {
      leftovers(report, () => true);
      maps.clear();
      held.clear();
      forced.clear();
      reqs.clear();
      owner.clear();
      window.clear();
    },
  };
}

registerAuditor(BLK_RESPONSE_AUDITOR, blkResponseAfterUnmapAuditor);
