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
 * Which grants a request used: `blk.request` carries no grefs, so they are derived — blkback
 * maps a request's segments synchronously right after emitting its `blk.request`, so every
 * successful `grant.map` by that backend of that frontend's grants, from the `blk.request` up to
 * the next event of that backend that is not part of the mapping (balloon, p2m population), is
 * that request's. (A `grefs` field on `blk.request`, or the handles on a `blk.map` event, would
 * make this exact without relying on blkback's emission order.)
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

export function blkResponseAfterUnmapAuditor(): Auditor {
  const name = BLK_RESPONSE_AUDITOR;
  /** `${mapper}/${handle}` → the live mapping. */
  const maps = new Map<string, LiveMap>();
  /** `${mapper}/${hostGfn}` → the page's count and the `page.get`s that took it above 1. */
  const held = new Map<string, { count: number; getSeqs: number[] }>();
  /** Mappings of an in-flight request unmapped while their page was still held. */
  const forced = new Map<string, Forced>();
  /** `${backend}/${front}/${id}` → the request in flight. */
  const reqs = new Map<string, Req>();
  /** Which request of a backend is mapping its segments right now. */
  const window = new Map<number, { reqKey: string; front: number }>();
  /** Mapping key → the request it serves. */
  const owner = new Map<string, string>();
  /** `${backend}/${front}` pairs seen on the block path. */
  const pairs = new Set<string>();

  const closeWindow = (backend: number): void => {
    window.delete(backend);
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
          const key = `${e.dom}/${p.dom}/${p.id}`;
          pairs.add(`${e.dom}/${p.dom}`);
          reqs.set(key, { seq: e.seq, mapKeys: [] });
          window.set(e.dom, { reqKey: key, front: p.dom! });
          return;
        }
        case 'blk.response': {
          closeWindow(e.dom);
          const key = `${e.dom}/${p.dom}/${p.id}`;
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
          report({
            auditor: name,
            rule: 'response-while-mapped',
            message: `d${e.dom} answered d${p.dom}'s request ${p.id} (blk.request seq ${r.seq}) at seq ${e.seq} with ${what.join('; ')}`,
            seqs: [...seqs].sort((a, b) => a - b),
            dom: e.dom,
          });
          return;
        }
        case 'grant.map': {
          if (p.status !== 0) return;
          const key = `${p.mapper}/${p.handle}`;
          const m: LiveMap = { seq: e.seq, mapper: p.mapper!, granter: p.granter!, gref: p.gref!, hostGfn: p.hostGfn! };
          maps.set(key, m);
          held.delete(`${m.mapper}/${m.hostGfn}`);
          const w = window.get(m.mapper);
          if (w && w.front === m.granter) {
            const r = reqs.get(w.reqKey);
            if (r) {
              r.mapKeys.push(key);
              owner.set(key, w.reqKey);
            }
          } else closeWindow(m.mapper);
          return;
        }
        case 'grant.unmap':
        case 'grant.unmap_replace':
          closeWindow(p.mapper!);
          if (p.status === 0) unmapped(p, e.seq);
          return;
        case 'page.get':
        case 'page.put': {
          closeWindow(e.dom);
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
          if (MAPPING_CHATTER.has(e.kind) || e.kind.startsWith('log.')) return;
          if (e.kind.startsWith('blk.')) closeWindow(e.dom);
          else if (e.kind.startsWith('evtchn.') || e.kind.startsWith('mem.')) closeWindow(p.dom!);
          else if (e.kind.startsWith('grant.unmap.')) closeWindow(e.dom);
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
