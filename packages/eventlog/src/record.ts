/**
 * The binary event record: the same bytes in a writer's ring slot, in the sink's merge buffer
 * and in the log file, so that nothing between the emitting thread and the disk re-encodes it.
 *
 *   0  u16 record length (28 .. 65535)
 *   2  u16 kind id (run-wide, from the hub's kind table; 0xffff = kind definition)
 *   4  u8  payload version
 *   5  u8  payload encoding: 0 = the kind's declared fields, 1 = msgpack map
 *   6  u16 dom
 *   8  u16 thread (writer id)
 *   10 u16 0
 *   12 f64 seq
 *   20 f64 tsNs
 *   28 payload
 *
 * A kind definition record carries `{id, kind, version, fields}` (msgpack) so that every log
 * segment can be read on its own; its seq is -1.
 */
import { Packr, Unpackr } from 'msgpackr';
import { assert } from '@pvsim/abi';
import { eventSpec, type EventRecord, type FieldType } from './schema.js';

export const REC_LEN = 0;
export const REC_KIND = 2;
export const REC_VERSION = 4;
export const REC_ENC = 5;
export const REC_DOM = 6;
export const REC_THREAD = 8;
export const REC_SEQ = 12;
export const REC_TS = 20;
export const REC_HEADER_BYTES = 28;
export const REC_BYTES_MAX = 0xffff;
export const ENC_FIELDS = 0;
export const ENC_MSGPACK = 1;
export const KIND_DEF_ID = 0xffff;
export const KIND_ID_MAX = 0xfffe;

export interface KindDef {
  id: number;
  kind: string;
  version: number;
  fields: [string, FieldType][] | null;
}

const FIXED: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, i32: 4, f64: 8, bool: 1, str: 2 };

/** Encodes payloads of one kind: fields when they fit, msgpack otherwise. */
export class KindCodec {
  readonly fixedBytes: number;
  private readonly names: string[];
  private readonly types: FieldType[];
  private readonly hasStr: boolean;
  private readonly packr = new Packr({ useRecords: false });

  /**
   * For kinds whose fields are all fixed-size: a compiled check (`fits`) and a compiled writer of
   * the whole record (`write`), so the hot path has no loop, switch or allocation. Built only
   * from this thread's own declarations (field types are from a closed set; names are embedded
   * as JSON string literals), never from a log file.
   */
  readonly fits: ((p: Record<string, unknown>) => boolean) | null = null;
  readonly write: ((dv: DataView, o: number, p: Record<string, unknown>, seq: number, ts: number, dom: number, thread: number) => number) | null = null;

  constructor(readonly def: KindDef, compile = false) {
    const f = def.fields ?? [];
    this.names = f.map(([n]) => n);
    this.types = f.map(([, t]) => t);
    this.fixedBytes = this.types.reduce((n, t) => n + FIXED[t], 0);
    this.hasStr = this.types.includes('str');
    if (compile && def.fields !== null && !this.hasStr && REC_HEADER_BYTES + this.fixedBytes <= REC_BYTES_MAX) {
      const checks: string[] = [];
      const writes: string[] = [];
      let off = REC_HEADER_BYTES;
      this.names.forEach((name, i) => {
        const v = `v${i}`;
        const t = this.types[i]!;
        checks.push(`const ${v} = p[${JSON.stringify(name)}];`);
        const cond: Record<FieldType, string> = {
          u8: `typeof ${v} === 'number' && (${v} & 0xff) === ${v}`,
          u16: `typeof ${v} === 'number' && (${v} & 0xffff) === ${v}`,
          u32: `typeof ${v} === 'number' && ${v} >>> 0 === ${v}`,
          i32: `typeof ${v} === 'number' && (${v} | 0) === ${v}`,
          f64: `typeof ${v} === 'number'`,
          bool: `typeof ${v} === 'boolean'`,
          str: 'false',
        };
        checks.push(`if (!(${cond[t]})) return false;`);
        const w: Record<FieldType, string> = {
          u8: `dv.setUint8(o + ${off}, ${v});`,
          u16: `dv.setUint16(o + ${off}, ${v}, true);`,
          u32: `dv.setUint32(o + ${off}, ${v}, true);`,
          i32: `dv.setInt32(o + ${off}, ${v}, true);`,
          f64: `dv.setFloat64(o + ${off}, ${v}, true);`,
          bool: `dv.setUint8(o + ${off}, ${v} ? 1 : 0);`,
          str: '',
        };
        writes.push(`const ${v} = p[${JSON.stringify(name)}];`, w[t]);
        off += FIXED[t];
      });
      const n = this.names.length;
      // eslint-disable-next-line @typescript-eslint/no-implied-eval
      this.fits = new Function('p', `${checks.join('\n')}\nlet n = 0; for (const k in p) n++;\nreturn n === ${n};`) as (p: Record<string, unknown>) => boolean;
      const len = off;
      // eslint-disable-next-line @typescript-eslint/no-implied-eval
      this.write = new Function(
        'dv', 'o', 'p', 'seq', 'ts', 'dom', 'thread',
        [
          `dv.setUint16(o, ${len}, true);`,
          `dv.setUint16(o + ${REC_KIND}, ${def.id}, true);`,
          `dv.setUint8(o + ${REC_VERSION}, ${def.version});`,
          `dv.setUint8(o + ${REC_ENC}, ${ENC_FIELDS});`,
          `dv.setUint16(o + ${REC_DOM}, dom, true);`,
          `dv.setUint16(o + ${REC_THREAD}, thread, true);`,
          `dv.setUint16(o + 10, 0, true);`,
          `dv.setFloat64(o + ${REC_SEQ}, seq, true);`,
          `dv.setFloat64(o + ${REC_TS}, ts, true);`,
          ...writes,
          `return ${len};`,
        ].join('\n'),
      ) as (dv: DataView, o: number, p: Record<string, unknown>, seq: number, ts: number, dom: number, thread: number) => number;
    }
  }

  /**
   * Bytes the payload needs with the fields encoding, or -1 if it does not fit the declared
   * fields exactly (then use msgpack).
   */
  fieldsBytes(p: Record<string, unknown>): number {
    if (this.def.fields === null) return -1;
    let n = this.fixedBytes;
    const names = this.names;
    const types = this.types;
    for (let i = 0; i < names.length; i++) {
      const v = p[names[i]!];
      switch (types[i]) {
        case 'u8': if (!(typeof v === 'number' && (v & 0xff) === v)) return -1; break;
        case 'u16': if (!(typeof v === 'number' && (v & 0xffff) === v)) return -1; break;
        case 'u32': if (!(typeof v === 'number' && v >>> 0 === v)) return -1; break;
        case 'i32': if (!(typeof v === 'number' && (v | 0) === v)) return -1; break;
        case 'f64': if (typeof v !== 'number') return -1; break;
        case 'bool': if (typeof v !== 'boolean') return -1; break;
        case 'str': {
          if (typeof v !== 'string') return -1;
          const b = Buffer.byteLength(v, 'utf8');
          if (b > 0xffff) return -1;
          n += b;
          break;
        }
      }
    }
    // Exactly the declared fields: an extra field would be lost in the binary form.
    if (!this.hasStr && names.length <= 8) {
      let k = 0;
      for (const key in p) if (Object.hasOwn(p, key)) k++;
      if (k !== names.length) return -1;
    } else if (Object.keys(p).length !== names.length) return -1;
    return n;
  }

  /** Write the fields at `off` (after `fieldsBytes` said they fit). */
  writeFields(dv: DataView, u8: Uint8Array, off: number, p: Record<string, unknown>): void {
    const names = this.names;
    const types = this.types;
    for (let i = 0; i < names.length; i++) {
      const v = p[names[i]!];
      switch (types[i]) {
        case 'u8': dv.setUint8(off, v as number); off += 1; break;
        case 'u16': dv.setUint16(off, v as number, true); off += 2; break;
        case 'u32': dv.setUint32(off, v as number, true); off += 4; break;
        case 'i32': dv.setInt32(off, v as number, true); off += 4; break;
        case 'f64': dv.setFloat64(off, v as number, true); off += 8; break;
        case 'bool': dv.setUint8(off, v ? 1 : 0); off += 1; break;
        case 'str': {
          const n = Buffer.byteLength(v as string, 'utf8');
          dv.setUint16(off, n, true);
          if (u8 instanceof Buffer) u8.write(v as string, off + 2, 'utf8');
          else u8.set(Buffer.from(v as string, 'utf8'), off + 2);
          off += 2 + n;
          break;
        }
      }
    }
  }

  /** msgpack bytes of the payload (a view valid until the next call). */
  packPayload(p: unknown): Uint8Array {
    return this.packr.pack(p);
  }

  /** Decode a fields payload; null if the bytes do not hold exactly the declared fields. */
  readFields(dv: DataView, off: number, end: number): Record<string, unknown> | null {
    const out: Record<string, unknown> = {};
    const names = this.names;
    const types = this.types;
    for (let i = 0; i < names.length; i++) {
      const t = types[i]!;
      if (off + FIXED[t] > end) return null;
      let v: unknown;
      switch (t) {
        case 'u8': v = dv.getUint8(off); off += 1; break;
        case 'u16': v = dv.getUint16(off, true); off += 2; break;
        case 'u32': v = dv.getUint32(off, true); off += 4; break;
        case 'i32': v = dv.getInt32(off, true); off += 4; break;
        case 'f64': v = dv.getFloat64(off, true); off += 8; break;
        case 'bool': v = dv.getUint8(off) !== 0; off += 1; break;
        case 'str': {
          const n = dv.getUint16(off, true);
          off += 2;
          if (off + n > end) return null;
          v = Buffer.from(dv.buffer, dv.byteOffset + off, n).toString('utf8');
          off += n;
          break;
        }
      }
      out[names[i]!] = v;
    }
    return off === end ? out : null;
  }
}

/** The definition of a locally declared kind, for a kind table. */
export function localKindDef(kind: string, id: number): KindDef {
  const spec = eventSpec(kind);
  return { id, kind, version: spec?.version ?? 1, fields: spec?.fields ? spec.fields.map(([n, t]) => [n, t]) : null };
}

const defPackr = new Packr({ useRecords: false });
const defUnpackr = new Unpackr({ useRecords: false });

/** A kind definition record. */
export function encodeKindDef(def: KindDef): Uint8Array {
  const body = defPackr.pack({ id: def.id, kind: def.kind, version: def.version, fields: def.fields });
  const len = REC_HEADER_BYTES + body.length;
  assert(len <= REC_BYTES_MAX, 'kind definition too large');
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  dv.setUint16(REC_LEN, len, true);
  dv.setUint16(REC_KIND, KIND_DEF_ID, true);
  out[REC_VERSION] = 1;
  out[REC_ENC] = ENC_MSGPACK;
  dv.setFloat64(REC_SEQ, -1, true);
  dv.setFloat64(REC_TS, 0, true);
  out.set(body, REC_HEADER_BYTES);
  return out;
}

/** Check a decoded kind definition; a reason string if malformed. */
export function kindDefFrom(v: unknown): KindDef | string {
  if (v === null || typeof v !== 'object') return 'kind definition is not a map';
  const o = v as Record<string, unknown>;
  if (!Number.isInteger(o.id) || (o.id as number) < 1 || (o.id as number) > KIND_ID_MAX) return 'kind definition: bad id';
  if (typeof o.kind !== 'string' || o.kind.length === 0) return 'kind definition: bad kind';
  if (!Number.isInteger(o.version) || (o.version as number) < 1) return 'kind definition: bad version';
  if (o.fields !== null) {
    if (!Array.isArray(o.fields)) return 'kind definition: bad fields';
    for (const f of o.fields) if (!Array.isArray(f) || typeof f[0] !== 'string' || !(f[1] in FIXED)) return 'kind definition: bad field';
  }
  return { id: o.id as number, kind: o.kind, version: o.version as number, fields: o.fields as KindDef['fields'] };
}

/**
 * Decodes records against a kind table built from definition records (readers, the sink's
 * live auditors). Malformed input gives a reason string, never an exception.
 */
export class RecordDecoder {
  private readonly kinds = new Map<number, { def: KindDef; codec: KindCodec }>();
  private readonly unpackr = new Unpackr({ useRecords: false });

  define(def: KindDef): void {
    this.kinds.set(def.id, { def, codec: new KindCodec(def) });
  }

  has(id: number): boolean {
    return this.kinds.has(id);
  }

  /** Decode the record at `buf[off, off+len)`; a kind definition is absorbed and gives null. */
  decode(buf: Uint8Array, dv: DataView, off: number, len: number): EventRecord | null | string {
    if (len < REC_HEADER_BYTES) return `record of ${len} bytes is shorter than its header`;
    const kindId = dv.getUint16(off + REC_KIND, true);
    const enc = buf[off + REC_ENC]!;
    const end = off + len;
    if (kindId === KIND_DEF_ID) {
      let v: unknown;
      try {
        v = this.unpackr.unpack(buf, { start: off + REC_HEADER_BYTES, end });
      } catch (e) {
        return `kind definition does not decode: ${(e as Error).message}`;
      }
      const def = kindDefFrom(v);
      if (typeof def === 'string') return def;
      this.define(def);
      return null;
    }
    const k = this.kinds.get(kindId);
    if (!k) return `record of undefined kind id ${kindId}`;
    const seq = dv.getFloat64(off + REC_SEQ, true);
    const tsNs = dv.getFloat64(off + REC_TS, true);
    if (!Number.isSafeInteger(seq) || seq < 0) return 'bad seq';
    if (!Number.isFinite(tsNs)) return 'bad timestamp';
    let payload: Record<string, unknown> | null;
    if (enc === ENC_FIELDS) {
      payload = k.codec.readFields(dv, off + REC_HEADER_BYTES, end);
      if (!payload) return `payload does not match the fields of '${k.def.kind}'`;
    } else if (enc === ENC_MSGPACK) {
      let v: unknown;
      try {
        v = this.unpackr.unpack(buf, { start: off + REC_HEADER_BYTES, end });
      } catch (e) {
        return `payload does not decode: ${(e as Error).message}`;
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) return 'payload is not a map';
      payload = v as Record<string, unknown>;
    } else return `unknown payload encoding ${enc}`;
    const v = buf[off + REC_VERSION]!;
    const spec = eventSpec(k.def.kind);
    if (spec?.upgrade && v < spec.version) payload = spec.upgrade({ ...payload }, v);
    return {
      seq,
      tsNs,
      dom: dv.getUint16(off + REC_DOM, true),
      thread: dv.getUint16(off + REC_THREAD, true),
      kind: k.def.kind,
      v,
      payload,
    } as EventRecord;
  }
}

/**
 * Encode a whole record into `out` at `off` (tests, tools, the sink's own events). Returns the
 * bytes written. `codec` comes from the kind table the record's id belongs to.
 */
export function encodeRecordInto(
  out: Uint8Array,
  dv: DataView,
  off: number,
  codec: KindCodec,
  e: { seq: number; tsNs: number; dom: number; thread: number; payload: unknown },
): number {
  const p = e.payload as Record<string, unknown>;
  const fb = codec.fieldsBytes(p);
  let len: number;
  if (fb >= 0) {
    len = REC_HEADER_BYTES + fb;
    assert(off + len <= out.length && len <= REC_BYTES_MAX, 'record buffer too small');
    codec.writeFields(dv, out, off + REC_HEADER_BYTES, p);
    out[off + REC_ENC] = ENC_FIELDS;
  } else {
    const body = codec.packPayload(p);
    len = REC_HEADER_BYTES + body.length;
    if (len > REC_BYTES_MAX) assert(false, `event '${codec.def.kind}' encodes to ${len} bytes, more than ${REC_BYTES_MAX}: an event must not carry unbounded data`);
    assert(off + len <= out.length, 'record buffer too small');
    out.set(body, off + REC_HEADER_BYTES);
    out[off + REC_ENC] = ENC_MSGPACK;
  }
  dv.setUint16(off + REC_LEN, len, true);
  dv.setUint16(off + REC_KIND, codec.def.id, true);
  out[off + REC_VERSION] = codec.def.version;
  dv.setUint16(off + REC_DOM, e.dom, true);
  dv.setUint16(off + REC_THREAD, e.thread, true);
  dv.setUint16(off + 10, 0, true);
  dv.setFloat64(off + REC_SEQ, e.seq, true);
  dv.setFloat64(off + REC_TS, e.tsNs, true);
  return len;
}
