/**
 * The `xs_wire` codec: `struct xsd_sockmsg { u32 type, req_id, tx_id, len }` (little-endian, the
 * host order on x86) followed by `len` payload bytes; and the dispatch of one request to the
 * store, `handleMessage`, which is transport-independent (the Unix-socket server and the ring
 * transport both use it).
 *
 * Wire strings (paths, tokens, permissions, numbers) are decoded and encoded as latin1, so every
 * byte round-trips exactly (a watch token comes back byte for byte); values are raw bytes.
 *
 * Request payloads are parsed strictly: a request whose payload is not exactly the
 * NUL-terminated strings its type takes gets an `EINVAL` reply. Nothing here throws on input.
 *
 * Behaviour follows cxenstored (tools/xenstored/core.c, domain.c, watch.c):
 *  - privileged-only types (CONTROL, INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED, RESUME,
 *    SET_TARGET, SET_FEATURE, GET/SET_QUOTA) answer `EACCES` to a guest before anything else;
 *  - unknown types, and types a client must not send (WATCH_EVENT, ERROR), answer `ENOSYS`;
 *  - a reply longer than XENSTORE_PAYLOAD_MAX is replaced by `E2BIG` (send_reply), which is
 *    what makes libxenstore fall back from DIRECTORY to DIRECTORY_PART;
 *  - a watch event longer than XENSTORE_PAYLOAD_MAX is dropped (send_event);
 *  - WATCH with a third (depth) string is `EINVAL`: no transport here offers WATCHDEPTH.
 */
import type { XenStore } from './store.js';
import {
  XENSTORE_PAYLOAD_MAX,
  XSD_SOCKMSG_BYTES,
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
  type PermMode,
  type WatchEvent,
  type XsConnection,
  type XsError,
  type XsPerm,
  type XsResult,
} from './types.js';

/** One `xsd_sockmsg` and its payload. */
export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
}

/** The header fields a reply echoes. */
export type XsHeader = Pick<XsMessage, 'type' | 'reqId' | 'txId'>;

/** The biggest whole message on the wire. */
export const XS_MESSAGE_MAX = XSD_SOCKMSG_BYTES + XENSTORE_PAYLOAD_MAX;

// ─────────────────────────────────── framing ───────────────────────────────────

/** Encode one message. The caller keeps `payload` within XENSTORE_PAYLOAD_MAX. */
export function encodeMessage(type: number, reqId: number, txId: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  const out = Buffer.allocUnsafe(XSD_SOCKMSG_BYTES + body.length);
  out.writeUInt32LE(type >>> 0, 0);
  out.writeUInt32LE(reqId >>> 0, 4);
  out.writeUInt32LE(txId >>> 0, 8);
  out.writeUInt32LE(body.length, 12);
  body.copy(out, XSD_SOCKMSG_BYTES);
  return out;
}

/** Why a stream stopped decoding: only an over-long `len` is fatal (the connection is closed). */
export type XsDecodeFailure = { reason: 'oversize'; len: number; type: number; reqId: number };

/**
 * Incremental `xsd_sockmsg` decoder for a byte stream: messages may straddle chunks and several
 * may arrive in one. `push` queues a chunk (no copy); `next` returns one complete message at a
 * time, so a transport can stop between messages (backpressure) without losing input.
 *
 * A header with `len > XENSTORE_PAYLOAD_MAX` is a protocol violation: `next` returns null from
 * then on, `failure` says why, and everything queued is dropped — the caller closes the
 * connection, as xenstored does. Assembly of a message spread over chunks uses one fixed
 * buffer of XS_MESSAGE_MAX bytes; what is queued is only what the transport pushed.
 */
export class XsWireDecoder {
  private readonly chunks: Buffer[] = [];
  /** Bytes of `chunks[0]` already consumed. */
  private head = 0;
  private queued = 0;
  private readonly asm = Buffer.alloc(XS_MESSAGE_MAX);
  private have = 0;
  private fail: XsDecodeFailure | null = null;

  /** Queue bytes read from the transport. Ignored once the stream has failed. */
  push(chunk: Buffer): void {
    if (this.fail || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
  }

  /** Bytes pushed but not yet returned as messages (including a partial message). */
  get bufferedBytes(): number {
    return this.queued + this.have;
  }

  get failure(): XsDecodeFailure | null {
    return this.fail;
  }

  /** The next complete message, or null if more bytes are needed (or the stream failed). */
  next(): XsMessage | null {
    if (this.fail) return null;
    // Fast path: a whole message inside the first chunk, nothing assembled yet.
    if (this.have === 0 && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const avail = c.length - this.head;
      if (avail >= XSD_SOCKMSG_BYTES) {
        const len = c.readUInt32LE(this.head + 12);
        if (len > XENSTORE_PAYLOAD_MAX) return this.violation(c, this.head, len);
        if (avail >= XSD_SOCKMSG_BYTES + len) {
          const msg = parseHeader(c, this.head);
          msg.payload = Buffer.from(c.subarray(this.head + XSD_SOCKMSG_BYTES, this.head + XSD_SOCKMSG_BYTES + len));
          this.consume(XSD_SOCKMSG_BYTES + len);
          return msg;
        }
      }
    }
    // Slow path: assemble into the fixed buffer.
    while (true) {
      const want = this.have < XSD_SOCKMSG_BYTES ? XSD_SOCKMSG_BYTES : XSD_SOCKMSG_BYTES + this.asm.readUInt32LE(12);
      if (this.have === want) {
        const msg = parseHeader(this.asm, 0);
        msg.payload = Buffer.from(this.asm.subarray(XSD_SOCKMSG_BYTES, want));
        this.have = 0;
        return msg;
      }
      const c = this.chunks[0];
      if (!c) return null;
      const n = Math.min(want - this.have, c.length - this.head);
      c.copy(this.asm, this.have, this.head, this.head + n);
      this.have += n;
      this.consume(n);
      if (this.have === XSD_SOCKMSG_BYTES) {
        const len = this.asm.readUInt32LE(12);
        if (len > XENSTORE_PAYLOAD_MAX) return this.violation(this.asm, 0, len);
      }
    }
  }

  /** Every complete message now available. */
  drain(): XsMessage[] {
    const out: XsMessage[] = [];
    for (let m = this.next(); m; m = this.next()) out.push(m);
    return out;
  }

  private consume(n: number): void {
    this.head += n;
    this.queued -= n;
    const c = this.chunks[0];
    if (c && this.head === c.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }

  private violation(buf: Buffer, at: number, len: number): null {
    this.fail = { reason: 'oversize', len, type: buf.readUInt32LE(at), reqId: buf.readUInt32LE(at + 4) };
    this.chunks.length = 0;
    this.head = 0;
    this.queued = 0;
    this.have = 0;
    return null;
  }
}

function parseHeader(buf: Buffer, at: number): XsMessage {
  return {
    type: buf.readUInt32LE(at),
    reqId: buf.readUInt32LE(at + 4),
    txId: buf.readUInt32LE(at + 8),
    payload: EMPTY,
  };
}

const EMPTY = Buffer.alloc(0);
const NUL = Buffer.from([0]);

// ─────────────────────────────────── replies ───────────────────────────────────

/** A reply echoing the request's type, req_id and tx_id; E2BIG if the payload is too long. */
export function encodeReply(req: XsHeader, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  if (body.length > XENSTORE_PAYLOAD_MAX) return encodeError(req, 'E2BIG');
  return encodeMessage(req.type, req.reqId, req.txId, body);
}

/** `XS_ERROR` with `"E…\0"`, echoing req_id and tx_id. */
export function encodeError(req: Pick<XsHeader, 'reqId' | 'txId'>, error: XsError): Buffer {
  return encodeMessage(XS_ERROR, req.reqId, req.txId, `${error}\0`);
}

/** `"OK\0"`. */
export const encodeOk = (req: XsHeader): Buffer => encodeMessage(req.type, req.reqId, req.txId, 'OK\0');

/**
 * `XS_WATCH_EVENT` (req_id = tx_id = 0) with `"path\0token\0"`; null when longer than
 * XENSTORE_PAYLOAD_MAX (xenstored drops such events rather than send them).
 */
export function encodeWatchEvent(ev: WatchEvent): Buffer | null {
  const payload = Buffer.from(`${ev.path}\0${ev.token}\0`, 'latin1');
  if (payload.length > XENSTORE_PAYLOAD_MAX) return null;
  return encodeMessage(XS_WATCH_EVENT, 0, 0, payload);
}

/** Strings each NUL-terminated, as DIRECTORY, GET_PERMS and events carry them. */
export const joinStrings = (items: readonly string[]): Buffer =>
  Buffer.from(items.map((s) => `${s}\0`).join(''), 'latin1');

/** A reply's payload split back into its NUL-terminated strings (a client's view). */
export function splitStrings(payload: Buffer): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(payload.toString('latin1', start, i));
      start = i + 1;
    }
  }
  if (start < payload.length) out.push(payload.toString('latin1', start));
  return out;
}

/** `XS_ERROR` payload → its name (`"ENOENT\0"` → `ENOENT`). */
export const errorName = (payload: Buffer): string => payload.toString('latin1').replace(/\0.*$/s, '');

// ─────────────────────────────────── request payloads ───────────────────────────────────

/** Exactly `n` NUL-terminated strings filling the payload, or null. */
export function takeStrings(payload: Buffer, n: number): string[] | null {
  const all = allStrings(payload);
  return all && all.length === n ? all : null;
}

/** The payload as NUL-terminated strings (at least one), or null if the last is unterminated. */
function allStrings(payload: Buffer): string[] | null {
  if (payload.length === 0 || payload[payload.length - 1] !== 0) return null;
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(payload.toString('latin1', start, i));
      start = i + 1;
    }
  }
  return out;
}

/** WRITE: `"path\0value"`; the value is the rest, any bytes, no terminator. */
export function parseWrite(payload: Buffer): { path: string; value: Buffer } | null {
  const nul = payload.indexOf(0);
  if (nul < 0) return null;
  return { path: payload.toString('latin1', 0, nul), value: Buffer.from(payload.subarray(nul + 1)) };
}

/** One `w0`/`r1`/`b2`/`n3` entry (mode letter, decimal domid ≤ 65535), or null. */
export function parsePermString(s: string): XsPerm | null {
  const m = /^([nrwb])(\d{1,5})$/.exec(s);
  if (!m) return null;
  const dom = Number(m[2]);
  return dom <= 0xffff ? { mode: m[1] as PermMode, dom } : null;
}

/** `parse_domid`: decimal, ≤ 65535. */
export function parseDomid(s: string): number | null {
  if (!/^\d{1,5}$/.test(s)) return null;
  const d = Number(s);
  return d <= 0xffff ? d : null;
}

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

// ─────────────────────────────────── dispatch ───────────────────────────────────

/** Types only a privileged (dom0) connection may send. */
const PRIVILEGED = new Set([XS_CONTROL, XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED, XS_RESUME, XS_SET_TARGET, XS_SET_FEATURE, XS_GET_QUOTA, XS_SET_QUOTA]);

/**
 * Transactions each connection started over the wire, so RESET_WATCHES can abort them (the
 * store's resetWatches drops watches only). Ended ones leave on TRANSACTION_END; ones the store
 * ended itself (disconnect) go with the connection object.
 */
const openTransactions = new WeakMap<XsConnection, Set<number>>();

/** The store's view of who may do privileged things. */
const isPrivileged = (conn: XsConnection): boolean => conn.dom === 0;

/**
 * Handle one request for `conn` and return the encoded reply (exactly one per request). Never
 * throws: malformed payloads are EINVAL, unknown types ENOSYS, and an exception from the store
 * (a bug there) is answered EIO.
 *
 * Watch events the store delivers while this runs (the one a WATCH fires at once, those a
 * write fires on this very connection) should reach the client after this reply, as
 * cxenstored orders them: a transport queues events during the call and flushes them after.
 */
export function handleMessage(store: XenStore, conn: XsConnection, msg: XsMessage): Buffer {
  try {
    return dispatch(store, conn, msg);
  } catch {
    return encodeError(msg, 'EIO');
  }
}

function dispatch(store: XenStore, conn: XsConnection, msg: XsMessage): Buffer {
  const { type, payload } = msg;
  const tx = msg.txId === 0 ? undefined : msg.txId;
  const err = (e: XsError) => encodeError(msg, e);
  const done = (r: XsResult<unknown>) => (r.ok ? encodeOk(msg) : err(r.error));
  const one = (): string | null => takeStrings(payload, 1)?.[0] ?? null;

  if (PRIVILEGED.has(type) && !isPrivileged(conn)) return err('EACCES');

  switch (type) {
    case XS_READ: {
      const path = one();
      if (path === null) return err('EINVAL');
      const r = store.read(conn, path, tx);
      return r.ok ? encodeReply(msg, r.value) : err(r.error);
    }
    case XS_DIRECTORY: {
      const path = one();
      if (path === null) return err('EINVAL');
      const r = store.directory(conn, path, tx);
      return r.ok ? encodeReply(msg, joinStrings(r.value)) : err(r.error);
    }
    case XS_DIRECTORY_PART: {
      const args = takeStrings(payload, 2);
      if (!args) return err('EINVAL');
      const [path, offStr] = args as [string, string];
      if (!/^\d{1,10}$/.test(offStr)) return err('EINVAL');
      const r = store.directory(conn, path, tx);
      if (!r.ok) return err(r.error);
      const children = joinStrings(r.value);
      return encodeReply(msg, directoryPart(children, Number(offStr), childListGeneration(children)));
    }
    case XS_GET_PERMS: {
      const path = one();
      if (path === null) return err('EINVAL');
      const r = store.getPerms(conn, path, tx);
      return r.ok ? encodeReply(msg, joinStrings(r.value.map((p) => `${p.mode}${p.dom}`))) : err(r.error);
    }
    case XS_WRITE: {
      const w = parseWrite(payload);
      if (!w) return err('EINVAL');
      return done(store.write(conn, w.path, w.value, tx));
    }
    case XS_MKDIR: {
      const path = one();
      if (path === null) return err('EINVAL');
      return done(store.mkdir(conn, path, tx));
    }
    case XS_RM: {
      const path = one();
      if (path === null) return err('EINVAL');
      return done(store.rm(conn, path, tx));
    }
    case XS_SET_PERMS: {
      const args = allStrings(payload);
      if (!args || args.length < 2) return err('EINVAL');
      const perms: XsPerm[] = [];
      for (const s of args.slice(1)) {
        const p = parsePermString(s);
        if (!p) return err('EINVAL');
        perms.push(p);
      }
      return done(store.setPerms(conn, args[0]!, perms, tx));
    }
    case XS_WATCH:
    case XS_UNWATCH: {
      const args = takeStrings(payload, 2);
      if (!args) return err('EINVAL');
      const [path, token] = args as [string, string];
      return done(type === XS_WATCH ? store.watch(conn, path, token) : store.unwatch(conn, path, token));
    }
    case XS_RESET_WATCHES: {
      // docs/misc/xenstore.txt: "Reset all watches and transactions of the caller".
      store.resetWatches(conn);
      const open = openTransactions.get(conn);
      if (open) {
        for (const id of open) store.transactionEnd(conn, id, false);
        open.clear();
      }
      return encodeOk(msg);
    }
    case XS_TRANSACTION_START: {
      // cxenstored ignores the payload (clients send "\0"); nesting is EBUSY.
      if (tx !== undefined) return err('EBUSY');
      const r = store.transactionStart(conn);
      if (!r.ok) return err(r.error);
      let open = openTransactions.get(conn);
      if (!open) openTransactions.set(conn, (open = new Set()));
      open.add(r.value);
      return encodeReply(msg, `${r.value}\0`);
    }
    case XS_TRANSACTION_END: {
      const arg = one();
      if (arg !== 'T' && arg !== 'F') return err('EINVAL');
      if (tx === undefined) return err('ENOENT');
      const r = store.transactionEnd(conn, tx, arg === 'T');
      // Whatever the outcome (EAGAIN included), the transaction is over.
      openTransactions.get(conn)?.delete(tx);
      return done(r);
    }
    case XS_GET_DOMAIN_PATH: {
      const s = one();
      const dom = s === null ? null : parseDomid(s);
      if (dom === null) return err('EINVAL');
      return encodeReply(msg, `${store.getDomainPath(dom)}\0`);
    }
    case XS_IS_DOMAIN_INTRODUCED: {
      const s = one();
      const dom = s === null ? null : parseDomid(s);
      if (dom === null) return err('EINVAL');
      return encodeReply(msg, store.isDomainIntroduced(dom) ? 'T\0' : 'F\0');
    }
    case XS_INTRODUCE: {
      // "domid\0gfn\0port\0": the ring is the ring transport's business; here the domain exists.
      const args = takeStrings(payload, 3);
      if (!args) return err('EINVAL');
      const dom = parseDomid(args[0]!);
      if (dom === null || !/^\d{1,20}$/.test(args[1]!) || !/^\d{1,10}$/.test(args[2]!) || Number(args[2]) <= 0) return err('EINVAL');
      store.introduceDomain(dom);
      return encodeOk(msg);
    }
    case XS_RELEASE: {
      const s = one();
      const dom = s === null ? null : parseDomid(s);
      if (dom === null || dom === 0) return err('EINVAL');
      if (!store.isDomainIntroduced(dom)) return err('ENOENT');
      store.releaseDomain(dom);
      return encodeOk(msg);
    }
    case XS_CONTROL:
    case XS_RESUME:
    case XS_SET_TARGET:
    case XS_GET_FEATURE:
    case XS_SET_FEATURE:
    case XS_GET_QUOTA:
    case XS_SET_QUOTA:
    default:
      return err('ENOSYS');
  }
}
