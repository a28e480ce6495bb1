/**
 * The one XenStore dispatcher: a decoded request, carried out against the store for one
 * connection. Both transports are thin adapters around it — wire.ts (`xs_wire` bytes: the Unix
 * socket of dom0 tools) and daemon.ts (msgpack messages on shared rings, and the in-process
 * client) — so permission checks, errno, transaction handling, quotas and watch firing cannot
 * drift between them: the adapters decode, call `xsExecute`, and encode what it returns.
 *
 * The checks run in cxenstored's order (tools/xenstored/core.c, process_message):
 *  1. the type: unknown, or one a client must not send (WATCH_EVENT, ERROR) → ENOSYS;
 *  2. privilege: a privileged-only type (CONTROL, INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED,
 *     RESUME, SET_TARGET, SET_FEATURE, GET/SET_QUOTA) from a guest → EACCES;
 *  3. the transaction: unless the type ignores tx_id (WATCH, UNWATCH), a non-zero tx_id must
 *     name one of this connection's open transactions → ENOENT (transaction_lookup);
 *  4. a type we know but do not serve (CONTROL, RESUME, SET_TARGET, GET/SET_FEATURE,
 *     GET/SET_QUOTA) → ENOSYS, where cxenstored's handler would start;
 *  5. the arguments: what the transport could not decode (EINVAL, or E2BIG on the ring) — so a
 *     decoder never answers on its own, it records the error in the request (`XsBadArgs`);
 *  6. the operation; a reply longer than XENSTORE_PAYLOAD_MAX is E2BIG (send_reply), measured
 *     as xs_wire would carry it, whichever transport carries it.
 *
 * Watch events reach the connection through its `deliver` while this runs (the store fires
 * them); when the peer sees them relative to the reply is the transport's business.
 *
 * Never throws: a throw from the store is a bug there, answered EIO and handed to `onBug`.
 */
import { DOMID_SELF } from '@pvsim/abi';
import type { XenStore } from './store.js';
import {
  XENSTORE_PAYLOAD_MAX,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_GET_QUOTA,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RESUME,
  XS_RM,
  XS_SET_FEATURE,
  XS_SET_PERMS,
  XS_SET_QUOTA,
  XS_SET_TARGET,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  type XsConnection,
  type XsError,
  type XsPerm,
  type XsResult,
} from './types.js';

// ─────────────────────────── requests ───────────────────────────

/** A request's arguments once a transport decoded them, by type. */
export type XsOp =
  | { readonly type: typeof XS_READ | typeof XS_DIRECTORY | typeof XS_GET_PERMS | typeof XS_MKDIR | typeof XS_RM; readonly path: string }
  | { readonly type: typeof XS_DIRECTORY_PART; readonly path: string; readonly offset: number }
  | { readonly type: typeof XS_WRITE; readonly path: string; readonly value: Buffer }
  | { readonly type: typeof XS_SET_PERMS; readonly path: string; readonly perms: readonly XsPerm[] }
  | { readonly type: typeof XS_WATCH | typeof XS_UNWATCH; readonly path: string; readonly token: string }
  | { readonly type: typeof XS_TRANSACTION_START | typeof XS_RESET_WATCHES }
  | { readonly type: typeof XS_TRANSACTION_END; readonly commit: boolean }
  | { readonly type: typeof XS_GET_DOMAIN_PATH | typeof XS_IS_DOMAIN_INTRODUCED | typeof XS_RELEASE; readonly dom: number }
  /** The gfn is validated and ignored, as cxenstored does: a transport owns the rings. */
  | { readonly type: typeof XS_INTRODUCE; readonly dom: number; readonly gfn: string; readonly port: number };

/**
 * Arguments the transport could not decode (or a type it has no decoding for): the error is
 * answered only if the checks cxenstored makes before parsing (type, privilege, transaction) pass.
 */
export interface XsBadArgs {
  readonly type: number;
  readonly bad: XsError;
}

/** One request as the dispatcher takes it, whichever transport it came by. */
export interface XsRequest {
  /** tx_id: 0 = none. */
  readonly tx: number;
  readonly op: XsOp | XsBadArgs;
}

// ─────────────────────────── replies ───────────────────────────

/** A successful reply's content; each transport encodes it its own way. */
export type XsBody =
  /** "OK". */
  | { readonly kind: 'ack' }
  /** READ's value; DIRECTORY_PART's whole xs_wire payload. */
  | { readonly kind: 'bytes'; readonly bytes: Buffer }
  /** DIRECTORY. */
  | { readonly kind: 'names'; readonly names: readonly string[] }
  | { readonly kind: 'perms'; readonly perms: readonly XsPerm[] }
  /** TRANSACTION_START. */
  | { readonly kind: 'tx'; readonly tx: number }
  /** GET_DOMAIN_PATH. */
  | { readonly kind: 'path'; readonly path: string }
  /** IS_DOMAIN_INTRODUCED. */
  | { readonly kind: 'bool'; readonly value: boolean };

export type XsReply = { readonly ok: true; readonly body: XsBody } | { readonly ok: false; readonly error: XsError };

/** What the owner of the store adds to it (all optional). */
export interface XsHooks {
  /** XS_INTRODUCE of a domain not introduced yet (default `store.introduceDomain`). */
  introduceDomain?(dom: number): void;
  /** XS_RELEASE (default `store.releaseDomain`); xenstored also closes the domain's rings. */
  releaseDomain?(dom: number): void;
  /** A throw from the store (a bug there), answered EIO. */
  onBug?(e: unknown): void;
}

// ─────────────────────────── types ───────────────────────────

/** cxenstored's XS_FLAG_PRIV: privileged (dom0) connections only. */
const PRIV = 1;
/** cxenstored's XS_FLAG_NOTID: tx_id is ignored. */
const NOTID = 2;

/**
 * cxenstored's `wire_funcs`, as we serve it: `op` types are carried out here; `unimplemented`
 * ones pass the privilege and transaction checks and answer ENOSYS; `none` have no handler
 * (a client must not send them): ENOSYS first.
 */
const XS_TYPES = new Map<number, { readonly name: string; readonly flags: number; readonly impl: 'op' | 'unimplemented' | 'none' }>([
  [XS_CONTROL, { name: 'XS_CONTROL', flags: PRIV, impl: 'unimplemented' }],
  [XS_DIRECTORY, { name: 'XS_DIRECTORY', flags: 0, impl: 'op' }],
  [XS_READ, { name: 'XS_READ', flags: 0, impl: 'op' }],
  [XS_GET_PERMS, { name: 'XS_GET_PERMS', flags: 0, impl: 'op' }],
  [XS_WATCH, { name: 'XS_WATCH', flags: NOTID, impl: 'op' }],
  [XS_UNWATCH, { name: 'XS_UNWATCH', flags: NOTID, impl: 'op' }],
  [XS_TRANSACTION_START, { name: 'XS_TRANSACTION_START', flags: 0, impl: 'op' }],
  [XS_TRANSACTION_END, { name: 'XS_TRANSACTION_END', flags: 0, impl: 'op' }],
  [XS_INTRODUCE, { name: 'XS_INTRODUCE', flags: PRIV, impl: 'op' }],
  [XS_RELEASE, { name: 'XS_RELEASE', flags: PRIV, impl: 'op' }],
  [XS_GET_DOMAIN_PATH, { name: 'XS_GET_DOMAIN_PATH', flags: 0, impl: 'op' }],
  [XS_WRITE, { name: 'XS_WRITE', flags: 0, impl: 'op' }],
  [XS_MKDIR, { name: 'XS_MKDIR', flags: 0, impl: 'op' }],
  [XS_RM, { name: 'XS_RM', flags: 0, impl: 'op' }],
  [XS_SET_PERMS, { name: 'XS_SET_PERMS', flags: 0, impl: 'op' }],
  [XS_WATCH_EVENT, { name: 'XS_WATCH_EVENT', flags: 0, impl: 'none' }],
  [XS_ERROR, { name: 'XS_ERROR', flags: 0, impl: 'none' }],
  [XS_IS_DOMAIN_INTRODUCED, { name: 'XS_IS_DOMAIN_INTRODUCED', flags: PRIV, impl: 'op' }],
  [XS_RESUME, { name: 'XS_RESUME', flags: PRIV, impl: 'unimplemented' }],
  [XS_SET_TARGET, { name: 'XS_SET_TARGET', flags: PRIV, impl: 'unimplemented' }],
  [XS_RESET_WATCHES, { name: 'XS_RESET_WATCHES', flags: 0, impl: 'op' }],
  [XS_DIRECTORY_PART, { name: 'XS_DIRECTORY_PART', flags: 0, impl: 'op' }],
  [XS_GET_FEATURE, { name: 'XS_GET_FEATURE', flags: 0, impl: 'unimplemented' }],
  [XS_SET_FEATURE, { name: 'XS_SET_FEATURE', flags: PRIV, impl: 'unimplemented' }],
  [XS_GET_QUOTA, { name: 'XS_GET_QUOTA', flags: PRIV, impl: 'unimplemented' }],
  [XS_SET_QUOTA, { name: 'XS_SET_QUOTA', flags: PRIV, impl: 'unimplemented' }],
]);

/** `XS_READ` for 2; `XS_<n>` for a type xs_wire.h does not name. */
export const xsOpName = (type: number): string => XS_TYPES.get(type)?.name ?? `XS_${type}`;

/** Whether a transport should decode arguments for `type` (one the dispatcher carries out). */
export const xsIsOp = (type: number): boolean => XS_TYPES.get(type)?.impl === 'op';

/** The store's view of who may do privileged things. */
const isPrivileged = (conn: XsConnection): boolean => conn.dom === 0;

// ─────────────────────────── dispatch ───────────────────────────

const ACK: XsReply = { ok: true, body: { kind: 'ack' } };
const no = (error: XsError): XsReply => ({ ok: false, error });

/** Carry out one request for `conn`: exactly one reply, never a throw. */
export function xsExecute(store: XenStore, conn: XsConnection, req: XsRequest, hooks: XsHooks = {}): XsReply {
  const { op } = req;
  const info = XS_TYPES.get(op.type);
  if (!info || info.impl === 'none') return no('ENOSYS');
  if (info.flags & PRIV && !isPrivileged(conn)) return no('EACCES');
  const tx = info.flags & NOTID ? 0 : req.tx;
  try {
    if (tx !== 0 && !store.hasTransaction(conn, tx)) return no('ENOENT');
    if (info.impl === 'unimplemented') return no('ENOSYS');
    if ('bad' in op) return no(op.bad);
    const r = run(store, conn, tx, op, hooks);
    return r.ok && xsBodyBytes(r.body) > XENSTORE_PAYLOAD_MAX ? no('E2BIG') : r;
  } catch (e) {
    hooks.onBug?.(e);
    return no('EIO');
  }
}

function run(store: XenStore, conn: XsConnection, tx: number, op: XsOp, hooks: XsHooks): XsReply {
  const ack = (r: XsResult<unknown>): XsReply => (r.ok ? ACK : no(r.error));
  const body = <T>(r: XsResult<T>, make: (v: T) => XsBody): XsReply => (r.ok ? { ok: true, body: make(r.value) } : no(r.error));
  switch (op.type) {
    case XS_READ:
      // A copy: the store's buffer may be the node itself.
      return body(store.read(conn, op.path, tx), (v) => ({ kind: 'bytes', bytes: Buffer.from(v) }));
    case XS_DIRECTORY:
      return body(store.directory(conn, op.path, tx), (names) => ({ kind: 'names', names }));
    case XS_DIRECTORY_PART:
      return body(store.directory(conn, op.path, tx), (names) => {
        const children = nulJoined(names);
        return { kind: 'bytes', bytes: directoryPart(children, op.offset, childListGeneration(children)) };
      });
    case XS_GET_PERMS:
      return body(store.getPerms(conn, op.path, tx), (perms) => ({ kind: 'perms', perms }));
    case XS_WRITE:
      return ack(store.write(conn, op.path, op.value, tx));
    case XS_MKDIR:
      return ack(store.mkdir(conn, op.path, tx));
    case XS_RM:
      return ack(store.rm(conn, op.path, tx));
    case XS_SET_PERMS:
      return ack(store.setPerms(conn, op.path, [...op.perms], tx));
    case XS_WATCH:
      return ack(store.watch(conn, op.path, op.token));
    case XS_UNWATCH:
      return ack(store.unwatch(conn, op.path, op.token));
    case XS_RESET_WATCHES:
      // docs/misc/xenstore.txt: "Reset all watches and transactions of the caller".
      store.resetWatches(conn);
      return ACK;
    case XS_TRANSACTION_START:
      // No nesting (do_transaction_start); the payload is ignored (clients send "\0").
      if (tx !== 0) return no('EBUSY');
      return body(store.transactionStart(conn), (id) => ({ kind: 'tx', tx: id }));
    case XS_TRANSACTION_END:
      // Whatever the outcome (EAGAIN included), the transaction is over.
      if (tx === 0) return no('ENOENT');
      return ack(store.transactionEnd(conn, tx, op.commit));
    case XS_GET_DOMAIN_PATH:
      return { ok: true, body: { kind: 'path', path: store.getDomainPath(op.dom) } };
    case XS_IS_DOMAIN_INTRODUCED:
      return { ok: true, body: { kind: 'bool', value: op.dom === DOMID_SELF || store.isDomainIntroduced(op.dom) } };
    case XS_INTRODUCE:
      // introduce_domain: @introduceDomain fires for a new domain only; introducing a known one
      // again rebinds its event channel, which is the transport's business.
      if (!store.isDomainIntroduced(op.dom)) (hooks.introduceDomain ? hooks.introduceDomain(op.dom) : store.introduceDomain(op.dom));
      return ACK;
    case XS_RELEASE:
      // onearg_domain: never dom0; find_connected_domain: ENOENT for a domain not introduced.
      if (op.dom === 0) return no('EINVAL');
      if (!store.isDomainIntroduced(op.dom)) return no('ENOENT');
      if (hooks.releaseDomain) hooks.releaseDomain(op.dom);
      else store.releaseDomain(op.dom);
      return ACK;
  }
}

/** The payload length of a reply as xs_wire carries it (send_reply's E2BIG limit). */
export function xsBodyBytes(body: XsBody): number {
  switch (body.kind) {
    case 'ack':
      return 3; // "OK\0"
    case 'bytes':
      return body.bytes.length;
    case 'names':
      return body.names.reduce((n, s) => n + Buffer.byteLength(s, 'latin1') + 1, 0);
    case 'perms':
      return body.perms.reduce((n, p) => n + `${p.mode}${p.dom}`.length + 1, 0);
    case 'tx':
      return `${body.tx}`.length + 1;
    case 'path':
      return Buffer.byteLength(body.path, 'latin1') + 1;
    case 'bool':
      return 2; // "T\0" / "F\0"
  }
}

// ─────────────────────────── argument helpers (both decoders) ───────────────────────────

/** cxenstored's parse_domid: decimal digits, at most 65535; null when not. */
export function parseDomid(s: string): number | null {
  if (!/^\d+$/.test(s)) return null;
  const d = Number(s);
  return d <= 0xffff ? d : null;
}

/** XS_INTRODUCE's three strings (domid, gfn, port), validated; the port must not be 0. */
export function introduceArgs(domStr: string, gfnStr: string, portStr: string): XsOp | XsBadArgs {
  const dom = parseDomid(domStr);
  if (dom === null || !/^\d{1,20}$/.test(gfnStr) || !/^\d{1,10}$/.test(portStr)) return { type: XS_INTRODUCE, bad: 'EINVAL' };
  const port = Number(portStr);
  if (port <= 0 || port > 0xffff_ffff) return { type: XS_INTRODUCE, bad: 'EINVAL' };
  return { type: XS_INTRODUCE, dom, gfn: gfnStr, port };
}

/** DIRECTORY_PART's offset: decimal, at most 10 digits. */
export const parseOffset = (s: string): number | null => (/^\d{1,10}$/.test(s) ? Number(s) : null);

const NUL = Buffer.from([0]);

const nulJoined = (names: readonly string[]): Buffer => Buffer.from(names.map((s) => `${s}\0`).join(''), 'latin1');

/**
 * A stand-in for a node's generation count in DIRECTORY_PART replies: the store does not expose
 * one, and the only thing a client does with it is compare it between parts to notice the list
 * changed underneath. A 64-bit FNV-1a of the child list does that.
 */
export function childListGeneration(children: Buffer): string {
  let h = 0xcbf29ce484222325n;
  for (const b of children) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(10);
}

/**
 * DIRECTORY_PART's reply payload for the child list `children` (each name NUL-terminated) from
 * byte `off`, exactly as cxenstored's send_directory_part builds it: `"<gen>\0"`, then as many
 * whole names as fit, then one more NUL when the list ends in this part.
 */
export function directoryPart(children: Buffer, off: number, gen: string): Buffer {
  const genBuf = Buffer.from(`${gen}\0`, 'latin1');
  if (off >= children.length) return Buffer.concat([genBuf, NUL]);
  const maxlen = XENSTORE_PAYLOAD_MAX - genBuf.length - 1;
  let len = 0;
  while (true) {
    const end = children.indexOf(0, off + len);
    const childLen = (end < 0 ? children.length : end) - (off + len);
    if (len + childLen >= maxlen) break;
    len += childLen + 1;
    if (off + len >= children.length) break;
  }
  const parts = [genBuf, children.subarray(off, off + len)];
  if (off + len >= children.length) parts.push(NUL);
  return Buffer.concat(parts);
}
