/**
 * Branded identifiers. Each Xen id is a distinct type with a validating constructor, so a frame
 * number cannot be passed where a grant reference is wanted. The constructors are for trusted
 * values (configuration, our own allocations) and assert; peer-supplied numbers go through the
 * `is*` predicates and become an error status, never an exception.
 */
import { assert } from './result.js';

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Free-running ring index, u32 (`RING_IDX`). Arithmetic on it wraps modulo 2^32 (`>>> 0`). */
export type RingIdx = Brand<number, 'RingIdx'>;
/** Domain id, u16 (`domid_t`). */
export type DomId = Brand<number, 'DomId'>;
/** Event-channel port, u32 (`evtchn_port_t`). */
export type EvtchnPort = Brand<number, 'EvtchnPort'>;
/** Grant reference, u32 (`grant_ref_t`). */
export type GrantRef = Brand<number, 'GrantRef'>;
/** Grant handle returned by a map, u32 (`grant_handle_t`). */
export type GrantHandle = Brand<number, 'GrantHandle'>;
/** Machine frame number. */
export type Mfn = Brand<number, 'Mfn'>;
/** Guest frame number (a pfn in the guest's pseudo-physical space). */
export type Gfn = Brand<number, 'Gfn'>;

const U32_MAX = 0xffff_ffff;
const U16_MAX = 0xffff;

export const isU32 = (n: unknown): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= U32_MAX;
export const isU16 = (n: unknown): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= U16_MAX;

export function ringIdx(n: number): RingIdx {
  assert(isU32(n), `RingIdx must be a u32, got ${n}`);
  return n as RingIdx;
}
/** `a + b` modulo 2^32. */
export const idxAdd = (a: number, b: number): RingIdx => ((a + b) >>> 0) as RingIdx;
/** `a - b` modulo 2^32: the distance from b forward to a. */
export const idxSub = (a: number, b: number): number => (a - b) >>> 0;

export function domId(n: number): DomId {
  assert(isU16(n), `DomId must be a u16, got ${n}`);
  return n as DomId;
}
export function evtchnPort(n: number): EvtchnPort {
  assert(isU32(n), `EvtchnPort must be a u32, got ${n}`);
  return n as EvtchnPort;
}
export function grantRef(n: number): GrantRef {
  assert(isU32(n), `GrantRef must be a u32, got ${n}`);
  return n as GrantRef;
}
export function grantHandle(n: number): GrantHandle {
  assert(isU32(n), `GrantHandle must be a u32, got ${n}`);
  return n as GrantHandle;
}
export function mfn(n: number): Mfn {
  assert(Number.isSafeInteger(n) && n >= 0, `Mfn must be a non-negative integer, got ${n}`);
  return n as Mfn;
}
export function gfn(n: number): Gfn {
  assert(Number.isSafeInteger(n) && n >= 0, `Gfn must be a non-negative integer, got ${n}`);
  return n as Gfn;
}

/** `DOMID_SELF` (xen.h): "this domain" in hypercall arguments. */
export const DOMID_SELF = 0x7ff0 as DomId;
export const DOMID_FIRST_RESERVED = 0x7ff0;
