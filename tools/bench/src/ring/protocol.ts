/**
 * The message used by the ring benchmark, in its two slot encodings, plus the setup both worker
 * threads share. A blkif-like request `{ op, id, sector, handle, nr }` (~16 bytes of msgpack with
 * shared structures) and a response `{ id, op, status }`.
 */
import { msgpackSlotCodec, rawSlotCodec, type SlotCodec } from '@pvsim/ring';

export interface BlkReq {
  op: number;
  id: number;
  sector: number;
  handle: number;
  nr: number;
}
export interface BlkRsp {
  id: number;
  op: number;
  status: number;
}

export const SLOT_BYTES = 64;
export const BLKIF_OP_READ = 1;
/** Shared msgpack record structures: request shape, response shape (both ends use the same list). */
export const STRUCTURES: readonly (readonly string[])[] = [
  ['op', 'id', 'sector', 'handle', 'nr'],
  ['id', 'op', 'status'],
];

export const makeReq = (seq: number): BlkReq => ({ op: BLKIF_OP_READ, id: seq, sector: seq * 8, handle: 0, nr: 1 });
export const makeRsp = (id: number, op: number): BlkRsp => ({ id, op, status: 0 });

/** Doorbell ports and waiter indices: the back waits on port 0, the front on port 1. */
export const BACK_PORT = 0;
export const FRONT_PORT = 1;
export const BACK_WAITER = 1;
export const FRONT_WAITER = 0;

/**
 * How one end turns messages into slot values. `Req`/`Rsp` are what the ring's codec carries:
 * objects for msgpack, bytes for raw. Each side fully reads what it receives (every field), so
 * the raw variant does the same work as a decoder, minus msgpack.
 */
export interface RingProtocol<Req, Rsp> {
  reqCodec: SlotCodec<Req>;
  rspCodec: SlotCodec<Rsp>;
  /** Producer: the request for sequence number `seq`. */
  encodeReq(seq: number): Req;
  /** Consumer: read a request; returns its id (other fields go to `sink`). */
  readReq(req: Req): number;
  encodeRsp(id: number): Rsp;
  /** Producer: read a response; returns its id. */
  readRsp(rsp: Rsp): number;
  /** Accumulates the other fields so reads are not dead code. */
  sink: number;
}

export function msgpackProtocol(): RingProtocol<BlkReq, BlkRsp> {
  const codecOpts = { slotBytes: SLOT_BYTES, structures: STRUCTURES };
  return {
    reqCodec: msgpackSlotCodec<BlkReq>(codecOpts),
    rspCodec: msgpackSlotCodec<BlkRsp>(codecOpts),
    encodeReq: makeReq,
    readReq(req) {
      this.sink += req.op + req.sector + req.handle + req.nr;
      return req.id;
    },
    encodeRsp: (id) => makeRsp(id, BLKIF_OP_READ),
    readRsp(rsp) {
      this.sink += rsp.op + rsp.status;
      return rsp.id;
    },
    sink: 0,
  };
}

/*
 * Raw little-endian structs, laid out like blkif's (without the segment array):
 *   request  (24 bytes): u8 operation, u8 nr_segments, u16 handle, u32 pad, u64 id, u64 sector
 *   response (16 bytes): u64 id, u8 operation, u8 pad, i16 status, u32 pad
 */
export const RAW_REQ_BYTES = 24;
export const RAW_RSP_BYTES = 16;
const TWO32 = 2 ** 32;

function writeU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v >>> 0, true);
  dv.setUint32(off + 4, Math.floor(v / TWO32), true);
}
const readU64 = (dv: DataView, off: number): number => dv.getUint32(off, true) + dv.getUint32(off + 4, true) * TWO32;

export function rawProtocol(): RingProtocol<Uint8Array, Uint8Array> {
  // Private encode buffers, reused: pushRequest/pushResponse copy them into the slot at once.
  const reqBuf = new Uint8Array(RAW_REQ_BYTES);
  const reqDv = new DataView(reqBuf.buffer);
  const rspBuf = new Uint8Array(RAW_RSP_BYTES);
  const rspDv = new DataView(rspBuf.buffer);
  // The ring decodes into its private scratch (the same buffer every time): cache a view on it.
  let inBuf: ArrayBufferLike | null = null;
  let inDv: DataView = new DataView(new ArrayBuffer(8));
  const view = (b: Uint8Array): DataView => {
    if (b.buffer !== inBuf || inDv.byteOffset !== b.byteOffset) {
      inBuf = b.buffer;
      inDv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    }
    return inDv;
  };
  return {
    reqCodec: rawSlotCodec(SLOT_BYTES),
    rspCodec: rawSlotCodec(SLOT_BYTES),
    encodeReq(seq) {
      reqDv.setUint8(0, BLKIF_OP_READ);
      reqDv.setUint8(1, 1);
      reqDv.setUint16(2, 0, true);
      writeU64(reqDv, 8, seq);
      writeU64(reqDv, 16, seq * 8);
      return reqBuf;
    },
    readReq(req) {
      const dv = view(req);
      this.sink += dv.getUint8(0) + dv.getUint8(1) + dv.getUint16(2, true) + readU64(dv, 16);
      return readU64(dv, 8);
    },
    encodeRsp(id) {
      writeU64(rspDv, 0, id);
      rspDv.setUint8(8, BLKIF_OP_READ);
      rspDv.setInt16(10, 0, true);
      return rspBuf;
    },
    readRsp(rsp) {
      const dv = view(rsp);
      this.sink += dv.getUint8(8) + dv.getInt16(10, true);
      return readU64(dv, 0);
    },
    sink: 0,
  };
}
