/**
 * The hypervisor's events: one kind per transition. `granter`/`gref` name a grant the way
 * `pvsim log timeline --gref N --dom D` looks for it; `dom` in a payload is always a domid.
 */
import { declareEvent } from '@pvsim/eventlog';

declare module '@pvsim/eventlog' {
  interface EventPayloads {
    'domain.create': { domid: number; name: string; memoryPages: number; privileged: boolean };
    'domain.pause': { domid: number };
    'domain.unpause': { domid: number };
    /** Destruction began: mappings released, ports closed, frames freed unless still mapped elsewhere. */
    'domain.destroy': { domid: number; framesFreed: number; framesZombie: number; mappingsReleased: number; portsClosed: number };
    /** A dying domain's last frame was released: its domid is free again. */
    'domain.released': { domid: number };
    'mem.populate': { domid: number; gfn: number; mfn: number };
    'mem.decrease': { domid: number; gfn: number; mfn: number };
    /** The granting side wrote a grant entry (`gnttab_grant_foreign_access_ref`). */
    'grant.access': { granter: number; gref: number; grantee: number; gfn: number; ro: boolean };
    /** The granting side ended access; `ok` false when the entry was still mapped (in use). */
    'grant.end': { granter: number; gref: number; ok: boolean; flags: number };
    'grant.map': { granter: number; gref: number; mapper: number; handle: number; hostGfn: number; mfn: number; ro: boolean; status: number };
    'grant.unmap': { granter: number; gref: number; mapper: number; handle: number; hostGfn: number; status: number };
    /** `GNTTABOP_unmap_and_replace`: the old per-page path; `hostGfn` now shows `newMfn`. */
    'grant.unmap_replace': { granter: number; gref: number; mapper: number; handle: number; hostGfn: number; newGfn: number; newMfn: number; status: number };
    'grant.copy': {
      caller: number;
      srcDom: number;
      srcGref: number;
      srcGfn: number;
      dstDom: number;
      dstGref: number;
      dstGfn: number;
      len: number;
      status: number;
    };
    /** An access through a mapping that is gone, or to a gfn with no frame: refused. */
    'mem.fault': { dom: number; gfn: number; write: boolean; reason: string; granter: number; gref: number };
    /** A read that reached a frame the reader neither owns nor holds through the grant it used. */
    'mem.leak': { dom: number; gfn: number; mfn: number; owner: number; granter: number; gref: number; reason: string };
    'evtchn.alloc_unbound': { dom: number; port: number; remoteDom: number };
    'evtchn.bind': { dom: number; port: number; remoteDom: number; remotePort: number };
    'evtchn.send': { dom: number; port: number; remoteDom: number; remotePort: number; delivered: boolean };
    'evtchn.close': { dom: number; port: number; remoteDom: number; remotePort: number };
  }
}

for (const [kind, doc] of [
  ['domain.create', 'a domain was created (paused)'],
  ['domain.pause', 'a domain was paused'],
  ['domain.unpause', 'a domain was unpaused'],
  ['domain.destroy', 'a domain was destroyed'],
  ['domain.released', 'a dying domain released its last frame'],
  ['mem.populate', 'a frame was given to a gfn'],
  ['mem.decrease', 'a gfn gave its frame back (ballooned out)'],
  ['grant.access', 'a grant entry was written by its granter'],
  ['grant.end', 'a granter ended (or failed to end) foreign access'],
  ['grant.map', 'GNTTABOP_map_grant_ref'],
  ['grant.unmap', 'GNTTABOP_unmap_grant_ref'],
  ['grant.unmap_replace', 'GNTTABOP_unmap_and_replace'],
  ['grant.copy', 'GNTTABOP_copy'],
  ['mem.fault', 'access through an unmapped page'],
  ['mem.leak', 'read of a frame that is no longer granted'],
  ['evtchn.alloc_unbound', 'EVTCHNOP_alloc_unbound'],
  ['evtchn.bind', 'EVTCHNOP_bind_interdomain'],
  ['evtchn.send', 'EVTCHNOP_send'],
  ['evtchn.close', 'EVTCHNOP_close'],
] as const) {
  declareEvent({ kind, version: 1, doc });
}
