/**
 * The hypervisor's events: one kind per transition. `granter`/`gref` name a grant the way
 * `pvsim log timeline --gref N --dom D` looks for it; `dom` in a payload is always a domid.
 */
import { declareEvent, type FieldType } from '@pvsim/eventlog';

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

type F = readonly (readonly [string, FieldType])[];
// Hot-path kinds declare binary fields (see @pvsim/eventlog's record.ts); a payload that does not
// fit them (a hostile guest's out-of-range number) is written as msgpack instead, never lost.
const GRANT_MAP: F = [['granter', 'i32'], ['gref', 'i32'], ['mapper', 'u16'], ['handle', 'i32'], ['hostGfn', 'i32'], ['mfn', 'i32'], ['ro', 'bool'], ['status', 'i32']];
const GRANT_UNMAP: F = [['granter', 'i32'], ['gref', 'i32'], ['mapper', 'u16'], ['handle', 'i32'], ['hostGfn', 'i32'], ['status', 'i32']];
const GRANT_COPY: F = [['caller', 'u16'], ['srcDom', 'i32'], ['srcGref', 'i32'], ['srcGfn', 'i32'], ['dstDom', 'i32'], ['dstGref', 'i32'], ['dstGfn', 'i32'], ['len', 'i32'], ['status', 'i32']];
const EVTCHN_SEND: F = [['dom', 'u16'], ['port', 'u32'], ['remoteDom', 'i32'], ['remotePort', 'i32'], ['delivered', 'bool']];
const GRANT_ACCESS: F = [['granter', 'u16'], ['gref', 'u32'], ['grantee', 'u16'], ['gfn', 'i32'], ['ro', 'bool']];
const GRANT_END: F = [['granter', 'u16'], ['gref', 'u32'], ['ok', 'bool'], ['flags', 'u16']];

for (const [kind, doc, fields] of [
  ['domain.create', 'a domain was created (paused)', undefined],
  ['domain.pause', 'a domain was paused', undefined],
  ['domain.unpause', 'a domain was unpaused', undefined],
  ['domain.destroy', 'a domain was destroyed', undefined],
  ['domain.released', 'a dying domain released its last frame', undefined],
  ['mem.populate', 'a frame was given to a gfn', undefined],
  ['mem.decrease', 'a gfn gave its frame back (ballooned out)', undefined],
  ['grant.access', 'a grant entry was written by its granter', GRANT_ACCESS],
  ['grant.end', 'a granter ended (or failed to end) foreign access', GRANT_END],
  ['grant.map', 'GNTTABOP_map_grant_ref', GRANT_MAP],
  ['grant.unmap', 'GNTTABOP_unmap_grant_ref', GRANT_UNMAP],
  ['grant.unmap_replace', 'GNTTABOP_unmap_and_replace', undefined],
  ['grant.copy', 'GNTTABOP_copy', GRANT_COPY],
  ['mem.fault', 'access through an unmapped page', undefined],
  ['mem.leak', 'read of a frame that is no longer granted', undefined],
  ['evtchn.alloc_unbound', 'EVTCHNOP_alloc_unbound', undefined],
  ['evtchn.bind', 'EVTCHNOP_bind_interdomain', undefined],
  ['evtchn.send', 'EVTCHNOP_send', EVTCHN_SEND],
  ['evtchn.close', 'EVTCHNOP_close', undefined],
] as const) {
  declareEvent({ kind, version: 1, doc, ...(fields ? { fields } : {}) });
}
