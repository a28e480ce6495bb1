/**
 * Slot codecs: how one message sits in one fixed-size ring slot.
 *
 * The ring hands `encode` a private scratch buffer (never shared memory) and hands `decode` a
 * private copy of the whole slot, taken with one copy out of shared memory (XSA-155: no double
 * fetch; also msgpackr's fast path needs a non-shared source). `decode` must never throw for any
 * bytes: every peer-controlled input becomes a `Result` error.
 */
import { Packr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE, Unpackr } from 'msgpackr';
import { err, ok, type Result } from '@pvsim/abi';

export interface SlotCodec<T> {
  /** Bytes per slot, fixed per protocol. */
  readonly slotBytes: number;
  /**
   * Encode `msg` into `dst` (`slotBytes` long: the shared slot itself, or a private scratch when
   * the slot straddles pages). Returns the bytes written, or `-needed` (a negative count) when
   * the message does not fit: the producer's error, and then nothing at all is written.
   */
  encode(msg: T, dst: Uint8Array): number;
  /** Decode a private copy of a slot. Never throws. */
  decode(src: Uint8Array): Result<T, string>;
}

/** Raw bytes: the codec-free ceiling. A message is a byte array of at most `slotBytes`. */
export function rawSlotCodec(slotBytes: number): SlotCodec<Uint8Array> {
  return {
    slotBytes,
    encode(msg, dst) {
      if (msg.length > slotBytes) return -msg.length;
      dst.set(msg);
      return msg.length;
    },
    // The copy is already private; hand it out as is. Callers that keep it beyond the next
    // take must copy it (the ring reuses its scratch).
    decode: (src) => ok(src),
  };
}

/** Length prefix of a msgpack slot: u16 little-endian, then the msgpack bytes. */
export const MSGPACK_SLOT_HEADER_BYTES = 2;

export interface MsgpackSlotOptions {
  /** Bytes per slot; at most 65535 + header. */
  slotBytes: number;
  /**
   * Record shapes shared by both ends (msgpackr `structures`), e.g. `[['op','id','sector']]`.
   * They are frozen: a shape not in the list is written as an inline record, so the two ends
   * never need to agree on anything learned at run time.
   */
  structures?: readonly (readonly string[])[];
}

/**
 * msgpack in a fixed slot, with frozen shared record structures.
 *
 * Decoded objects come from the peer: a protocol validator must read own properties only
 * (msgpackr maps a `__proto__` key to the object's prototype); the codec rejects a top-level
 * value whose prototype is not a plain object's, array's or primitive's.
 */
export function msgpackSlotCodec<T>(opts: MsgpackSlotOptions): SlotCodec<T> {
  const { slotBytes } = opts;
  const payloadMax = slotBytes - MSGPACK_SLOT_HEADER_BYTES;
  if (!(payloadMax > 0 && payloadMax <= 0xffff)) {
    throw new RangeError(`msgpack slot of ${slotBytes} bytes: payload must be 1..65535 bytes`);
  }
  const structures = (opts.structures ?? []).map((s) => [...s]);
  const frozen = {
    useRecords: true,
    maxSharedStructures: structures.length,
    shouldShareStructure: () => false,
    // Byte strings are copied out of the private scratch, which the ring reuses.
    copyBuffers: true,
  };
  const packr = new Packr({ ...frozen, structures: structures.map((s) => [...s]) });
  const unpackr = new Unpackr({ ...frozen, structures: structures.map((s) => [...s]) });
  // Pack into msgpackr's own buffer, reused and rewound every time: no allocation per message
  // (the plain `pack` returns a fresh subarray and grows a new 8 KiB target every ~250 calls).
  const reuse = REUSE_BUFFER_MODE | RESET_BUFFER_MODE;
  // One options object for every decode (an object literal per call shows up in profiles).
  const range = { start: MSGPACK_SLOT_HEADER_BYTES, end: 0 };
  return {
    slotBytes,
    encode(msg, dst) {
      const target = packr.pack(msg, reuse) as Buffer & { start: number; end: number };
      const start = target.start;
      const n = target.end - start;
      if (n > payloadMax) return -(n + MSGPACK_SLOT_HEADER_BYTES);
      dst[0] = n & 0xff;
      dst[1] = n >>> 8;
      if (n <= 48) {
        // A short loop beats `set` for the typical ~20-byte request.
        for (let i = 0; i < n; i++) dst[MSGPACK_SLOT_HEADER_BYTES + i] = target[start + i]!;
      } else {
        dst.set(target.subarray(start, start + n), MSGPACK_SLOT_HEADER_BYTES);
      }
      return n + MSGPACK_SLOT_HEADER_BYTES;
    },
    decode(src) {
      const n = src[0]! | (src[1]! << 8);
      if (n === 0) return err('empty msgpack slot (length 0)');
      if (n > payloadMax) return err(`msgpack length ${n} exceeds the slot payload of ${payloadMax} bytes`);
      let value: unknown;
      try {
        range.end = MSGPACK_SLOT_HEADER_BYTES + n;
        value = unpackr.unpack(src, range);
      } catch (e) {
        return err(`msgpack does not decode: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (value !== null && typeof value === 'object') {
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== Array.prototype && proto !== null && !(value instanceof Uint8Array)) {
          return err('msgpack value carries a foreign prototype (__proto__ key)');
        }
      }
      return ok(value as T);
    },
  };
}
