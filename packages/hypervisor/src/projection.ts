/**
 * Grant state folded from the log, the same state read live from the hypervisor's tables (for
 * replay-equals-state), and the teardown auditor.
 *
 * Keys: `g/<granter>/<gref>` a live grant entry {grantee, gfn, ro};
 *       `m/<mapper>/<handle>` a live mapping {granter, gref, hostGfn, ro};
 *       `p/<dom>/<port>`      an open event-channel port {remoteDom, remotePort, state}.
 */
import { EVTCHNSTAT_closed, EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound, GNTMAP_readonly, GTF_permit_access, GTF_readonly, GTF_type_mask } from '@pvsim/abi';
import { keyedProjection, registerAuditor, registerProjection, type Auditor, type EventRecord, type StateSnapshot } from '@pvsim/eventlog';
import { E_REMOTE_DOM, E_REMOTE_PORT, E_STATE, E_WORDS, MT_FLAGS, MT_GRANTER, MT_HOST_GFN, MT_INUSE, MT_REF, MT_WORDS, type HvState } from './shared.js';
import './events.js';

export const GRANTS_PROJECTION = 'hv.grants';

type GrantValue = { grantee: number; gfn: number; ro: boolean };
type MapValue = { granter: number; gref: number; hostGfn: number; ro: boolean };
type PortValue = { remoteDom: number; remotePort: number; state: 'unbound' | 'interdomain' };

export const grantsProjection = registerProjection(
  keyedProjection<GrantValue | MapValue | PortValue>({
    name: GRANTS_PROJECTION,
    on: {
      'grant.access': (e, m) => m.set(`g/${e.payload.granter}/${e.payload.gref}`, { grantee: e.payload.grantee, gfn: e.payload.gfn, ro: e.payload.ro }),
      'grant.end': (e, m) => {
        if (e.payload.ok) m.delete(`g/${e.payload.granter}/${e.payload.gref}`);
      },
      'grant.map': (e, m) => {
        const p = e.payload;
        if (p.status === 0) m.set(`m/${p.mapper}/${p.handle}`, { granter: p.granter, gref: p.gref, hostGfn: p.hostGfn, ro: p.ro });
      },
      'grant.unmap': (e, m) => {
        if (e.payload.status === 0) m.delete(`m/${e.payload.mapper}/${e.payload.handle}`);
      },
      'grant.unmap_replace': (e, m) => {
        if (e.payload.status === 0) m.delete(`m/${e.payload.mapper}/${e.payload.handle}`);
      },
      'evtchn.alloc_unbound': (e, m) => m.set(`p/${e.payload.dom}/${e.payload.port}`, { remoteDom: e.payload.remoteDom, remotePort: 0, state: 'unbound' }),
      'evtchn.bind': (e, m) => {
        const p = e.payload;
        m.set(`p/${p.dom}/${p.port}`, { remoteDom: p.remoteDom, remotePort: p.remotePort, state: 'interdomain' });
        m.set(`p/${p.remoteDom}/${p.remotePort}`, { remoteDom: p.dom, remotePort: p.port, state: 'interdomain' });
      },
      'evtchn.close': (e, m) => {
        const p = e.payload;
        m.delete(`p/${p.dom}/${p.port}`);
        const remote = `p/${p.remoteDom}/${p.remotePort}`;
        const r = m.get(remote) as PortValue | undefined;
        if (p.remoteDom >= 0 && r && r.state === 'interdomain' && r.remoteDom === p.dom && r.remotePort === p.port) m.set(remote, { remoteDom: p.dom, remotePort: 0, state: 'unbound' });
      },
      'domain.destroy': (e, m) => {
        // Xen frees a dying domain's grant table: its entries are gone with it.
        const prefix = `g/${e.payload.domid}/`;
        for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
      },
    },
  }),
);

/**
 * The same state read live from the hypervisor's tables, in the projection's form, stamped with
 * the seq of the event that last changed each entry. Take it while nothing runs hypercalls.
 */
export function grantsSnapshot(s: HvState, atSeq: number): StateSnapshot {
  const entries: StateSnapshot['entries'] = {};
  const { maxDomains, grantEntries: ge, maptrackEntries: mte, evtchnPorts: ports } = s.c;
  for (let d = 0; d < maxDomains; d++) {
    // A dying domain's grant table, maptrack and ports are gone (destroy released them).
    if (!s.isActive(d)) continue;
    for (let r = 0; r < ge; r++) {
      const w0 = Atomics.load(s.grant, (d * ge + r) * 2);
      if ((w0 & GTF_type_mask) !== GTF_permit_access) continue;
      entries[`g/${d}/${r}`] = {
        value: { grantee: w0 >>> 16, gfn: Atomics.load(s.grant, (d * ge + r) * 2 + 1), ro: (w0 & GTF_readonly) !== 0 },
        seq: s.grantSeq[d * ge + r]!,
      };
    }
    for (let h = 0; h < mte; h++) {
      const m = (d * mte + h) * MT_WORDS;
      const f = Atomics.load(s.maptrack, m + MT_FLAGS);
      if (!(f & MT_INUSE)) continue;
      entries[`m/${d}/${h}`] = {
        value: { granter: s.maptrack[m + MT_GRANTER]!, gref: s.maptrack[m + MT_REF]!, hostGfn: s.maptrack[m + MT_HOST_GFN]!, ro: (f & GNTMAP_readonly) !== 0 },
        seq: s.maptrackSeq[d * mte + h]!,
      };
    }
    for (let p = 1; p < ports; p++) {
      const w = (d * ports + p) * E_WORDS;
      const st = Atomics.load(s.evtchn, w + E_STATE);
      if (st === EVTCHNSTAT_closed) continue;
      entries[`p/${d}/${p}`] = {
        value: { remoteDom: s.evtchn[w + E_REMOTE_DOM]!, remotePort: st === EVTCHNSTAT_unbound ? 0 : s.evtchn[w + E_REMOTE_PORT]!, state: st === EVTCHNSTAT_interdomain ? 'interdomain' : 'unbound' },
        seq: s.evtchnSeq[d * ports + p]!,
      };
    }
  }
  return { projection: GRANTS_PROJECTION, atSeq, entries };
}

/**
 * Teardown: a destroyed domain leaves nothing behind. At its `domain.destroy` it must hold no
 * mapping and no open port (Xen releases both before the domain dies); by the end of the log,
 * every mapping of a destroyed domain's grants must be gone too (each one pins a zombie frame).
 */
export function teardownAuditor(): Auditor {
  const maps = new Map<string, { e: EventRecord; granter: number; mapper: number }>();
  const ports = new Map<string, { e: EventRecord; dom: number }>();
  const destroyed = new Map<number, EventRecord>();
  return {
    name: 'hv.teardown',
    onEvent(e, report) {
      const p = e.payload as Record<string, number>;
      switch (e.kind) {
        case 'domain.create':
          destroyed.delete(p.domid!);
          break;
        case 'grant.map':
          if (p.status === 0) maps.set(`${p.mapper}/${p.handle}`, { e, granter: p.granter!, mapper: p.mapper! });
          break;
        case 'grant.unmap':
        case 'grant.unmap_replace':
          if (p.status === 0) maps.delete(`${p.mapper}/${p.handle}`);
          break;
        case 'evtchn.alloc_unbound':
          ports.set(`${p.dom}/${p.port}`, { e, dom: p.dom! });
          break;
        case 'evtchn.bind':
          ports.set(`${p.dom}/${p.port}`, { e, dom: p.dom! });
          break;
        case 'evtchn.close':
          ports.delete(`${p.dom}/${p.port}`);
          break;
        case 'domain.destroy': {
          const d = p.domid!;
          destroyed.set(d, e);
          for (const [k, v] of maps) {
            if (v.mapper === d) report({ auditor: 'hv.teardown', rule: 'mapping-left-at-destroy', message: `d${d} was destroyed still holding mapping ${k} (d${v.granter} gref ${(v.e.payload as { gref: number }).gref})`, seqs: [v.e.seq, e.seq], dom: d });
          }
          for (const [k, v] of ports) {
            if (v.dom === d) report({ auditor: 'hv.teardown', rule: 'port-left-at-destroy', message: `d${d} was destroyed with port ${k.split('/')[1]} still open`, seqs: [v.e.seq, e.seq], dom: d });
          }
          break;
        }
      }
    },
    finish(report) {
      for (const [k, v] of maps) {
        const d = destroyed.get(v.granter);
        if (d) report({ auditor: 'hv.teardown', rule: 'zombie-mapping', message: `mapping ${k} of destroyed d${v.granter}'s gref ${(v.e.payload as { gref: number }).gref} was never unmapped: its frame cannot be freed`, seqs: [v.e.seq, d.seq], dom: v.mapper });
      }
    },
  };
}

registerAuditor('hv.teardown', teardownAuditor);
