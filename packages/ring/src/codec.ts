/**
 * Slot codecs: how one message sits in one fixed-size ring slot.
 *
 * The ring hands `encode` a private scratch buffer (never shared memory) and hands `decode` a
 * private copy of the whole slot, taken with one copy out of shared memory (XSA-155: no double
 * fetch; also msgpackr's fast path needs a non-shared source). `decode` must never throw for any
 * bytes: every peer-controlled input becomes a `Result` error.
 */
import { Packr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE, Unpackr } from 'msgpackr';
import { assert, err, ok, type Result } from '@pvsim/abi';
import { describeExtensionType, msgpackScanGrammar, scanMsgpack, type MsgpackScanFault } from './msgpack-scan.js';

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

/**
 * Most frozen structures a msgpack slot codec takes: their record ids are then the one-byte
 * 0x40..0x5f. Beyond 32, msgpackr writes two-byte ids that a reader given the same list misreads.
 */
export const MSGPACK_SLOT_STRUCTURES_MAX = 32;

export interface MsgpackSlotOptions {
  /** Bytes per slot; at most 65535 + header. */
  slotBytes: number;
  /**
   * Record shapes shared by both ends (msgpackr `structures`), e.g. `[['op','id','sector']]`; at
   * most `MSGPACK_SLOT_STRUCTURES_MAX`. They are frozen: an object of any other shape is written as
   * a plain map, so the two ends never need to agree on anything learned at run time.
   */
  structures?: readonly (readonly string[])[];
}

/** Encodes between two drops of the encoder's shape index (see `encode`). */
const TRANSITIONS_RESET_ENCODES = 4096;

/**
 * msgpack in a fixed slot, with frozen shared record structures.
 *
 * Plain values only. Before msgpackr sees a peer's slot, `scanMsgpack` walks its bytes: a slot is
 * refused unless it is exactly one value of msgpack's core types (nil, booleans, integers, floats,
 * strings, byte strings, arrays, maps) and records of the frozen structures. Every `ext` value is
 * refused wherever it sits (`msgpack extension type 0x78 (RegExp) in the slot`): msgpackr would
 * build a Date, Set, Error, RegExp, typed array, BigInt or `undefined` from one, and its table of
 * extensions is process-wide, so it cannot be switched off per decoder. What a slot decodes to is
 * then plain: objects, arrays, strings, numbers, booleans, null, byte arrays (`bin`, copied), and
 * bigints (msgpack's int 64 / uint 64, which our encoder writes only for a bigint).
 *
 * Records. The frozen structures are the only records on the wire: the encoder never defines one
 * inline (msgpackr's record extension, `d4 72 id keys` / `d5 72 id highByte keys`), and a slot that
 * defines one is refused (`record definition`; it is an `ext` value). msgpackr's decoder would
 * otherwise keep such a definition in its record table for the messages after it: a peer could
 * redefine a frozen id so that its later slots, and any canonical-looking bytes, read with other
 * field names. So a slot decodes as a pure function of its bytes and the frozen structures.
 *
 * Decoded objects come from the peer: a protocol validator must read own properties only. msgpackr
 * renames a `__proto__` key (of a map or a record) to `__proto_`, so no object gets a peer's
 * prototype.
 *
 * Our own messages: `encode` walks what msgpackr wrote the same way, before a byte reaches `dst`.
 * A message that packs to an `ext` value (a Date, `undefined`, ...) is a bug of the producer, not
 * a slot to hand the peer (it would refuse it): an assertion.
 */
export function msgpackSlotCodec<T>(opts: MsgpackSlotOptions): SlotCodec<T> {
  const { slotBytes } = opts;
  const payloadMax = slotBytes - MSGPACK_SLOT_HEADER_BYTES;
  if (!(payloadMax > 0 && payloadMax <= 0xffff)) {
    throw new RangeError(`msgpack slot of ${slotBytes} bytes: payload must be 1..65535 bytes`);
  }
  const structures = (opts.structures ?? []).map((s) => [...s]);
  if (structures.length > MSGPACK_SLOT_STRUCTURES_MAX) {
    throw new RangeError(`${structures.length} msgpack slot structures: at most ${MSGPACK_SLOT_STRUCTURES_MAX} (one-byte record ids)`);
  }
  // msgpackr works on these very arrays (the options are assigned to the instance).
  const packTable = structures.map((s) => [...s]);
  const unpackTable = structures.map((s) => [...s]);
  const packr = new Packr({
    useRecords: true,
    structures: packTable,
    maxSharedStructures: structures.length,
    // Learn nothing: no new shared structure, and no own (inline-defined) record either, so an
    // object of another shape is written as a plain map.
    shouldShareStructure: () => false,
    maxOwnStructures: 0,
  });
  const unpackr = new Unpackr({
    useRecords: true,
    structures: unpackTable,
    // A map (any shape outside the frozen structures) reads as a plain object, as a record does.
    mapsAsObjects: true,
    // Byte strings are copied out of the private scratch, which the ring reuses.
    copyBuffers: true,
  });
  // msgpackr stores a record definition it reads in this table and restores only entries it
  // loaded as shared through `getStructures`; ids it files under negative keys (the two-byte form)
  // are never cleared. `scanMsgpack` refuses every definition before msgpackr reads a slot; frozen,
  // the table would refuse one too (a second line: msgpackr is strict-mode code, so the store
  // throws a TypeError and the slot is refused, `unpackError`). The entries stay writable for the
  // readers msgpackr compiles onto them. (The constructor set `sharedLength`.)
  Object.freeze(unpackTable);
  // The grammar `scanMsgpack` walks slots with: msgpack's, and the frozen records' field counts.
  const grammar = msgpackScanGrammar(structures.map((s) => s.length));
  // msgpackr indexes shapes by their key sequence (`transitions`) and, with no own records, no
  // longer prunes that index: every new key sequence we encode would stay in it for good. Dropping
  // it now and then bounds it; msgpackr rebuilds it from the frozen structures on the next pack.
  const packShapes = packTable as unknown as { transitions?: unknown };
  let encodesSinceReset = 0;
  // Pack into msgpackr's own buffer, reused and rewound every time: no allocation per message
  // (the plain `pack` returns a fresh subarray and grows a new 8 KiB target every ~250 calls).
  const reuse = REUSE_BUFFER_MODE | RESET_BUFFER_MODE;
  // One options object for every decode (an object literal per call shows up in profiles).
  const range = { start: MSGPACK_SLOT_HEADER_BYTES, end: 0 };
  return {
    slotBytes,
    encode(msg, dst) {
      if (++encodesSinceReset === TRANSITIONS_RESET_ENCODES) {
        encodesSinceReset = 0;
        packShapes.transitions = null;
      }
      const target = packr.pack(msg, reuse) as Buffer & { start: number; end: number };
      const start = target.start;
      const end = target.end;
      const n = end - start;
      if (n > payloadMax) return -(n + MSGPACK_SLOT_HEADER_BYTES);
      const fault = scanMsgpack(target, start, end, grammar);
      if (fault !== null) assert(false, `msgpack slot encoder: ${describeFault(fault, start)} in our own message (a Date, undefined or other value that is not plain); the peer would refuse the slot`);
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
      const end = MSGPACK_SLOT_HEADER_BYTES + n;
      if (end > src.length) return err(`msgpack length ${n} exceeds the ${src.length} bytes of the slot copy`);
      const fault = scanMsgpack(src, MSGPACK_SLOT_HEADER_BYTES, end, grammar);
      if (fault !== null) return err(slotFault(fault));
      let value: unknown;
      try {
        range.end = end;
        value = unpackr.unpack(src, range);
      } catch (e) {
        return err(unpackError(e));
      }
      return ok(value as T);
    },
  };
}

/** A fault of `scanMsgpack`, offsets counted from `origin`. */
function describeFault(f: MsgpackScanFault, origin: number): string {
  switch (f.kind) {
    case 'extension':
      return `msgpack extension type ${describeExtensionType(f.type)} at byte ${f.at - origin}`;
    case 'never-used':
      return `msgpack byte 0xc1 (never used) at byte ${f.at - origin}`;
    case 'truncated':
      return 'a msgpack value that runs past its length';
    case 'trailing':
      return `${f.bytes} bytes after the msgpack value`;
  }
}

/** Why a peer's slot is refused before decoding. Offsets count from the slot's first byte. */
function slotFault(f: MsgpackScanFault): string {
  if (f.kind === 'extension' && f.type === 0x72) {
    return `msgpack record definition (extension type 0x72 at byte ${f.at}) in the slot: only the frozen structures may be used`;
  }
  if (f.kind === 'extension') return `${describeFault(f, 0)} in the slot: a peer's slot holds plain msgpack values only`;
  return `${describeFault(f, 0)} in the slot`;
}

/**
 * Why msgpackr refused a slot. A write to the frozen record table (a definition in the slot) is a
 * TypeError naming a read-only or non-extensible object; the message only tells it apart, the slot
 * is refused either way.
 */
function unpackError(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof TypeError && /read.only|not extensible/.test(message)) {
    return 'msgpack record definition in the slot: only the frozen structures may be used';
  }
  return `msgpack does not decode: ${message}`;
}
