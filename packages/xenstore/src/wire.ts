/**
 * The `xs_wire` transport: `struct xsd_sockmsg { u32 type, req_id, tx_id, len }` (little-endian,
 * the host order on x86) followed by `len` payload bytes. This file frames and parses bytes
 * only; what a request does is dispatch.ts's (`xsExecute`), shared with the ring transport.
 * `handleMessage` is the adapter: payload → decoded request → `xsExecute` → reply bytes.
 *
 * Wire strings (paths, tokens, permissions, numbers) are decoded and encoded as latin1, so every
 * byte round-trips exactly (a watch token comes back byte for byte); values are raw bytes.
 *
 * Request payloads are parsed strictly: a payload that is not exactly the NUL-terminated
 * strings its type takes is `EINVAL` — answered by the dispatcher after the checks cxenstored
 * makes first (type, privilege, transaction). Nothing here throws on input. Wire specifics:
 *  - a reply longer than XENSTORE_PAYLOAD_MAX is `E2BIG` (send_reply), which is what makes
 *    libxenstore fall back from DIRECTORY to DIRECTORY_PART;
 *  - a watch event longer than XENSTORE_PAYLOAD_MAX is dropped (send_event);
 *  - WATCH with a third (depth) string is `EINVAL`: no transport here offers WATCHDEPTH.
 */
import { xsExecute, introduceArgs, parseDomid, parseOffset, xsIsOp, type XsBadArgs, type XsBody, type XsHooks, type XsOp, type XsReply, type XsRequest } from './dispatch.js';
import type { XenStore } from './store.js';
import { parsePerm } from './store.js';
import {
  XENSTORE_PAYLOAD_MAX,
  XSD_SOCKMSG_BYTES,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RM,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  type WatchEvent,
  type XsConnection,
  type XsError,
  type XsPerm,
} from './types.js';

export { childListGeneration, directoryPart, parseDomid } from './dispatch.js';

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
  return splitStrings(payload);
}

/** WRITE: `"path\0value"`; the value is the rest, any bytes, no terminator. */
export function parseWrite(payload: Buffer): { path: string; value: Buffer } | null {
  const nul = payload.indexOf(0);
  if (nul < 0) return null;
  return { path: payload.toString('latin1', 0, nul), value: Buffer.from(payload.subarray(nul + 1)) };
}

/** One `w0`/`r1`/`b2`/`n3` entry (mode letter, decimal domid ≤ 65535), or null. */
export const parsePermString: (s: string) => XsPerm | null = parsePerm;

/**
 * An `xsd_sockmsg` as the dispatcher takes it. A payload that does not parse becomes an
 * `XsBadArgs` (EINVAL), answered only after the type, privilege and transaction checks.
 */
export function decodeWireRequest(msg: XsMessage): XsRequest {
  return { tx: msg.txId, op: decodeArgs(msg.type, msg.payload) };
}

function decodeArgs(type: number, payload: Buffer): XsOp | XsBadArgs {
  const bad: XsBadArgs = { type, bad: 'EINVAL' };
  if (!xsIsOp(type)) return bad; // the dispatcher answers these without looking at arguments
  const one = (): string | null => takeStrings(payload, 1)?.[0] ?? null;
  const domArg = (t: typeof XS_GET_DOMAIN_PATH | typeof XS_IS_DOMAIN_INTRODUCED | typeof XS_RELEASE): XsOp | XsBadArgs => {
    const s = one();
    const dom = s === null ? null : parseDomid(s);
    return dom === null ? bad : { type: t, dom };
  };
  switch (type) {
    case XS_READ:
    case XS_DIRECTORY:
    case XS_GET_PERMS:
    case XS_MKDIR:
    case XS_RM: {
      const path = one();
      return path === null ? bad : { type, path };
    }
    case XS_DIRECTORY_PART: {
      const args = takeStrings(payload, 2);
      const offset = args ? parseOffset(args[1]!) : null;
      return offset === null ? bad : { type, path: args![0]!, offset };
    }
    case XS_WRITE: {
      const w = parseWrite(payload);
      return w ? { type, path: w.path, value: w.value } : bad;
    }
    case XS_SET_PERMS: {
      const args = allStrings(payload);
      if (!args || args.length < 2) return bad;
      const perms: XsPerm[] = [];
      for (const s of args.slice(1)) {
        const p = parsePerm(s);
        if (!p) return bad;
        perms.push(p);
      }
      return { type, path: args[0]!, perms };
    }
    case XS_WATCH:
    case XS_UNWATCH: {
      const args = takeStrings(payload, 2);
      return args ? { type, path: args[0]!, token: args[1]! } : bad;
    }
    case XS_TRANSACTION_START:
    case XS_RESET_WATCHES:
      return { type };
    case XS_TRANSACTION_END: {
      const arg = one();
      return arg === 'T' || arg === 'F' ? { type, commit: arg === 'T' } : bad;
    }
    case XS_GET_DOMAIN_PATH:
    case XS_IS_DOMAIN_INTRODUCED:
    case XS_RELEASE:
      return domArg(type);
    case XS_INTRODUCE: {
      // "domid\0gfn\0port\0".
      const args = takeStrings(payload, 3);
      return args ? introduceArgs(args[0]!, args[1]!, args[2]!) : bad;
    }
    default:
      return bad;
  }
}

/** A successful reply's xs_wire payload. */
export function wireBody(body: XsBody): Buffer {
  switch (body.kind) {
    case 'ack':
      return OK_PAYLOAD;
    case 'bytes':
      return body.bytes;
    case 'names':
      return joinStrings(body.names);
    case 'perms':
      return joinStrings(body.perms.map((p) => `${p.mode}${p.dom}`));
    case 'tx':
      return Buffer.from(`${body.tx}\0`, 'latin1');
    case 'path':
      return Buffer.from(`${body.path}\0`, 'latin1');
    case 'bool':
      return Buffer.from(body.value ? 'T\0' : 'F\0', 'latin1');
  }
}

/** The reply to `req`: its type echoed with the payload, or XS_ERROR. */
export const encodeWireReply = (req: XsHeader, reply: XsReply): Buffer => (reply.ok ? encodeReply(req, wireBody(reply.body)) : encodeError(req, reply.error));

const OK_PAYLOAD = Buffer.from('OK\0', 'latin1');

// ─────────────────────────────────── the adapter ───────────────────────────────────

/**
 * Handle one request for `conn` and return the encoded reply (exactly one per request). Never
 * throws: see dispatch.ts for the checks and their order. `hooks` lets xenstored close a
 * released domain's rings (and see store bugs).
 *
 * Watch events the store delivers while this runs (the one a WATCH fires at once, those a
 * write fires on this very connection) should reach the client after this reply: the socket
 * server queues them during the call and writes them after.
 */
export function handleMessage(store: XenStore, conn: XsConnection, msg: XsMessage, hooks?: XsHooks): Buffer {
  return encodeWireReply(msg, xsExecute(store, conn, decodeWireRequest(msg), hooks));
}
