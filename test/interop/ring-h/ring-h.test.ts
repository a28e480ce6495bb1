/**
 * Differential test: our FrontRing/BackRing (packages/ring) against Xen's own io/ring.h macros.
 *
 * harness.c includes <xen/io/ring.h> (Debian's libxen-dev), defines a ring type with
 * DEFINE_RING_TYPES and runs a script of ring operations, printing one line per operation: the
 * decisions taken (notify, final check, free/unconsumed counts, overflow checks, how many
 * entries were pushed or taken and what they held) and then the four shared header words and
 * both ends' private indices. Here the same script runs on one TS FrontRing and one TS BackRing
 * sharing one SharedRing, printing lines of the same shape, and the two must be identical.
 *
 * The harness is compiled in several request/response sizes (the union entry size decides the
 * ring size). Scripts are either hand-written (with pinned expectations) or random (fast-check,
 * fixed seed) and only ever legal: every count is clamped by the ring itself on both sides (push
 * until RING_FULL / until every consumed request is answered, take while something is
 * unconsumed), so a C/TS difference in those decisions shows up as a different count.
 *
 * Without /usr/include/xen/io/ring.h the suite is skipped locally and fails under CI.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SRING_PVT_OFFSET,
  SRING_REQ_EVENT_OFFSET,
  SRING_REQ_PROD_OFFSET,
  SRING_RING_OFFSET,
  SRING_RSP_EVENT_OFFSET,
  SRING_RSP_PROD_OFFSET,
  ringEntries,
} from '@pvsim/abi';
import {
  BackRing,
  FrontRing,
  REQ_EVENT,
  REQ_PROD,
  RSP_EVENT,
  RSP_PROD,
  SharedRing,
  needsNotify,
  rawSlotCodec,
  type SlotCodec,
} from '@pvsim/ring';

const RING_H = '/usr/include/xen/io/ring.h';
const HARNESS_SRC = fileURLToPath(new URL('./harness.c', import.meta.url));
const CI = process.env.CI;
const IN_CI = CI !== undefined && CI !== '' && CI !== '0' && CI.toLowerCase() !== 'false';
const HAVE_RING_H = existsSync(RING_H);
const SKIP = !HAVE_RING_H && !IN_CI;
const SKIP_REASON = `${RING_H} not found (apt-get install libxen-dev); skipping the io/ring.h differential test`;
if (SKIP) console.warn(`[ring-h] ${SKIP_REASON}`);

/** "As many as the ring allows": a count no ring reaches. */
const ALL = 0xffff_ffff;
const ORDER_MAX = 4;
const SEED = 42;
const NUM_RUNS = 200;

interface Variant {
  readonly name: string;
  readonly reqBytes: number;
  readonly rspBytes: number;
  /** sizeof(union X_sring_entry): both structs are 4-aligned multiples of 4. */
  readonly entryBytes: number;
}
const VARIANTS: readonly Variant[] = [
  { name: 'blkif-like 112/16', reqBytes: 112, rspBytes: 16 },
  { name: 'square 64/64', reqBytes: 64, rspBytes: 64 },
  { name: 'netif-like 12/8', reqBytes: 12, rspBytes: 8 },
  { name: 'response-larger 8/24', reqBytes: 8, rspBytes: 24 },
].map((v) => ({ ...v, entryBytes: Math.max(v.reqBytes, v.rspBytes) }));

// ---------------------------------------------------------------------------------------------
// Operations: one script line each, the same text for the C harness and the TS runner.

type CountOp = { k: 'push_req' | 'consume_req' | 'push_rsp' | 'consume_rsp'; n: number };
type BareOp = {
  k: 'push_req_notify' | 'push_req_nonotify' | 'push_rsp_notify' | 'push_rsp_nonotify' | 'final_req' | 'final_rsp' | 'query';
};
type DeltaOp = { k: 'req_prod_ovf' | 'rsp_prod_ovf' | 'req_cons_ovf' | 'set_req_event' | 'set_rsp_event'; d: number };
type Op = { k: 'init'; order: number; start: number } | CountOp | BareOp | DeltaOp;

const COUNT_OPS = ['push_req', 'consume_req', 'push_rsp', 'consume_rsp'] as const;
const BARE_OPS = ['push_req_notify', 'push_req_nonotify', 'push_rsp_notify', 'push_rsp_nonotify', 'final_req', 'final_rsp', 'query'] as const;
const DELTA_OPS = ['req_prod_ovf', 'rsp_prod_ovf', 'req_cons_ovf', 'set_req_event', 'set_rsp_event'] as const;

function toLine(op: Op): string {
  if (op.k === 'init') return `init ${op.order} ${op.start}`;
  if ('n' in op) return `${op.k} ${op.n}`;
  if ('d' in op) return `${op.k} ${op.d}`;
  return op.k;
}

/** Parse a hand-written script line; `SIZE±k` stands for the ring size of the current ring. */
function parseOp(text: string, size: number): Op {
  const [k, ...args] = text.trim().split(/\s+/);
  const num = (s: string | undefined): number => {
    if (s === undefined) throw new Error(`missing argument in "${text}"`);
    if (s === 'ALL') return ALL;
    const m = /^SIZE([+-]\d+)?$/.exec(s);
    if (m) return size + Number(m[1] ?? 0);
    const n = Number(s);
    if (!Number.isInteger(n)) throw new Error(`bad number "${s}" in "${text}"`);
    return n;
  };
  if (k === 'init') return { k, order: num(args[0]), start: num(args[1]) };
  if ((COUNT_OPS as readonly string[]).includes(k!)) return { k: k as CountOp['k'], n: num(args[0]) };
  if ((DELTA_OPS as readonly string[]).includes(k!)) return { k: k as DeltaOp['k'], d: num(args[0]) };
  if ((BARE_OPS as readonly string[]).includes(k!)) return { k: k as BareOp['k'] };
  throw new Error(`unknown op in "${text}"`);
}

// ---------------------------------------------------------------------------------------------
// Slot contents: the same patterns as harness.c (req_byte / rsp_byte), id in the first word.

const reqByte = (idx: number, j: number): number => ((idx ^ (j * 37)) + (idx >>> 8)) & 0xff;
const rspByte = (idx: number, j: number): number => (Math.imul(idx, 3) + j + (idx >>> 16)) & 0xff;

function makeReq(v: Variant, idx: number): Uint8Array {
  const b = new Uint8Array(v.reqBytes);
  new DataView(b.buffer).setUint32(0, idx >>> 0, true);
  for (let j = 4; j < v.reqBytes; j++) b[j] = reqByte(idx, j);
  return b;
}
function makeRsp(v: Variant, idx: number): Uint8Array {
  const b = new Uint8Array(v.rspBytes);
  new DataView(b.buffer).setUint32(0, ~idx >>> 0, true);
  for (let j = 4; j < v.rspBytes; j++) b[j] = rspByte(idx, j);
  return b;
}
const u32le = (b: Uint8Array): number => (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;

// ---------------------------------------------------------------------------------------------
// The TS side.

type Raw = Uint8Array;
/** Slots taken that straddle a page boundary (read as two pieces by SharedRing). */
let straddledTakes = 0;
type FrontFactory = (sring: SharedRing, codec: SlotCodec<Raw>, start: number) => FrontRing<Raw, Raw>;
const realFront: FrontFactory = (s, c, start) => new FrontRing(s, c, c, start);

/** Run a script on our rings; one output line per op, in the harness's format (minus `c.` keys). */
function runTs(v: Variant, ops: readonly Op[], makeFront: FrontFactory = realFront): string[] {
  const codec = rawSlotCodec(v.entryBytes);
  const out: string[] = [];
  let sring: SharedRing | undefined;
  let probe: SharedRing | undefined;
  let front: FrontRing<Raw, Raw> | undefined;
  let back: BackRing<Raw, Raw> | undefined;

  for (const op of ops) {
    let line: string;
    if (op.k === 'init') {
      sring = SharedRing.allocate(op.order, v.entryBytes);
      probe = SharedRing.allocate(op.order, v.entryBytes);
      sring.pages[0]!.fill(0xa5); // as the harness does: init must clear pvt and __pad
      sring.init(op.start);
      front = makeFront(sring, codec, op.start);
      back = new BackRing(sring, codec, codec, op.start);
      const pad = sring.pages[0]!.subarray(SRING_PVT_OFFSET, SRING_RING_OFFSET);
      line = `init size=${front.size} padzero=${pad.every((b) => b === 0) ? 1 : 0}`;
      if (back.size !== front.size || sring.size !== front.size) line += ` sizes=${sring.size},${front.size},${back.size}`;
    } else {
      if (!sring || !front || !back || !probe) throw new Error('script must start with init');
      const h = sring.header;
      switch (op.k) {
        case 'push_req': {
          const free = front.freeRequests();
          let pushed = 0;
          let refused: number | string = 0;
          while (pushed < op.n) {
            const r = front.pushRequest(makeReq(v, front.reqProdPvt));
            if (!r.ok) {
              refused = r.error.kind === 'ring-full' ? 1 : r.error.kind;
              break;
            }
            pushed++;
          }
          line = `push_req free=${free} pushed=${pushed} refused=${refused} full=${front.full() ? 1 : 0}`;
          break;
        }
        case 'push_req_notify':
          line = `push_req_notify notify=${front.pushRequestsAndCheckNotify() ? 1 : 0}`;
          break;
        case 'push_req_nonotify':
          front.pushRequests();
          line = 'push_req_nonotify';
          break;
        case 'consume_req': {
          const avail = back.unconsumedRequests();
          let took = 0;
          let sum = 0;
          let bad = 0;
          while (took < op.n && back.unconsumedRequests() > 0) {
            const idx = back.reqCons;
            if (sring.slotViews(idx).length === 2) straddledTakes++;
            const r = back.takeRequest();
            if (!r.ok) {
              bad += 1_000_000;
              break;
            }
            const id = u32le(r.value);
            if (id !== idx) bad++;
            for (let j = 4; j < v.reqBytes; j++) if (r.value[j] !== reqByte(idx, j)) bad++;
            sum = (sum + id) >>> 0;
            took++;
          }
          line = `consume_req avail=${avail} took=${took} sum=${sum} bad=${bad}`;
          break;
        }
        case 'push_rsp': {
          let pushed = 0;
          let refused: number | string = 0;
          while (pushed < op.n) {
            const r = back.pushResponse(makeRsp(v, back.rspProdPvt));
            if (!r.ok) {
              refused = r.error.kind === 'nothing-to-answer' ? 1 : r.error.kind;
              break;
            }
            pushed++;
          }
          line = `push_rsp pushed=${pushed} refused=${refused}`;
          break;
        }
        case 'push_rsp_notify':
          line = `push_rsp_notify notify=${back.pushResponsesAndCheckNotify() ? 1 : 0}`;
          break;
        case 'push_rsp_nonotify':
          back.pushResponses();
          line = 'push_rsp_nonotify';
          break;
        case 'final_req':
          line = `final_req work=${back.finalCheckForRequests() ? 1 : 0}`;
          break;
        case 'final_rsp':
          line = `final_rsp work=${front.finalCheckForResponses() ? 1 : 0}`;
          break;
        case 'consume_rsp': {
          const avail = front.unconsumedResponses();
          let took = 0;
          let sum = 0;
          let bad = 0;
          while (took < op.n && front.unconsumedResponses() > 0) {
            const idx = front.rspCons;
            if (sring.slotViews(idx).length === 2) straddledTakes++;
            const r = front.takeResponse();
            if (!r.ok) {
              bad += 1_000_000;
              break;
            }
            const id = u32le(r.value);
            if (id !== ~idx >>> 0) bad++;
            for (let j = 4; j < v.rspBytes; j++) if (r.value[j] !== rspByte(idx, j)) bad++;
            sum = (sum + (~id >>> 0)) >>> 0;
            took++;
          }
          line = `consume_rsp avail=${avail} took=${took} sum=${sum} bad=${bad}`;
          break;
        }
        case 'query':
          line =
            `query size=${front.size} free=${front.freeRequests()} full=${front.full() ? 1 : 0} ` +
            `unc_req=${back.unconsumedRequests()} unc_rsp=${front.unconsumedResponses()}`;
          break;
        case 'req_prod_ovf': {
          // A probe backend in our private state, on a scratch ring whose req_prod is `prod`.
          const prod = (back.rspProdPvt + op.d) >>> 0;
          const pb = new BackRing(probe, codec, codec, 0);
          pb.rspProdPvt = back.rspProdPvt;
          pb.reqCons = back.reqCons;
          Atomics.store(probe.header, REQ_PROD, prod);
          const unc = pb.unconsumedRequests();
          const ovf = pb.broken?.kind === 'req-prod-overflow';
          const tight = ovf || pb.broken?.kind === 'req-prod-regressed';
          line = `req_prod_ovf prod=${prod} ovf=${ovf ? 1 : 0} tight=${tight ? 1 : 0}${tight ? '' : ` unc=${unc}`}`;
          break;
        }
        case 'rsp_prod_ovf': {
          const prod = (front.rspCons + op.d) >>> 0;
          const pf = new FrontRing(probe, codec, codec, 0);
          pf.reqProdPvt = front.reqProdPvt;
          pf.rspCons = front.rspCons;
          Atomics.store(probe.header, RSP_PROD, prod);
          const unc = pf.unconsumedResponses();
          const tight = pf.broken?.kind === 'rsp-prod-overflow';
          line = `rsp_prod_ovf prod=${prod} tight=${tight ? 1 : 0}${tight ? '' : ` unc=${unc}`}`;
          break;
        }
        case 'req_cons_ovf': {
          const cons = (back.reqCons + op.d) >>> 0;
          line = `req_cons_ovf cons=${cons} ovf=${back.requestConsOverflow(cons) ? 1 : 0}`;
          break;
        }
        case 'set_req_event':
          Atomics.store(h, REQ_EVENT, (back.reqCons + op.d) >>> 0);
          line = 'set_req_event';
          break;
        case 'set_rsp_event':
          Atomics.store(h, RSP_EVENT, (front.rspCons + op.d) >>> 0);
          line = 'set_rsp_event';
          break;
      }
      if (front.broken) line += ` front-broken=${front.broken.kind}`;
      if (back.broken) line += ` back-broken=${back.broken.kind}`;
    }
    const h = sring.header;
    line +=
      ` hdr=${Atomics.load(h, REQ_PROD)},${Atomics.load(h, REQ_EVENT)},${Atomics.load(h, RSP_PROD)},${Atomics.load(h, RSP_EVENT)}` +
      ` f=${front!.reqProdPvt},${front!.rspCons} b=${back!.rspProdPvt},${back!.reqCons}`;
    out.push(line);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The C side.

let workDir: string | undefined;
const harnessBin = new Map<string, string>();

function compileHarnesses(): void {
  if (!HAVE_RING_H) {
    throw new Error(`CI is set but ${RING_H} is missing: install libxen-dev (apt-get install -y libxen-dev) so the io/ring.h differential test runs`);
  }
  workDir = mkdtempSync(join(tmpdir(), 'ring-h-'));
  const cc = process.env.CC || 'cc';
  for (const v of VARIANTS) {
    const bin = join(workDir, `harness-${v.reqBytes}-${v.rspBytes}`);
    const args = ['-std=gnu11', '-O1', '-Wall', '-Wextra', '-Werror', `-DREQ_BYTES=${v.reqBytes}`, `-DRSP_BYTES=${v.rspBytes}`, HARNESS_SRC, '-o', bin];
    try {
      execFileSync(cc, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
      throw new Error(`compiling the ring.h harness failed: ${cc} ${args.join(' ')}\n${stderr || String(e)}`);
    }
    harnessBin.set(v.name, bin);
  }
}

let cSpawns = 0;
function runCText(v: Variant, script: string): string[] {
  const bin = harnessBin.get(v.name);
  if (!bin) throw new Error(`harness for ${v.name} not compiled`);
  cSpawns++;
  const r = spawnSync(bin, { input: script, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`harness exited with ${r.status ?? r.signal}: ${r.stdout.split('\n').slice(-3).join(' | ')} ${r.stderr}`);
  }
  return r.stdout.split('\n').filter((l) => l !== '');
}
const runC = (v: Variant, ops: readonly Op[]): string[] => runCText(v, ops.map(toLine).join('\n') + '\n');

// ---------------------------------------------------------------------------------------------
// Comparison.

/** C-only facts (keys `c.*`) checked on their own; returns a complaint or null. */
function checkCOnly(cLine: string): string | null {
  const kv = fields(cLine);
  if (kv.has('c.consovf')) return 'harness: RING_REQUEST_CONS_OVERFLOW inside a legal consume loop';
  if (kv.has('c.rspovf')) return 'harness: RING_RESPONSE_PROD_OVERFLOW on a legal ring';
  // Outstanding requests never exceed the ring size, so ring.h's check implies the tight one.
  if (kv.get('c.macro') === '1' && kv.get('tight') !== '1') return 'harness: RING_RESPONSE_PROD_OVERFLOW without the tight overflow';
  return null;
}
const stripCOnly = (line: string): string => line.split(' ').filter((t) => !t.startsWith('c.')).join(' ');
function fields(line: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const t of line.split(' ').slice(1)) {
    const i = t.indexOf('=');
    if (i > 0) m.set(t.slice(0, i), t.slice(i + 1));
  }
  return m;
}

/** First difference between the C and TS transcripts of `ops`, with context, or null. */
function compare(ops: readonly Op[], cLines: readonly string[], tsLines: readonly string[]): string | null {
  const context = (i: number): string =>
    ops
      .slice(Math.max(0, i - 8), i + 1)
      .map((op, j) => `    ${Math.max(0, i - 8) + j}: ${toLine(op)}`)
      .join('\n');
  for (let i = 0; i < ops.length; i++) {
    const c = cLines[i];
    const t = tsLines[i];
    if (c === undefined || t === undefined) return `transcript ended early at op ${i} (C ${cLines.length} lines, TS ${tsLines.length}, ops ${ops.length})`;
    const cOnly = checkCOnly(c);
    if (cOnly) return `${cOnly} at op ${i}: ${c}\n${context(i)}`;
    if (stripCOnly(c) !== t) return `C and TS differ at op ${i} (${toLine(ops[i]!)}):\n  C : ${stripCOnly(c)}\n  TS: ${t}\n  script tail:\n${context(i)}`;
    const bad = fields(t).get('bad');
    if (bad !== undefined && bad !== '0') return `slot contents corrupted at op ${i}: ${t}\n${context(i)}`;
  }
  if (cLines.length !== ops.length || tsLines.length !== ops.length) return `transcript length: C ${cLines.length}, TS ${tsLines.length}, ops ${ops.length}`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Random legal scripts.

function scriptArb(v: Variant): fc.Arbitrary<Op[]> {
  return fc.integer({ min: 0, max: ORDER_MAX }).chain((order) => {
    const size = ringEntries(order, v.entryBytes);
    const top = 0x1_0000_0000;
    const start = fc.oneof(
      { arbitrary: fc.constant(0), weight: 1 },
      { arbitrary: fc.integer({ min: 0xffff_fff0, max: 0xffff_ffff }), weight: 4 }, // wrap within a few pushes
      { arbitrary: fc.integer({ min: Math.max(0, top - size - 4), max: top - 1 }), weight: 2 }, // wrap within a ring's worth
      { arbitrary: fc.integer({ min: 0x7fff_fff0, max: 0x8000_0010 }), weight: 1 }, // sign bit
      { arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }), weight: 2 },
    );
    const count = fc.oneof(
      { arbitrary: fc.integer({ min: 0, max: 5 }), weight: 6 },
      { arbitrary: fc.integer({ min: 6, max: Math.max(6, size + 2) }), weight: 2 },
      { arbitrary: fc.constant(ALL), weight: 2 },
    );
    const delta = fc.oneof(
      fc.integer({ min: -3, max: 3 }),
      fc.integer({ min: size - 3, max: size + 3 }),
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    );
    const eventDelta = fc.oneof({ arbitrary: fc.integer({ min: 0, max: 4 }), weight: 4 }, { arbitrary: fc.integer({ min: -2, max: size + 2 }), weight: 1 });
    const counted = (k: CountOp['k']) => count.map((n): Op => ({ k, n }));
    const bare = (k: BareOp['k']) => fc.constant<Op>({ k });
    const deltaOp = (k: DeltaOp['k'], arb: fc.Arbitrary<number>) => arb.map((d): Op => ({ k, d }));
    const op = fc.oneof(
      { arbitrary: counted('push_req'), weight: 5 },
      { arbitrary: bare('push_req_notify'), weight: 4 },
      { arbitrary: bare('push_req_nonotify'), weight: 1 },
      { arbitrary: counted('consume_req'), weight: 4 },
      { arbitrary: counted('push_rsp'), weight: 4 },
      { arbitrary: bare('push_rsp_notify'), weight: 4 },
      { arbitrary: bare('push_rsp_nonotify'), weight: 1 },
      { arbitrary: bare('final_req'), weight: 3 },
      { arbitrary: bare('final_rsp'), weight: 3 },
      { arbitrary: counted('consume_rsp'), weight: 4 },
      { arbitrary: bare('query'), weight: 1 },
      { arbitrary: deltaOp('req_prod_ovf', delta), weight: 1 },
      { arbitrary: deltaOp('rsp_prod_ovf', delta), weight: 1 },
      { arbitrary: deltaOp('req_cons_ovf', delta), weight: 1 },
      { arbitrary: deltaOp('set_req_event', eventDelta), weight: 1 },
      { arbitrary: deltaOp('set_rsp_event', eventDelta), weight: 1 },
    );
    return fc
      .tuple(start, fc.array(op, { minLength: 1, maxLength: 80, size: 'max' }))
      .map(([s, rest]): Op[] => [{ k: 'init', order, start: s }, ...rest]);
  });
}

/** Decisions seen across the random runs, so the property is shown not to be vacuous. */
const seen = new Map<string, number>();
const stats = { sequences: 0, ops: 0, wrapped: 0, straddled: 0 };
function record(ops: readonly Op[], tsLines: readonly string[], straddled: number): void {
  stats.straddled += straddled;
  stats.sequences++;
  stats.ops += ops.length;
  const init = ops[0];
  let wrapped = false;
  for (const line of tsLines) {
    const [k] = line.split(' ');
    const kv = fields(line);
    for (const key of ['notify', 'work', 'refused', 'full', 'ovf', 'tight']) {
      const val = kv.get(key);
      if (val !== undefined) seen.set(`${k}:${key}=${val}`, (seen.get(`${k}:${key}=${val}`) ?? 0) + 1);
    }
    const f = kv.get('f');
    if (init?.k === 'init' && f !== undefined && Number(f.split(',')[0]) < init.start) wrapped = true;
  }
  if (wrapped) stats.wrapped++;
}

function differentialProperty(v: Variant, makeFront: FrontFactory = realFront, track = false) {
  return fc.property(scriptArb(v), (ops) => {
    const straddledBefore = straddledTakes;
    const tsLines = runTs(v, ops, makeFront);
    const cLines = runC(v, ops);
    const diff = compare(ops, cLines, tsLines);
    if (diff) throw new Error(diff);
    if (track) record(ops, tsLines, straddledTakes - straddledBefore);
  });
}

// ---------------------------------------------------------------------------------------------
// Hand-written scripts. `=> tokens` pins what ring.h must say on that line (checked on the C
// transcript; TS must then match C). SIZE is the ring's size in the current variant.

interface Fixed {
  readonly name: string;
  readonly script: string;
}
const FIXED: readonly Fixed[] = [
  {
    name: 'backend re-arms req_event, frontend pushes exactly one: notify; the next push without re-arming: none',
    script: `
      init 0 0               => hdr=0,1,0,1
      push_req 1
      push_req_notify        => notify=1 hdr=1,1,0,1
      push_req 1
      push_req_notify        => notify=0 hdr=2,1,0,1
      consume_req ALL        => avail=2 took=2 sum=1
      final_req              => work=0 hdr=2,3,0,1
      push_req 1
      push_req_notify        => notify=1 hdr=3,3,0,1
      final_req              => work=1 hdr=3,3,0,1
      consume_req ALL        => took=1
      final_req              => work=0 hdr=3,4,0,1
      push_req_notify        => notify=0`,
  },
  {
    name: 'frontend re-arms rsp_event, backend answers exactly one: notify; the next answer: none',
    script: `
      init 1 7
      push_req 3
      push_req_notify        => notify=1
      consume_req ALL        => took=3
      final_rsp              => work=0 hdr=10,8,7,8
      push_rsp 1
      push_rsp_notify        => notify=1 hdr=10,8,8,8
      push_rsp 1
      push_rsp_notify        => notify=0
      consume_rsp ALL        => avail=2 took=2 sum=15
      final_rsp              => work=0 hdr=10,8,9,10
      push_rsp ALL           => pushed=1 refused=1
      push_rsp_notify        => notify=1 hdr=10,8,10,10
      final_rsp              => work=1`,
  },
  {
    name: 'a batch that crosses 2^32 in one push',
    script: `
      init 0 4294967294      => hdr=4294967294,4294967295,4294967294,4294967295
      push_req 5             => free=SIZE pushed=5 f=3,4294967294
      push_req_notify        => notify=1 hdr=3,4294967295,4294967294,4294967295
      consume_req ALL        => avail=5 took=5 sum=0 bad=0
      final_req              => work=0 hdr=3,4,4294967294,4294967295
      push_rsp ALL           => pushed=5 refused=1
      push_rsp_notify        => notify=1
      consume_rsp ALL        => took=5 sum=0 bad=0 f=3,3
      final_rsp              => work=0 hdr=3,4,3,4`,
  },
  {
    name: 'start at 0xffffffff: both event indices wrap to 0',
    script: `
      init 0 4294967295      => hdr=4294967295,0,4294967295,0
      push_req 1
      push_req_notify        => notify=1 hdr=0,0,4294967295,0
      consume_req 1          => sum=4294967295
      push_rsp 1
      push_rsp_notify        => notify=1 hdr=0,0,0,0`,
  },
  {
    name: 'fill the ring across the wrap, RING_FULL refuses one more, one answer frees one slot',
    script: `
      init 0 4294967290
      push_req ALL           => free=SIZE pushed=SIZE refused=1 full=1
      query                  => size=SIZE free=0 full=1 unc_req=0 unc_rsp=0
      push_req_notify        => notify=1
      query                  => unc_req=SIZE
      consume_req 1          => took=1
      push_rsp 1
      push_rsp_nonotify
      query                  => free=0 full=1 unc_rsp=1
      consume_rsp 1
      query                  => free=1 full=0 unc_rsp=0
      push_req ALL           => free=1 pushed=1 refused=1 full=1
      push_req_notify        => notify=0
      consume_req ALL        => took=SIZE
      final_req              => work=0
      req_cons_ovf 0         => ovf=1
      req_cons_ovf -1        => ovf=0`,
  },
  {
    name: 'custom hold-off: req_event set 4 ahead notifies only on the push that reaches it',
    script: `
      init 1 100
      set_req_event 4        => hdr=100,104,100,101
      push_req 1
      push_req_notify        => notify=0
      push_req 2
      push_req_notify        => notify=0 hdr=103,104,100,101
      push_req 1
      push_req_notify        => notify=1 hdr=104,104,100,101
      push_req 5
      push_req_notify        => notify=0`,
  },
  {
    name: 'a silent RING_PUSH_REQUESTS before the checked push hides the crossing (old == new)',
    script: `
      init 0 0
      push_req 2
      push_req_nonotify      => hdr=2,1,0,1
      push_req_notify        => notify=0
      set_req_event 0        => hdr=2,0,0,1
      push_req 1
      push_req_notify        => notify=0`,
  },
  {
    name: 'overflow checks at their boundaries',
    script: `
      init 0 4294967280
      push_req 3
      push_req_notify
      consume_req 2
      req_prod_ovf SIZE      => ovf=0 tight=0
      req_prod_ovf SIZE+1    => ovf=1 tight=1
      req_prod_ovf -1        => ovf=1 tight=1
      req_prod_ovf 3         => ovf=0 tight=0 unc=1
      req_prod_ovf 2         => ovf=0 tight=0 unc=0
      req_prod_ovf 1         => ovf=0 tight=1
      req_cons_ovf SIZE-2    => ovf=1
      req_cons_ovf SIZE-3    => ovf=0
      rsp_prod_ovf 3         => tight=0 c.macro=0 unc=3
      rsp_prod_ovf 4         => tight=1 c.macro=0
      rsp_prod_ovf SIZE      => tight=1 c.macro=0
      rsp_prod_ovf SIZE+1    => tight=1 c.macro=1
      rsp_prod_ovf -1        => tight=1 c.macro=1`,
  },
];

function parseFixed(v: Variant, f: Fixed): { ops: Op[]; expect: (string[] | null)[] } {
  const ops: Op[] = [];
  const expectations: (string[] | null)[] = [];
  let size = 0;
  for (const raw of f.script.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const [opText, exp] = line.split('=>');
    const op = parseOp(opText!, size);
    if (op.k === 'init') size = ringEntries(op.order, v.entryBytes);
    ops.push(op);
    // Expectations may use SIZE too: substitute through parseOp's rule.
    expectations.push(
      exp === undefined
        ? null
        : exp
            .trim()
            .split(/\s+/)
            .map((t) => t.replace(/SIZE([+-]\d+)?/g, (_, k: string | undefined) => String(size + Number(k ?? 0)))),
    );
  }
  return { ops, expect: expectations };
}

// ---------------------------------------------------------------------------------------------

/** Front rings with a deliberately wrong notify rule: the comparison must catch them. */
class OffByOneNotifyFront extends FrontRing<Raw, Raw> {
  override pushRequestsAndCheckNotify(): boolean {
    const h = this.sring.header;
    const oldProd = Atomics.load(h, REQ_PROD);
    Atomics.store(h, REQ_PROD, this.reqProdPvt);
    return needsNotify(this.reqProdPvt, oldProd, (Atomics.load(h, REQ_EVENT) - 1) >>> 0);
  }
}
class NotifyOnAnyPushFront extends FrontRing<Raw, Raw> {
  override pushRequestsAndCheckNotify(): boolean {
    const h = this.sring.header;
    const oldProd = Atomics.load(h, REQ_PROD);
    Atomics.store(h, REQ_PROD, this.reqProdPvt);
    return oldProd !== this.reqProdPvt;
  }
}
const MUTANTS: readonly { name: string; make: FrontFactory }[] = [
  { name: 'notify compares against req_event - 1', make: (s, c, start) => new OffByOneNotifyFront(s, c, c, start) },
  { name: 'notify on every non-empty push (ignores req_event)', make: (s, c, start) => new NotifyOnAnyPushFront(s, c, c, start) },
];

describe.skipIf(SKIP)(`io/ring.h differential (${RING_H})`, () => {
  const started = Date.now();

  beforeAll(() => {
    compileHarnesses();
  });

  afterAll(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    console.log(
      `[ring-h] random: ${stats.sequences} sequences, ${stats.ops} ops compared line by line ` +
        `(${stats.wrapped} crossed 2^32, ${stats.straddled} page-straddling slots taken); ${cSpawns} harness runs in total; ${secs} s`,
    );
  });

  describe('layout', () => {
    for (const v of VARIANTS) {
      it(`${v.name}: header offsets, entry size and ring entries for orders 0..${ORDER_MAX}`, () => {
        const [line] = runCText(v, 'layout\n');
        const kv = fields(line!);
        const n = (k: string): number => Number(kv.get(k));
        expect(n('req')).toBe(v.reqBytes);
        expect(n('rsp')).toBe(v.rspBytes);
        expect(n('entry')).toBe(v.entryBytes);
        expect(n('req_prod')).toBe(SRING_REQ_PROD_OFFSET);
        expect(n('req_event')).toBe(SRING_REQ_EVENT_OFFSET);
        expect(n('rsp_prod')).toBe(SRING_RSP_PROD_OFFSET);
        expect(n('rsp_event')).toBe(SRING_RSP_EVENT_OFFSET);
        expect(n('pvt')).toBe(SRING_PVT_OFFSET);
        expect(n('ring')).toBe(SRING_RING_OFFSET);
        expect([SRING_REQ_PROD_OFFSET, SRING_REQ_EVENT_OFFSET, SRING_RSP_PROD_OFFSET, SRING_RSP_EVENT_OFFSET, SRING_RING_OFFSET]).toEqual([0, 4, 8, 12, 64]);
        expect(n('sring')).toBe(SRING_RING_OFFSET + v.entryBytes);
        expect([REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT].map((w) => w * 4)).toEqual([n('req_prod'), n('req_event'), n('rsp_prod'), n('rsp_event')]);
        for (let order = 0; order <= ORDER_MAX; order++) {
          const c = n(`entries${order}`);
          expect(n(`attach${order}`), `order ${order}: __RING_SIZE vs __CONST_RING_SIZE`).toBe(c);
          expect(ringEntries(order, v.entryBytes), `ringEntries(${order}, ${v.entryBytes})`).toBe(c);
          expect(SharedRing.allocate(order, v.entryBytes).size, `SharedRing.allocate(${order}, ${v.entryBytes}).size`).toBe(c);
        }
      });
    }
  });

  describe('hand-written scripts', () => {
    for (const v of VARIANTS) {
      for (const f of FIXED) {
        it(`${v.name}: ${f.name}`, () => {
          const { ops, expect: expectations } = parseFixed(v, f);
          const cLines = runC(v, ops);
          expectations.forEach((want, i) => {
            if (!want) return;
            const have = new Set(cLines[i]?.split(' '));
            for (const tok of want) expect(have.has(tok), `ring.h line ${i} (${toLine(ops[i]!)}): want ${tok} in "${cLines[i]}"`).toBe(true);
          });
          const diff = compare(ops, cLines, runTs(v, ops));
          expect(diff, diff ?? '').toBeNull();
        });
      }
    }
  });

  describe('random legal sequences (fast-check)', () => {
    for (const v of VARIANTS) {
      it(`${v.name}: ${NUM_RUNS} sequences, every decision and header word after every op`, () => {
        fc.assert(differentialProperty(v, realFront, true), { seed: SEED, numRuns: NUM_RUNS });
      });
    }

    it('the random sequences reach every outcome of every decision, cross 2^32 and take page-straddling slots', (ctx) => {
      // Tallied by the property runs above; when a filter left them out (or one failed), skip.
      if (stats.sequences < NUM_RUNS * VARIANTS.length) ctx.skip();
      const want = [
        'push_req_notify:notify=0', 'push_req_notify:notify=1',
        'push_rsp_notify:notify=0', 'push_rsp_notify:notify=1',
        'final_req:work=0', 'final_req:work=1',
        'final_rsp:work=0', 'final_rsp:work=1',
        'push_req:refused=0', 'push_req:refused=1', 'push_req:full=1',
        'push_rsp:refused=0', 'push_rsp:refused=1',
        'req_prod_ovf:ovf=0', 'req_prod_ovf:ovf=1',
        'rsp_prod_ovf:tight=0', 'rsp_prod_ovf:tight=1',
        'req_cons_ovf:ovf=0', 'req_cons_ovf:ovf=1',
      ];
      expect(stats.sequences).toBe(NUM_RUNS * VARIANTS.length);
      const tally = JSON.stringify(Object.fromEntries([...seen].sort()));
      for (const w of want) expect(seen.get(w) ?? 0, `${w} never happened; seen: ${tally}`).toBeGreaterThan(0);
      expect(stats.wrapped).toBeGreaterThan(NUM_RUNS / 10);
      // 112-, 12- and 24-byte entries straddle a page boundary in rings of 4+ pages.
      expect(stats.straddled).toBeGreaterThan(0);
    });
  });

  describe('the comparison can fail', () => {
    const v = VARIANTS[0]!;

    it('a mutated C expectation (one notify flipped) is reported', () => {
      const { ops } = parseFixed(v, FIXED[0]!);
      const cLines = runC(v, ops);
      const i = cLines.findIndex((l) => l.includes('notify=1'));
      expect(i).toBeGreaterThan(0);
      const mutated = cLines.map((l, j) => (j === i ? l.replace('notify=1', 'notify=0') : l));
      expect(compare(ops, mutated, runTs(v, ops))).toMatch(/C and TS differ at op \d+ \(push_req_notify\)/);
    });

    for (const m of MUTANTS) {
      it(`a front ring whose ${m.name} fails the hand-written classic and the random property`, () => {
        const { ops } = parseFixed(v, FIXED[0]!);
        expect(compare(ops, runC(v, ops), runTs(v, ops, m.make))).toMatch(/notify=/);
        const r = fc.check(differentialProperty(v, m.make), { seed: SEED, numRuns: NUM_RUNS });
        expect(r.failed).toBe(true);
        expect(String(r.errorInstance)).toMatch(/push_req_notify/);
      });
    }
  });
});

// Keep a visible trace in the report when the suite is skipped locally.
if (SKIP) {
  describe('io/ring.h differential', () => {
    it.skip(SKIP_REASON, () => {});
  });
}
