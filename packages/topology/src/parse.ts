/**
 * Reading and validating topology files. The YAML is parsed to a document tree (`yaml`, with
 * source ranges) and walked against the schema, so every error names its line, column and field.
 * Never throws: any input yields either a topology or a non-empty error list.
 */
import { dirname, resolve } from 'node:path';
import { RING_ORDER_MAX } from '@pvsim/abi';
import { parseVdevName, vdevNameToNumber } from '@pvsim/blkif';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Scalar } from 'yaml';
import { describe, formatSize, KiB, MiB, parseSize } from './size.js';
import { didYouMean } from './suggest.js';
import {
  UNMAP_POLICIES,
  type DiskSpec,
  type DiskTarget,
  type DomainSpec,
  type Topology,
  type TopologyError,
  type TopologyResult,
  type UnmapPolicy,
} from './types.js';

export const DEFAULT_RUN_MEMORY = 256 * MiB;
export const DEFAULT_DOM0_MEMORY = 64 * MiB;
export const MIN_DOMAIN_MEMORY = 1 * MiB;
export const MEMORY_GRANULE = 4 * KiB;
export const SECTOR_SIZE = 512;
export const MAX_VCPUS = 64;
export const DOMAIN_NAME_RE = /^[A-Za-z0-9_.-]+$/;
export const DOMAIN_NAME_MAX = 64;

const TOP_KEYS = ['run', 'dom0', 'domains'] as const;
const RUN_KEYS = ['seed', 'memory', 'log'] as const;
const DOM0_KEYS = ['memory', 'blkback'] as const;
const BLKBACK_KEYS = ['unmap-policy', 'max-ring-page-order'] as const;
const DOMAIN_KEYS = ['name', 'memory', 'vcpus', 'disks'] as const;
/** Keys of a disk spec (xl-disk-configuration names, plus `size` for pvsim's disks). */
export const DISK_KEYS = ['target', 'format', 'vdev', 'access', 'size'] as const;
/** xl's positional disk parameters, in order. */
const DISK_POSITIONAL = ['target', 'format', 'vdev', 'access'] as const;
const ACCESS_VALUES: Readonly<Record<string, 'rw' | 'ro'>> = { rw: 'rw', w: 'rw', ro: 'ro', r: 'ro' };
const FORMATS = ['raw'];

interface PendingError {
  readonly offset: number;
  readonly field: string;
  readonly message: string;
}

/** A value found in the file, with where it starts. */
interface Located {
  readonly value: unknown;
  readonly offset: number;
  /** What the value is when it is not a scalar (`a map`, `a list`). */
  readonly shape: 'scalar' | 'map' | 'list';
}

const sub = (base: string, key: string): string => (base === '' ? key : `${base}.${key}`);
const idx = (base: string, i: number): string => `${base}[${i}]`;

class Ctx {
  readonly errors: PendingError[] = [];
  constructor(
    readonly text: string,
    readonly doc: Document,
    readonly lines: LineCounter,
  ) {}

  error(offset: number, field: string, message: string): void {
    this.errors.push({ offset, field, message });
  }

  /** Follow aliases (once per hop, bounded). */
  deref(node: unknown): unknown {
    let n = node;
    for (let hops = 0; hops < 16 && isAlias(n); hops++) n = n.resolve(this.doc);
    return isAlias(n) ? undefined : n;
  }

  start(node: unknown, fallback: number): number {
    const r = (node as Node | null | undefined)?.range;
    return r ? r[0] : fallback;
  }

  located(node: unknown, fallback: number): Located {
    const n = this.deref(node);
    const offset = this.start(node, fallback);
    if (isMap(n)) return { value: undefined, offset, shape: 'map' };
    if (isSeq(n)) return { value: undefined, offset, shape: 'list' };
    if (isScalar(n)) return { value: n.value, offset, shape: 'scalar' };
    return { value: null, offset, shape: 'scalar' };
  }
}

function got(v: Located): string {
  return v.shape === 'map' ? 'a map' : v.shape === 'list' ? 'a list' : describe(v.value);
}

interface MapEntry {
  readonly keyOffset: number;
  readonly node: unknown;
}

/**
 * Read a map whose keys must come from `allowed`. Unknown keys are reported (with a suggestion);
 * returns undefined (after reporting) when the node is not a map.
 */
function readMap(ctx: Ctx, node: unknown, field: string, allowed: readonly string[], fallback: number): Map<string, MapEntry> | undefined {
  const n = ctx.deref(node);
  const at = ctx.start(node, fallback);
  if (!isMap(n)) {
    ctx.error(at, field, `expected a map with keys ${allowed.join(', ')}, got ${got(ctx.located(node, fallback))}`);
    return undefined;
  }
  const out = new Map<string, MapEntry>();
  for (const pair of n.items) {
    const keyNode = ctx.deref(pair.key);
    const keyOffset = ctx.start(pair.key, at);
    if (!isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number')) {
      ctx.error(keyOffset, field, `keys must be names (one of ${allowed.join(', ')})`);
      continue;
    }
    const key = String(keyNode.value);
    if (!allowed.includes(key)) {
      const hint = didYouMean(key, allowed);
      ctx.error(keyOffset, sub(field, key), `unknown key '${key}'${hint || ` (expected one of: ${allowed.join(', ')})`}`);
      continue;
    }
    if (out.has(key)) continue; // duplicate keys are a YAML error already
    out.set(key, { keyOffset, node: pair.value });
  }
  return out;
}

function readSize(ctx: Ctx, v: Located, field: string): number | undefined {
  if (v.shape !== 'scalar') {
    ctx.error(v.offset, field, `expected a size such as 64MiB, got ${got(v)}`);
    return undefined;
  }
  const r = parseSize(v.value);
  if (!r.ok) {
    ctx.error(v.offset, field, r.error);
    return undefined;
  }
  return r.value;
}

function readInt(ctx: Ctx, v: Located, field: string, min: number, max: number): number | undefined {
  if (typeof v.value !== 'number' || !Number.isSafeInteger(v.value) || v.shape !== 'scalar') {
    ctx.error(v.offset, field, `expected an integer${max < Number.MAX_SAFE_INTEGER ? ` from ${min} to ${max}` : ''}, got ${got(v)}`);
    return undefined;
  }
  if (v.value < min || v.value > max) {
    ctx.error(v.offset, field, `${v.value} is out of range (${min}..${max})`);
    return undefined;
  }
  return v.value;
}

function readBool(ctx: Ctx, v: Located, field: string): boolean | undefined {
  if (typeof v.value !== 'boolean' || v.shape !== 'scalar') {
    ctx.error(v.offset, field, `expected true or false, got ${got(v)}`);
    return undefined;
  }
  return v.value;
}

function readString(ctx: Ctx, v: Located, field: string): string | undefined {
  if (typeof v.value !== 'string' || v.shape !== 'scalar') {
    ctx.error(v.offset, field, `expected a string, got ${got(v)}${typeof v.value === 'number' ? ' (quote it)' : ''}`);
    return undefined;
  }
  return v.value;
}

function memoryGranule(ctx: Ctx, n: number, v: Located, field: string, min: number): boolean {
  if (n < min) {
    ctx.error(v.offset, field, `${formatSize(n)} is too small (at least ${formatSize(min)})`);
    return false;
  }
  if (n % MEMORY_GRANULE !== 0) {
    ctx.error(v.offset, field, `${formatSize(n)} is not a multiple of the 4KiB page size`);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Disks

/** Disk fields gathered from a spec string or a map, before validation. */
type DiskFields = Map<string, Located>;

/** Where character `i` of a string scalar's value is in the file (exact unless escapes/folding). */
function stringPositions(ctx: Ctx, node: unknown, value: string, fallback: number): (i: number) => number {
  const n = ctx.deref(node) as Scalar | undefined;
  const s = ctx.start(node, fallback);
  if (n === undefined || n !== node) return () => s;
  const base = n.type === 'PLAIN' ? s : n.type === 'QUOTE_DOUBLE' || n.type === 'QUOTE_SINGLE' ? s + 1 : -1;
  if (base >= 0 && ctx.text.slice(base, base + value.length) === value) return (i) => base + i;
  return () => s;
}

/** Split an xl disk spec (`target=…, vdev=xvda, access=rw` or positional `target,format,vdev,access`). */
function diskFieldsFromString(ctx: Ctx, spec: string, pos: (i: number) => number, field: string): DiskFields | undefined {
  const fields: DiskFields = new Map();
  let slot = 0;
  let ok = true;
  let i = 0;
  const tokens: { text: string; at: number }[] = [];
  for (const raw of spec.split(',')) {
    const lead = raw.length - raw.trimStart().length;
    tokens.push({ text: raw.trim(), at: i + lead });
    i += raw.length + 1;
  }
  while (tokens.length > 1 && tokens[tokens.length - 1]!.text === '') tokens.pop(); // trailing comma
  if (tokens.length === 1 && tokens[0]!.text === '') {
    ctx.error(pos(0), field, `empty disk spec (expected e.g. "target=mem:64MiB, vdev=xvda, access=rw")`);
    return undefined;
  }
  for (const t of tokens) {
    const eq = t.text.indexOf('=');
    if (eq >= 0) {
      const key = t.text.slice(0, eq).trim();
      const rest = t.text.slice(eq + 1);
      const value = rest.trim();
      const valueAt = t.at + eq + 1 + (rest.length - rest.trimStart().length);
      if (!(DISK_KEYS as readonly string[]).includes(key)) {
        const hint = didYouMean(key, DISK_KEYS);
        ctx.error(pos(t.at), sub(field, key || '?'), `unknown disk parameter '${key}'${hint || ` (expected one of: ${DISK_KEYS.join(', ')})`}`);
        ok = false;
        continue;
      }
      if (fields.has(key)) {
        ctx.error(pos(t.at), sub(field, key), `'${key}' is given twice`);
        ok = false;
        continue;
      }
      fields.set(key, { value, offset: pos(valueAt), shape: 'scalar' });
      continue;
    }
    // Positional: the next of target, format, vdev, access not set by key. An omitted format may
    // be skipped (`/img,xvda,rw`), as xl allows.
    while (slot < DISK_POSITIONAL.length && fields.has(DISK_POSITIONAL[slot]!)) slot++;
    if (DISK_POSITIONAL[slot] === 'format' && t.text !== '' && !FORMATS.includes(t.text) && /^xvd/.test(t.text)) slot++;
    while (slot < DISK_POSITIONAL.length && fields.has(DISK_POSITIONAL[slot]!)) slot++;
    const name = DISK_POSITIONAL[slot];
    if (name === undefined) {
      ctx.error(pos(t.at), field, `unexpected '${t.text}' after target, format, vdev and access (use key=value)`);
      ok = false;
      continue;
    }
    slot++;
    if (t.text === '') continue; // an empty positional leaves the default
    fields.set(name, { value: t.text, offset: pos(t.at), shape: 'scalar' });
  }
  return ok ? fields : undefined;
}

function diskFieldsFromMap(ctx: Ctx, node: unknown, field: string, fallback: number): DiskFields | undefined {
  const m = readMap(ctx, node, field, DISK_KEYS, fallback);
  if (!m) return undefined;
  const fields: DiskFields = new Map();
  for (const [k, e] of m) fields.set(k, ctx.located(e.node, e.keyOffset));
  return fields;
}

function diskSize(ctx: Ctx, v: Located, field: string): number | undefined {
  const n = readSize(ctx, v, field);
  if (n === undefined) return undefined;
  if (n === 0) {
    ctx.error(v.offset, field, `a disk cannot be empty`);
    return undefined;
  }
  if (n % SECTOR_SIZE !== 0) {
    ctx.error(v.offset, field, `${formatSize(n)} is not a multiple of the 512-byte sector`);
    return undefined;
  }
  return n;
}

function validateDisk(ctx: Ctx, f: DiskFields, field: string, at: number, baseDir: string): DiskSpec | undefined {
  let ok = true;
  const size = f.get('size');
  const sizeBytes = size === undefined ? undefined : diskSize(ctx, size, sub(field, 'size'));
  if (size !== undefined && sizeBytes === undefined) ok = false;

  const fmt = f.get('format');
  if (fmt !== undefined) {
    const s = readString(ctx, fmt, sub(field, 'format'));
    if (s !== undefined && !FORMATS.includes(s)) {
      ctx.error(fmt.offset, sub(field, 'format'), `format '${s}' is not supported (only raw)`);
      ok = false;
    } else if (s === undefined) ok = false;
  }

  let target: DiskTarget | undefined;
  const t = f.get('target');
  if (t === undefined) {
    ctx.error(at, sub(field, 'target'), `missing target (mem:<size> or file:<path>)`);
    ok = false;
  } else {
    const s = readString(ctx, t, sub(field, 'target'));
    if (s === undefined) ok = false;
    else target = parseTarget(ctx, s, t, sub(field, 'target'), size, sizeBytes, baseDir);
  }

  let vdev: DiskSpec['vdev'] | undefined;
  const v = f.get('vdev');
  if (v === undefined) {
    ctx.error(at, sub(field, 'vdev'), `missing vdev (xvda, xvdb, …)`);
    ok = false;
  } else {
    const s = readString(ctx, v, sub(field, 'vdev'));
    if (s !== undefined) {
      const parsed = /^xvd[a-z]+([1-9][0-9]*)?$/.test(s) ? parseVdevName(s) : undefined;
      const num = parsed?.ok ? vdevNameToNumber(s) : undefined;
      if (num?.ok) vdev = { name: s, number: num.value };
      else if (parsed && !parsed.ok) ctx.error(v.offset, sub(field, 'vdev'), parsed.error);
      else ctx.error(v.offset, sub(field, 'vdev'), `'${s}' is not a virtual disk name (xvda, xvdb, …)`);
    }
  }

  let access: 'rw' | 'ro' = 'rw';
  const a = f.get('access');
  if (a !== undefined) {
    const s = readString(ctx, a, sub(field, 'access'));
    const norm = s === undefined ? undefined : ACCESS_VALUES[s];
    if (norm === undefined) {
      if (s !== undefined) ctx.error(a.offset, sub(field, 'access'), `'${s}' is not an access mode (rw or ro)${didYouMean(s, ['rw', 'ro'])}`);
      ok = false;
    } else access = norm;
  }

  if (!ok || target === undefined || vdev === undefined) return undefined;
  return { target, vdev, access };
}

function parseTarget(
  ctx: Ctx,
  s: string,
  t: Located,
  field: string,
  size: Located | undefined,
  sizeBytes: number | undefined,
  baseDir: string,
): DiskTarget | undefined {
  const m = s === 'mem' ? ['mem', 'mem', ''] : /^([A-Za-z][A-Za-z0-9_-]*):(.*)$/s.exec(s);
  const kind = m ? m[1]! : 'file';
  const rest = m ? m[2]! : s;
  if (kind === 'mem') {
    if (rest === '') {
      if (sizeBytes !== undefined) return { kind: 'mem', size: sizeBytes };
      if (size === undefined) ctx.error(t.offset, field, `a memory disk needs a size (mem:64MiB)`);
      return undefined;
    }
    const n = diskSize(ctx, { value: rest, offset: t.offset, shape: 'scalar' }, field);
    if (n === undefined) return undefined;
    if (sizeBytes !== undefined && sizeBytes !== n && size) {
      ctx.error(size.offset, sub(field.replace(/\.target$/, ''), 'size'), `size ${formatSize(sizeBytes)} disagrees with target mem:${formatSize(n)}`);
      return undefined;
    }
    return { kind: 'mem', size: n };
  }
  if (kind === 'file') {
    if (rest.trim() === '') {
      ctx.error(t.offset, field, `a file target needs a path (file:/path/to/disk.img)`);
      return undefined;
    }
    const path = resolve(baseDir, rest);
    return sizeBytes === undefined ? { kind: 'file', path } : { kind: 'file', path, size: sizeBytes };
  }
  ctx.error(t.offset, field, `target kind '${kind}' is not supported (mem:<size> or file:<path>)${didYouMean(kind, ['mem', 'file'])}`);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Domains

function readDomain(ctx: Ctx, node: unknown, field: string, fallback: number, baseDir: string): DomainSpec | undefined {
  const m = readMap(ctx, node, field, DOMAIN_KEYS, fallback);
  if (!m) return undefined;
  const at = ctx.start(node, fallback);
  let ok = true;

  let name: string | undefined;
  const n = m.get('name');
  if (n === undefined) {
    ctx.error(at, sub(field, 'name'), `missing name`);
    ok = false;
  } else {
    const v = ctx.located(n.node, n.keyOffset);
    name = readString(ctx, v, sub(field, 'name'));
    if (name !== undefined) {
      let problem: string | undefined;
      if (!DOMAIN_NAME_RE.test(name)) problem = `'${name}' is not a domain name (letters, digits, '_', '.', '-')`;
      else if (name.length > DOMAIN_NAME_MAX) problem = `name is longer than ${DOMAIN_NAME_MAX} characters`;
      else if (name.toLowerCase() === 'domain-0') problem = `'${name}' is dom0's name; guests need their own`;
      if (problem) {
        ctx.error(v.offset, sub(field, 'name'), problem);
        name = undefined;
      }
    }
    if (name === undefined) ok = false;
  }

  let memory: number | undefined;
  const mem = m.get('memory');
  if (mem === undefined) {
    ctx.error(at, sub(field, 'memory'), `missing memory (e.g. 32MiB)`);
    ok = false;
  } else {
    const v = ctx.located(mem.node, mem.keyOffset);
    memory = readSize(ctx, v, sub(field, 'memory'));
    if (memory !== undefined && !memoryGranule(ctx, memory, v, sub(field, 'memory'), MIN_DOMAIN_MEMORY)) memory = undefined;
    if (memory === undefined) ok = false;
  }

  let vcpus = 1;
  const vc = m.get('vcpus');
  if (vc !== undefined) {
    const r = readInt(ctx, ctx.located(vc.node, vc.keyOffset), sub(field, 'vcpus'), 1, MAX_VCPUS);
    if (r === undefined) ok = false;
    else vcpus = r;
  }

  const disks: DiskSpec[] = [];
  const d = m.get('disks');
  if (d !== undefined) {
    const list = ctx.deref(d.node);
    const dField = sub(field, 'disks');
    if (list === null || list === undefined || (isScalar(list) && list.value === null)) {
      // `disks:` with nothing: no disks
    } else if (!isSeq(list)) {
      ctx.error(ctx.start(d.node, d.keyOffset), dField, `expected a list of disks, got ${got(ctx.located(d.node, d.keyOffset))}`);
      ok = false;
    } else {
      const seen = new Map<number, { i: number; offset: number }>();
      list.items.forEach((item, i) => {
        const f = idx(dField, i);
        const itemAt = ctx.start(item, ctx.start(list, d.keyOffset));
        const itemNode = ctx.deref(item);
        let fields: DiskFields | undefined;
        if (isScalar(itemNode) && typeof itemNode.value === 'string') {
          fields = diskFieldsFromString(ctx, itemNode.value, stringPositions(ctx, item, itemNode.value, itemAt), f);
        } else if (isMap(itemNode)) {
          fields = diskFieldsFromMap(ctx, item, f, itemAt);
        } else {
          ctx.error(itemAt, f, `expected a disk spec ("target=mem:64MiB, vdev=xvda, access=rw") or a map, got ${got(ctx.located(item, itemAt))}`);
        }
        const disk = fields && validateDisk(ctx, fields, f, itemAt, baseDir);
        if (!disk) {
          ok = false;
          return;
        }
        const prev = seen.get(disk.vdev.number);
        if (prev) {
          const where = fields?.get('vdev')?.offset ?? itemAt;
          ctx.error(where, sub(f, 'vdev'), `duplicate vdev '${disk.vdev.name}' (already used by ${idx(dField, prev.i)} at line ${line(ctx, prev.offset)})`);
          ok = false;
          return;
        }
        seen.set(disk.vdev.number, { i, offset: fields?.get('vdev')?.offset ?? itemAt });
        disks.push(disk);
      });
    }
  }

  if (!ok || name === undefined || memory === undefined) return undefined;
  return { name, memory, vcpus, disks };
}

function line(ctx: Ctx, offset: number): number {
  return ctx.lines.linePos(offset).line;
}

// ---------------------------------------------------------------------------------------------

function validate(ctx: Ctx, baseDir: string): Topology | undefined {
  const root = ctx.doc.contents;
  const rootVal = ctx.deref(root);
  if (rootVal === null || rootVal === undefined || (isScalar(rootVal) && rootVal.value === null)) {
    ctx.error(ctx.start(root, 0), '', `empty topology: expected a map with 'domains' (and optionally 'run', 'dom0')`);
    return undefined;
  }
  const top = readMap(ctx, root, '', TOP_KEYS, 0);
  if (!top) return undefined;
  let ok = true;

  // run
  let seed: number | undefined;
  let runMemory = DEFAULT_RUN_MEMORY;
  let runMemoryAt: Located | undefined;
  let log = true;
  const run = top.get('run');
  if (run !== undefined) {
    const m = readMap(ctx, run.node, 'run', RUN_KEYS, run.keyOffset);
    if (!m) ok = false;
    else {
      const s = m.get('seed');
      if (s !== undefined) {
        seed = readInt(ctx, ctx.located(s.node, s.keyOffset), 'run.seed', 0, Number.MAX_SAFE_INTEGER);
        if (seed === undefined) ok = false;
      }
      const mem = m.get('memory');
      if (mem !== undefined) {
        runMemoryAt = ctx.located(mem.node, mem.keyOffset);
        const r = readSize(ctx, runMemoryAt, 'run.memory');
        if (r === undefined || !memoryGranule(ctx, r, runMemoryAt, 'run.memory', MIN_DOMAIN_MEMORY)) ok = false;
        else runMemory = r;
      }
      const l = m.get('log');
      if (l !== undefined) {
        const r = readBool(ctx, ctx.located(l.node, l.keyOffset), 'run.log');
        if (r === undefined) ok = false;
        else log = r;
      }
    }
  }

  // dom0
  let dom0Memory = DEFAULT_DOM0_MEMORY;
  let dom0MemoryGiven = false;
  let unmapPolicy: UnmapPolicy = 'async';
  let maxRingPageOrder = 0;
  const dom0 = top.get('dom0');
  if (dom0 !== undefined) {
    const m = readMap(ctx, dom0.node, 'dom0', DOM0_KEYS, dom0.keyOffset);
    if (!m) ok = false;
    else {
      const mem = m.get('memory');
      if (mem !== undefined) {
        const v = ctx.located(mem.node, mem.keyOffset);
        const r = readSize(ctx, v, 'dom0.memory');
        if (r === undefined || !memoryGranule(ctx, r, v, 'dom0.memory', MIN_DOMAIN_MEMORY)) ok = false;
        else {
          dom0Memory = r;
          dom0MemoryGiven = true;
        }
      }
      const bb = m.get('blkback');
      if (bb !== undefined) {
        const b = readMap(ctx, bb.node, 'dom0.blkback', BLKBACK_KEYS, bb.keyOffset);
        if (!b) ok = false;
        else {
          const p = b.get('unmap-policy');
          if (p !== undefined) {
            const v = ctx.located(p.node, p.keyOffset);
            const s = readString(ctx, v, 'dom0.blkback.unmap-policy');
            if (s !== undefined && (UNMAP_POLICIES as readonly string[]).includes(s)) unmapPolicy = s as UnmapPolicy;
            else {
              if (s !== undefined) {
                ctx.error(v.offset, 'dom0.blkback.unmap-policy', `'${s}' is not an unmap policy (${UNMAP_POLICIES.join(' | ')})${didYouMean(s, UNMAP_POLICIES)}`);
              }
              ok = false;
            }
          }
          const o = b.get('max-ring-page-order');
          if (o !== undefined) {
            const r = readInt(ctx, ctx.located(o.node, o.keyOffset), 'dom0.blkback.max-ring-page-order', 0, RING_ORDER_MAX);
            if (r === undefined) ok = false;
            else maxRingPageOrder = r;
          }
        }
      }
    }
  }

  // domains
  const domains: DomainSpec[] = [];
  const ds = top.get('domains');
  if (ds === undefined) {
    ctx.error(ctx.start(root, 0), 'domains', `missing domains (a list of guests)`);
    ok = false;
  } else {
    const list = ctx.deref(ds.node);
    const listAt = ctx.start(ds.node, ds.keyOffset);
    if (!isSeq(list)) {
      ctx.error(listAt, 'domains', `expected a list of domains, got ${got(ctx.located(ds.node, ds.keyOffset))}`);
      ok = false;
    } else if (list.items.length === 0) {
      ctx.error(listAt, 'domains', `at least one domain is needed`);
      ok = false;
    } else {
      const names = new Map<string, number>();
      let used = dom0Memory;
      let overReported = false;
      list.items.forEach((item, i) => {
        const f = idx('domains', i);
        const itemAt = ctx.start(item, listAt);
        const dom = readDomain(ctx, item, f, itemAt, baseDir);
        // Name and budget checks need the raw nodes even if the domain had other errors.
        const m = ctx.deref(item);
        const nameNode = isMap(m) ? m.items.find((p) => isScalar(p.key) && p.key.value === 'name')?.value : undefined;
        const memNode = isMap(m) ? m.items.find((p) => isScalar(p.key) && p.key.value === 'memory')?.value : undefined;
        const nameVal = nameNode === undefined ? undefined : ctx.located(nameNode, itemAt);
        if (nameVal && typeof nameVal.value === 'string') {
          const first = names.get(nameVal.value);
          if (first !== undefined) {
            ctx.error(nameVal.offset, sub(f, 'name'), `duplicate domain name '${nameVal.value}' (first at line ${line(ctx, first)})`);
            ok = false;
          } else names.set(nameVal.value, nameVal.offset);
        }
        if (!dom) {
          ok = false;
          return;
        }
        used += dom.memory;
        if (used > runMemory && !overReported && memNode !== undefined) {
          overReported = true;
          const v = ctx.located(memNode, itemAt);
          ctx.error(
            v.offset,
            sub(f, 'memory'),
            `memory over budget: dom0 ${formatSize(dom0Memory)}${dom0MemoryGiven ? '' : ' (default)'} + domains[0..${i}] ${formatSize(used - dom0Memory)} = ${formatSize(used)} > run.memory ${formatSize(runMemory)}${runMemoryAt ? '' : ' (default)'}`,
          );
          ok = false;
        }
        domains.push(dom);
      });
    }
  }

  if (!ok) return undefined;
  return {
    file: '',
    run: { seed, memory: runMemory, log },
    dom0: { memory: dom0Memory, blkback: { unmapPolicy, maxRingPageOrder } },
    domains,
  };
}

/**
 * Parse and validate a topology file. `fileName` is used in errors and to resolve relative file
 * targets (against its directory). Never throws.
 */
export function parseTopology(text: string, fileName: string): TopologyResult {
  const lc = new LineCounter();
  const toError = (e: PendingError): TopologyError => {
    const p = lc.linePos(Math.max(0, Math.min(e.offset, text.length)));
    return { file: fileName, line: p.line, column: p.col, field: e.field, message: e.message };
  };
  try {
    const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
    if (doc.errors.length > 0) {
      const errors = doc.errors.map((e) => toError({ offset: e.pos[0], field: '', message: yamlMessage(e.message) }));
      return { ok: false, errors: sortErrors(errors) };
    }
    const ctx = new Ctx(text, doc, lc);
    const topology = validate(ctx, dirname(resolve(fileName)));
    if (topology && ctx.errors.length === 0) return { ok: true, topology: { ...topology, file: fileName } };
    const errors = ctx.errors.map(toError);
    if (errors.length === 0) errors.push({ file: fileName, line: 1, column: 1, field: '', message: 'invalid topology' });
    return { ok: false, errors: sortErrors(errors) };
  } catch (e) {
    return {
      ok: false,
      errors: [{ file: fileName, line: 1, column: 1, field: '', message: `cannot read topology: ${e instanceof Error ? e.message : String(e)}` }],
    };
  }
}

function yamlMessage(m: string): string {
  // The yaml package's messages may carry a trailing context excerpt; keep the first line.
  const first = m.split('\n')[0] ?? m;
  return `malformed YAML: ${first.replace(/ at line \d+, column \d+:?$/, '')}`;
}

function sortErrors(errors: TopologyError[]): TopologyError[] {
  const seen = new Set<string>();
  return errors
    .filter((e) => {
      const k = `${e.line}:${e.column}:${e.field}:${e.message}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    })
    .sort((a, b) => a.line - b.line || a.column - b.column);
}

/** One line per error: `file:line:column: field: message`. */
export function formatTopologyErrors(errors: readonly TopologyError[]): string {
  return errors.map((e) => `${e.file}:${e.line}:${e.column}: ${e.field === '' ? '' : `${e.field}: `}${e.message}`).join('\n');
}
