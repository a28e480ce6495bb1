import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { describeExtensionType, msgpackScanGrammar, scanMsgpack } from './msgpack-scan.js';

const STRUCTURES = [['op', 'id', 'sector'], [], ['k']];
const grammar = msgpackScanGrammar(STRUCTURES.map((s) => s.length));
const scan = (b: Uint8Array, end = b.length) => scanMsgpack(b, 0, end, grammar);
/** msgpack with no records at all (0x40..0x7f are integers): every token is msgpack's own. */
const plainPackr = new Packr({ useRecords: false });
const noRecords = msgpackScanGrammar([]);
const scanPlain = (b: Uint8Array, end = b.length) => scanMsgpack(b, 0, end, noRecords);

describe('scanMsgpack: msgpack core types', () => {
  const big = 70_000;
  const corpus: [string, unknown][] = [
    ['positive fixint', 5],
    ['fixint 0x40..0x7f (no record with that id)', 0x50],
    ['negative fixint', -3],
    ['uint 8, 16, 32', [200, 60_000, 4_000_000_000]],
    ['int 8, 16, 32', [-100, -30_000, -2_000_000_000]],
    ['int 64, uint 64', [-(2n ** 62n), 2n ** 63n + 1n]],
    ['float 64', [0.5, 2 ** 60, -1e300]],
    ['nil, booleans', [null, true, false]],
    ['fixstr, str 8, str 16, str 32', ['abc', 'x'.repeat(40), 'y'.repeat(300), 'z'.repeat(big)]],
    ['bin 8, 16, 32', [new Uint8Array(3), new Uint8Array(300), new Uint8Array(big)]],
    ['fixarray, array 16, array 32', [[1, 2], new Array(20).fill(1), new Array(big).fill(0)]],
    ['fixmap, map 16, map 32', [new Map([['a', 1]]), new Map(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])), new Map(Array.from({ length: big }, (_, i) => [i, 0]))]],
    ['nested', { a: [{ b: { c: [new Uint8Array(1), 'd'] } }] }],
  ];

  it.each(corpus)('%s: exactly one value, cut short, or followed by more', (_, v) => {
    const b = plainPackr.pack(v);
    expect(scanPlain(b)).toBeNull();
    expect(scanPlain(b, b.length - 1)).toEqual({ kind: 'truncated' });
    expect(scanPlain(Buffer.concat([b, Buffer.of(0xc0)]))).toEqual({ kind: 'trailing', bytes: 1 });
  });

  it('float 32 and the 0x40..0x5f record ids of the frozen structures', () => {
    expect(scanPlain(new Packr({ useRecords: false, useFloat32: 1 }).pack(1.5))).toBeNull();
    // Record 0x40 has three fields, 0x41 none, 0x42 one; 0x43 is an integer (no structure 3).
    expect(scan(Uint8Array.of(0x93, 0x40, 1, 2, 3, 0x41, 0x42, 0xa1, 0x61))).toBeNull();
    expect(scan(Uint8Array.of(0x92, 0x43, 0x44))).toBeNull();
    expect(scan(Uint8Array.of(0x40, 1, 2))).toEqual({ kind: 'truncated' });
    expect(scan(Uint8Array.of(0x41, 1))).toEqual({ kind: 'trailing', bytes: 1 });
    // With no structures, 0x40 is the integer 64.
    expect(scanPlain(Uint8Array.of(0x40))).toBeNull();
    expect(() => msgpackScanGrammar(new Array(33).fill(1))).toThrow(RangeError);
  });

  it('refuses every ext token, whatever its type and length, and 0xc1', () => {
    const forms = (type: number): number[][] => [
      [0xd4, type, 0],
      [0xd5, type, 0, 0],
      [0xd6, type, 0, 0, 0, 0],
      [0xd7, type, ...new Array(8).fill(0)],
      [0xd8, type, ...new Array(16).fill(0)],
      [0xc7, 1, type, 0],
      [0xc8, 0, 1, type, 0],
      [0xc9, 0, 0, 0, 1, type, 0],
    ];
    for (let type = 0; type < 256; type++) {
      for (const ext of forms(type)) {
        expect(scan(Uint8Array.from(ext))).toEqual({ kind: 'extension', type, at: 0 });
        expect(scan(Uint8Array.of(0x92, 0xc0, ...ext))).toEqual({ kind: 'extension', type, at: 2 });
      }
    }
    // A header cut short: the token alone is enough to refuse.
    expect(scan(Uint8Array.of(0xc9, 0, 0))).toEqual({ kind: 'extension', type: -1, at: 0 });
    expect(scan(Uint8Array.of(0x91, 0xc1))).toEqual({ kind: 'never-used', at: 1 });
  });

  it('skips ext-looking bytes inside strings, byte strings and numbers', () => {
    const ext = [0xd4, 0x78, 0x00, 0xc7, 0x01, 0x74, 0xc1];
    expect(scan(Uint8Array.of(0x93, 0xa0 | ext.length, ...ext, 0xc4, ext.length, ...ext, 0xcb, 0xd4, 0x78, 0, 0xc7, 1, 0x74, 0xc1, 0xd4))).toBeNull();
  });

  it('names the types msgpackr gives a meaning to', () => {
    expect(describeExtensionType(0x78)).toBe('0x78 (RegExp)');
    expect(describeExtensionType(0xff)).toBe('0xff (timestamp, a Date)');
    expect(describeExtensionType(5)).toBe('0x05');
    expect(describeExtensionType(-1)).toBe('(header cut short)');
  });
});

/**
 * The walk must see the value boundaries msgpackr sees, or an ext value could hide where the walk
 * thinks a string's bytes are. Here both read mutated honest encodings: where the walk accepts,
 * msgpackr reads exactly one value over the same bytes; where the walk finds the value cut short
 * or followed by more, msgpackr refuses too.
 */
describe('scanMsgpack against msgpackr (fixed seed)', () => {
  const packr = new Packr({ useRecords: true, structures: STRUCTURES.map((s) => [...s]), maxSharedStructures: STRUCTURES.length, maxOwnStructures: 0, shouldShareStructure: () => false });
  const unpackr = () => new Unpackr({ useRecords: true, structures: STRUCTURES.map((s) => [...s]), mapsAsObjects: true });
  const leaf = fc.oneof(
    fc.integer(),
    fc.double(),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    fc.string({ maxLength: 40 }),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 40 }),
  );
  const { tree } = fc.letrec((tie) => ({
    tree: fc.oneof({ depthSize: 'small' }, leaf, tie('arr'), tie('obj'), tie('rec')),
    arr: fc.array(tie('tree'), { maxLength: 5 }),
    obj: fc.dictionary(fc.string({ maxLength: 4 }), tie('tree'), { maxKeys: 5 }),
    rec: fc.record({ op: tie('tree'), id: tie('tree'), sector: tie('tree') }),
  }));
  const mutated = fc
    .tuple(tree, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.integer({ min: -3, max: 3 }))
    .map(([v, edits, grow]) => {
      const b = Buffer.from(packr.pack(v));
      for (const [at, byte] of edits) if (b.length > 0) b[at % b.length] = byte;
      return { bytes: b, end: Math.max(1, Math.min(b.length, b.length + grow)) };
    });

  it('agree on where a value ends', () => {
    fc.assert(
      fc.property(mutated, ({ bytes, end }) => {
        const f = scanMsgpack(bytes, 0, end, grammar);
        let read: { ok: true } | { ok: false; message: string };
        try {
          unpackr().unpack(bytes, { start: 0, end });
          read = { ok: true };
        } catch (e) {
          read = { ok: false, message: e instanceof Error ? e.message : String(e) };
        }
        if (f === null) {
          // msgpackr may still refuse a key that is not a string or number (its own rule).
          if (!read.ok) expect(read.message).toMatch(/Invalid property type|Maximum call stack/);
        } else if (f.kind === 'truncated' || f.kind === 'trailing') {
          expect(read.ok).toBe(false);
        }
      }),
      { seed: 0x5eed, numRuns: 4000 },
    );
  });
});
