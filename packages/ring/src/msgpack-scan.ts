/**
 * A walk over the bytes of one msgpack value that builds nothing: does the value use msgpack's
 * core types only?
 *
 * msgpack's `ext` family (fixext 1/2/4/8/16 `d4..d8`, ext 8/16/32 `c7..c9`) lets a writer name a
 * type, and msgpackr turns the types it knows into objects: a timestamp into a Date, and its own
 * extensions into a Set, an Error, a RegExp (compiling the writer's pattern), a typed array, a
 * BigInt, `undefined`, bundled strings, structured-clone references, record definitions. Its
 * table of extensions is one per process (`addExtension` changes it for every Unpackr), so it is
 * no place to switch them off. This walk follows the msgpack grammar alone, plus the one thing
 * msgpackr adds to it that a slot codec uses: a record id `0x40 | i` of frozen structure `i`,
 * followed by that structure's field values. A slot that passes holds nothing but nil, booleans,
 * integers, floats, strings, byte strings, arrays, maps and frozen records, so msgpackr decodes it
 * to plain values: objects, arrays, strings, numbers, bigints (int 64 / uint 64), booleans, null
 * and byte arrays.
 *
 * Cost: one step per token, and strings and byte strings are skipped by their length; no
 * allocation unless the bytes are refused. Every step consumes at least one byte, so the walk
 * ends within `end - start` steps whatever the counts in the headers say.
 */

/** Why the bytes are not exactly one msgpack value of core types. */
export type MsgpackScanFault =
  /** An `ext` value: `type` is its type byte (0..255; -1 when the header is cut short), `at` the token's offset. */
  | { readonly kind: 'extension'; readonly type: number; readonly at: number }
  /** `0xc1`, which msgpack never uses (msgpackr decodes it to a marker object). */
  | { readonly kind: 'never-used'; readonly at: number }
  /** The value runs past `end`. */
  | { readonly kind: 'truncated' }
  /** The value ends `bytes` before `end`. */
  | { readonly kind: 'trailing'; readonly bytes: number };

const TRUNCATED: MsgpackScanFault = Object.freeze({ kind: 'truncated' });

/**
 * Bytes of each token whose size does not depend on what follows it, the token included:
 * fixint, fixmap and fixarray headers, fixstr with its bytes, nil, booleans, fixed-width numbers.
 * 0 for the rest: sizes in a header (`HEADER_BYTES`), `0xc1`, and the ext family.
 */
const TOKEN_BYTES = ((): Uint8Array => {
  const t = new Uint8Array(256);
  t.fill(1, 0x00, 0xa0); // positive fixint (or record id), fixmap, fixarray
  for (let i = 0xa0; i < 0xc0; i++) t[i] = 1 + (i - 0xa0); // fixstr
  t.fill(1, 0xe0, 0x100); // negative fixint
  for (const [token, bytes] of [
    [0xc0, 1], [0xc2, 1], [0xc3, 1], // nil, false, true
    [0xcc, 2], [0xcd, 3], [0xce, 5], [0xcf, 9], // uint 8..64
    [0xd0, 2], [0xd1, 3], [0xd2, 5], [0xd3, 9], // int 8..64
    [0xca, 5], [0xcb, 9], // float 32, 64
  ] as const) {
    t[token] = bytes;
  }
  return t;
})();

/**
 * Header bytes (token and big-endian count) of the tokens sized by a count: str, bin, array and
 * map 8/16/32. 0 for every other token.
 */
const HEADER_BYTES = ((): Uint8Array => {
  const t = new Uint8Array(256);
  for (const token of [0xc4, 0xd9]) t[token] = 2; // bin 8, str 8
  for (const token of [0xc5, 0xda, 0xdc, 0xde]) t[token] = 3; // bin 16, str 16, array 16, map 16
  for (const token of [0xc6, 0xdb, 0xdd, 0xdf]) t[token] = 5; // bin 32, str 32, array 32, map 32
  return t;
})();

/**
 * The grammar a slot codec scans with: for each token, how many values follow it as its
 * children (fixmap: keys and values, fixarray: elements, record `0x40 | i`: the fields of frozen
 * structure `i`). Built once per codec from its structures' field counts (at most 32 structures,
 * one-byte ids `0x40..0x5f`); an id `0x40..0x7f` beyond them is the positive integer it is in
 * msgpack, as msgpackr reads it.
 */
export function msgpackScanGrammar(recordFields: readonly number[]): Int32Array {
  if (recordFields.length > 32) throw new RangeError(`${recordFields.length} record structures: at most 32 (one-byte record ids)`);
  const children = new Int32Array(256);
  for (let i = 0; i < 16; i++) {
    children[0x80 + i] = 2 * i;
    children[0x90 + i] = i;
  }
  recordFields.forEach((n, i) => (children[0x40 + i] = n));
  return children;
}

/**
 * Walk the msgpack value in `src[start, end)` (`end <= src.length`) with a grammar from
 * `msgpackScanGrammar`. Returns null when the bytes are exactly one value of core types, else the
 * first fault.
 */
export function scanMsgpack(src: Uint8Array, start: number, end: number, grammar: Int32Array): MsgpackScanFault | null {
  let pos = start;
  // Values still to be read: the top-level one, plus every element, key and field announced.
  let pending = 1;
  while (pending !== 0) {
    // Each value owed takes at least one byte; this also catches a `pos` already past `end`.
    if (pending > end - pos) return TRUNCATED;
    const t = src[pos]!;
    pending += grammar[t]! - 1;
    // The common tokens first: small integers and record ids, then the other fixed sizes.
    if (t < 0x80) {
      pos++;
      continue;
    }
    const bytes = TOKEN_BYTES[t]!;
    if (bytes !== 0) {
      pos += bytes;
      continue;
    }
    const header = HEADER_BYTES[t]!;
    if (header === 0) {
      if (t === 0xc1) return { kind: 'never-used', at: pos };
      // 0xc7..0xc9 and 0xd4..0xd8: the ext family, the only tokens left
      return { kind: 'extension', type: extensionType(src, pos, end, t), at: pos };
    }
    if (end - pos < header) return TRUNCATED;
    const n = header === 2 ? src[pos + 1]! : header === 3 ? u16(src, pos + 1) : u32(src, pos + 1);
    pos += header;
    if (t >= 0xdc) pending += t >= 0xde ? 2 * n : n; // array, map 16/32
    else pos += n; // str, bin: skip the bytes
  }
  if (pos === end) return null;
  return pos > end ? TRUNCATED : { kind: 'trailing', bytes: end - pos };
}

const u16 = (b: Uint8Array, i: number): number => (b[i]! << 8) | b[i + 1]!;
const u32 = (b: Uint8Array, i: number): number => b[i]! * 0x1000000 + ((b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!);

/** The type byte of the ext value whose token `t` is at `at`: after the token (fixext) or its length (ext 8/16/32). */
function extensionType(src: Uint8Array, at: number, end: number, t: number): number {
  const i = at + (t === 0xc7 ? 2 : t === 0xc8 ? 3 : t === 0xc9 ? 5 : 1);
  return i < end ? src[i]! : -1;
}

/**
 * What msgpackr makes of an ext type, for messages only (the walk refuses every type alike).
 * Types 0x00..0x7f are application types; -1 (0xff) is msgpack's timestamp.
 */
const EXTENSION_NAMES: Readonly<Record<number, string>> = Object.freeze({
  0x00: 'undefined',
  0x42: 'BigInt',
  0x62: 'bundled strings',
  0x65: 'Error',
  0x69: 'structured-clone id',
  0x70: 'structured-clone reference',
  0x72: 'record definition',
  0x73: 'Set',
  0x74: 'typed array',
  0x78: 'RegExp',
  0xff: 'timestamp, a Date',
});

/** `0x78 (RegExp)`, `0x05`, or `(header cut short)`: an ext type as a message names it. */
export function describeExtensionType(type: number): string {
  if (type < 0) return '(header cut short)';
  const hex = `0x${type.toString(16).padStart(2, '0')}`;
  const name = EXTENSION_NAMES[type];
  return name === undefined ? hex : `${hex} (${name})`;
}
