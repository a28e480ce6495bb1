/**
 * Interop: the ABI constants pvsim hard-codes, against Xen's own public headers.
 *
 * abi.c includes Debian's libxen-dev headers (xen.h, grant_table.h, event_channel.h, errno.h,
 * io/ring.h, io/blkif.h, io/protocols.h, io/xenbus.h, io/xs_wire.h) and prints, one per line,
 * the header's facts: every constant of each family pvsim draws on (all GNTTABOP_*, all
 * EVTCHNOP_*, all DOMID_*, every Xen errno, …), struct sizes and field offsets, blkif ring sizes,
 * and a few whole messages and grant entries laid out by the C compiler.
 *
 * The comparison has three parts:
 *  - by name: every number or string exported by @pvsim/abi, ring, blkif, hypervisor and
 *    xenstore whose name the headers also define is compared with the header's value (pvsim's
 *    errno `EPERM` with xen/errno.h's `XEN_EPERM`). pvsim constants the headers do not define are
 *    not compared (listed in the summary line); `REQUIRED` pins the names that must be compared,
 *    so coverage cannot shrink silently;
 *  - facts pvsim names differently (`BLKIF_C_REQUEST_BYTES` = sizeof(struct blkif_request)) or
 *    holds in code (`xsOpName`, `xenbusStrState`, `gntstName`, the msgpack field names);
 *  - where pvsim deliberately differs, the documented relationship (the 115-byte blkif slot still
 *    gives Xen's ring sizes; the header's xs_wire.h may predate pvsim's newest XS_* types).
 * Byte layouts are compared as bytes: a grant entry written by pvsim's hypervisor and an
 * xs_wire message written by pvsim's codec, each against the same thing built in C.
 *
 * The shared-ring header (req_prod/req_event/rsp_prod/rsp_event offsets, ring start, entries per
 * order for generic entry sizes) is test/interop/ring-h's; it is not repeated here.
 *
 * Without the headers or a C compiler the suite is skipped locally and fails under CI.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect, isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as abi from '@pvsim/abi';
import * as blkif from '@pvsim/blkif';
import type { EventEmitter } from '@pvsim/eventlog';
import * as hypervisor from '@pvsim/hypervisor';
import * as ring from '@pvsim/ring';
import * as xenstore from '@pvsim/xenstore';
import type { XsError } from '@pvsim/xenstore';

const INCLUDE_DIR = '/usr/include';
const HEADERS = [
  'xen/xen.h',
  'xen/grant_table.h',
  'xen/event_channel.h',
  'xen/errno.h',
  'xen/io/ring.h',
  'xen/io/blkif.h',
  'xen/io/protocols.h',
  'xen/io/xenbus.h',
  'xen/io/xs_wire.h',
];
const SRC = fileURLToPath(new URL('./abi.c', import.meta.url));
const CC = process.env.CC || 'cc';
const CI = process.env.CI;
const IN_CI = CI !== undefined && CI !== '' && CI !== '0' && CI.toLowerCase() !== 'false';
const MISSING_HEADERS = HEADERS.filter((h) => !existsSync(join(INCLUDE_DIR, h)));
const HAVE_CC = spawnSync(CC, ['--version'], { stdio: 'ignore' }).status === 0;
const MISSING = [
  ...(MISSING_HEADERS.length > 0 ? [`${MISSING_HEADERS.map((h) => join(INCLUDE_DIR, h)).join(', ')} not found (apt-get install libxen-dev)`] : []),
  ...(HAVE_CC ? [] : [`no C compiler "${CC}" (apt-get install gcc libc6-dev, or set CC)`]),
];
const SKIP = MISSING.length > 0 && !IN_CI;
const SKIP_REASON = `${MISSING.join('; ')}; skipping the Xen ABI header comparison`;
if (SKIP) console.warn(`[abi-h] ${SKIP_REASON}`);

// ---------------------------------------------------------------------------------------------
// Xen's side: compile, run, parse.

interface XenFact {
  readonly value: unknown;
  /** The header it came from (`xen/io/blkif.h`). */
  readonly header: string;
}

/** What abi.c printed, by name. */
class XenFacts {
  constructor(readonly facts: ReadonlyMap<string, XenFact>) {}
  has(name: string): boolean {
    return this.facts.has(name);
  }
  get(name: string): unknown {
    const f = this.facts.get(name);
    if (!f) throw new Error(`abi.c printed no "${name}" (a test bug, or a header without it)`);
    return f.value;
  }
  int(name: string): number {
    const v = this.get(name);
    if (typeof v !== 'number') throw new Error(`abi.c printed ${name} as ${inspect(v)}, not a number`);
    return v;
  }
  header(name: string): string {
    return this.facts.get(name)?.header ?? '?';
  }
  /** Names printed from `header`, in order. */
  namesIn(header: string): string[] {
    return [...this.facts].filter(([, f]) => f.header === header).map(([n]) => n);
  }
  /** `[offset, size]` of each field of `struct s`, in offset order. */
  fields(s: string): { name: string; offset: number; size: number }[] {
    return [...this.facts]
      .filter(([n]) => n.startsWith(`${s}.`) && Array.isArray(this.facts.get(n)?.value))
      .map(([n, f]) => {
        const [offset, size] = f.value as [number, number];
        return { name: n.slice(s.length + 1), offset, size };
      })
      .sort((a, b) => a.offset - b.offset);
  }
}

function parseFacts(out: string): XenFacts {
  const facts = new Map<string, XenFact>();
  let header = '?';
  for (const line of out.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('@header ')) {
      header = line.slice('@header '.length);
      continue;
    }
    const tab = line.indexOf('\t');
    if (tab < 0) throw new Error(`abi.c printed a line without a tab: ${JSON.stringify(line)}`);
    const name = line.slice(0, tab);
    if (facts.has(name)) throw new Error(`abi.c printed ${name} twice`);
    facts.set(name, { value: JSON.parse(line.slice(tab + 1)) as unknown, header });
  }
  return new XenFacts(facts);
}

let workDir: string | undefined;
let xen: XenFacts;
/** xs_wire.h names XS_GET_FEATURE .. XS_SET_QUOTA (newer than Xen 4.17's header). */
let xsFeatureQuota = false;
let compileMs = 0;

function compileAndRun(): XenFacts {
  if (MISSING.length > 0) {
    throw new Error(`CI is set but ${MISSING.join('; ')}: the Xen ABI header comparison must run in CI`);
  }
  const t0 = Date.now();
  workDir = mkdtempSync(join(tmpdir(), 'abi-h-'));
  // Enumerators cannot be tested with #ifdef: ask the compiler whether the header has them.
  const probe = spawnSync(CC, ['-std=gnu11', '-fsyntax-only', '-x', 'c', '-'], {
    input: '#include <stdint.h>\n#include <xen/io/xs_wire.h>\nint t[] = { XS_GET_FEATURE, XS_SET_FEATURE, XS_GET_QUOTA, XS_SET_QUOTA };\n',
    encoding: 'utf8',
  });
  xsFeatureQuota = probe.status === 0;
  const bin = join(workDir, 'abi');
  const args = ['-std=gnu11', '-O0', '-Wall', '-Wextra', '-Werror', ...(xsFeatureQuota ? ['-DHAVE_XS_FEATURE_QUOTA'] : []), SRC, '-o', bin];
  try {
    execFileSync(CC, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`compiling the ABI probe failed: ${CC} ${args.join(' ')}\n${stderr || String(e)}`);
  }
  const r = spawnSync(bin, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${bin} exited with ${r.status ?? r.signal}: ${r.stderr}`);
  compileMs = Date.now() - t0;
  return parseFacts(r.stdout);
}

// ---------------------------------------------------------------------------------------------
// pvsim's side and the comparison.

const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : inspect(v, { breakLength: Infinity, depth: 4 }));

/** Every fact compared in this run; pvsim names compared by value, and those a relationship covers. */
const tally = { compared: 0, byName: 0, relationships: 0 };
const comparedNames = new Set<string>();
const relatedNames = new Set<string>();

/**
 * One group of comparisons. Mismatches are collected, so one run names every wrong constant;
 * `done` fails with all of them: `NAME: pvsim has X, Xen's xen/errno.h has Y (XEN_NAME)`.
 */
class Compare {
  readonly mismatches: string[] = [];
  /** `counted`: false for the self-test, which must not inflate the summary. */
  constructor(readonly counted = true) {}
  /** `name` is pvsim's; `xenName` says what the Xen value is, when not the same name. */
  same(name: string, pvsim: unknown, xenValue: unknown, header: string, xenName?: string): void {
    if (this.counted) {
      tally.compared++;
      comparedNames.add(name);
    }
    if (!isDeepStrictEqual(pvsim, xenValue)) {
      this.mismatches.push(`${name}: pvsim has ${show(pvsim)}, Xen's ${header} has ${show(xenValue)}${xenName && xenName !== name ? ` (${xenName})` : ''}`);
    }
  }
  /**
   * A relationship pvsim documents instead of equality; `detail` gives both sides' values,
   * `about` the pvsim constants it covers.
   */
  holds(what: string, ok: boolean, detail: string, about: readonly string[] = []): void {
    if (this.counted) {
      tally.compared++;
      tally.relationships++;
      for (const n of about) relatedNames.add(n);
    }
    if (!ok) this.mismatches.push(`${what}: does not hold (${detail})`);
  }
  done(): void {
    expect(this.mismatches, `${this.mismatches.length} mismatch(es) with Xen's headers:\n  ${this.mismatches.join('\n  ')}\n`).toEqual([]);
  }
}

type Module = Readonly<Record<string, unknown>>;
const MODULES: readonly (readonly [string, Module])[] = [
  ['@pvsim/abi', abi],
  ['@pvsim/ring', ring],
  ['@pvsim/blkif', blkif],
  ['@pvsim/hypervisor', hypervisor],
  ['@pvsim/xenstore', xenstore],
];

interface PvsimConst {
  readonly module: string;
  readonly name: string;
  readonly value: number | string;
}
/** pvsim's exported numbers and strings (a name re-exported with the same value counts once). */
function scalarExports(modules: readonly (readonly [string, Module])[]): PvsimConst[] {
  const seen = new Map<string, PvsimConst[]>();
  for (const [module, m] of modules) {
    for (const [name, value] of Object.entries(m)) {
      if (typeof value !== 'number' && typeof value !== 'string') continue;
      const prior = seen.get(name) ?? [];
      if (prior.some((p) => p.value === value)) continue;
      seen.set(name, [...prior, { module, name, value }]);
    }
  }
  return [...seen.values()].flat();
}

/** The header's name for a pvsim constant: the same, or `XEN_<name>` for an errno (xen/errno.h). */
function xenNameOf(c: PvsimConst, facts: XenFacts): string | null {
  if (facts.has(c.name)) return c.name;
  if (/^E[A-Z0-9]+$/.test(c.name) && facts.has(`XEN_${c.name}`)) return `XEN_${c.name}`;
  return null;
}

/**
 * pvsim's `XEN_IO_PROTO_ABI_NATIVE` is x86_64 by decision (pvsim simulates an x86_64 host and
 * writes 64-bit layouts), whatever machine runs the tests; protocols.h's is the compiler's.
 */
const ARCH_DEPENDENT = new Set(['XEN_IO_PROTO_ABI_NATIVE']);

/** Compare every pvsim constant that `header` defines under the same name. */
function compareByName(cmp: Compare, facts: XenFacts, consts: readonly PvsimConst[], header: string): void {
  for (const c of consts) {
    const xenName = xenNameOf(c, facts);
    if (xenName === null || facts.header(xenName) !== header || ARCH_DEPENDENT.has(c.name)) continue;
    cmp.same(c.name, c.value, facts.get(xenName), header, xenName);
    if (cmp.counted) tally.byName++;
  }
}

/**
 * Names the by-name pass must compare: the families this suite exists for. A name missing here
 * means pvsim stopped exporting it or abi.c stopped printing it.
 */
const REQUIRED = [
  ...['READ', 'WRITE', 'WRITE_BARRIER', 'FLUSH_DISKCACHE', 'RESERVED_1', 'DISCARD', 'INDIRECT'].map((s) => `BLKIF_OP_${s}`),
  ...['OKAY', 'ERROR', 'EOPNOTSUPP'].map((s) => `BLKIF_RSP_${s}`),
  'BLKIF_MAX_SEGMENTS_PER_REQUEST',
  'BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST',
  'BLKIF_DISCARD_SECURE',
  'VDISK_CDROM',
  'VDISK_REMOVABLE',
  'VDISK_READONLY',
  'XEN_IO_PROTO_ABI_X86_32',
  'XEN_IO_PROTO_ABI_X86_64',
  'XEN_IO_PROTO_ABI_ARM',
  'XEN_PAGE_SHIFT',
  ...['okay', 'general_error', 'bad_domain', 'bad_gntref', 'bad_handle', 'bad_virt_addr', 'bad_dev_addr', 'no_device_space', 'permission_denied', 'bad_page', 'bad_copy_arg', 'address_too_big', 'eagain', 'no_space'].map((s) => `GNTST_${s}`),
  ...['invalid', 'permit_access', 'accept_transfer', 'transitive', 'type_mask', 'readonly', 'reading', 'writing', 'PWT', 'PCD', 'PAT', 'sub_page'].map((s) => `GTF_${s}`),
  ...['device_map', 'host_map', 'readonly', 'application_map', 'contains_pte'].map((s) => `GNTMAP_${s}`),
  ...['map_grant_ref', 'unmap_grant_ref', 'setup_table', 'dump_table', 'transfer', 'copy', 'query_size', 'unmap_and_replace'].map((s) => `GNTTABOP_${s}`),
  'GNTCOPY_source_gref',
  'GNTCOPY_dest_gref',
  'GNTTAB_NR_RESERVED_ENTRIES',
  ...['closed', 'unbound', 'interdomain', 'pirq', 'virq', 'ipi'].map((s) => `EVTCHNSTAT_${s}`),
  'DOMID_SELF',
  'DOMID_FIRST_RESERVED',
  ...['EPERM', 'ENOENT', 'ESRCH', 'ENOMEM', 'EBUSY', 'EEXIST', 'EINVAL', 'ENOSPC'],
  ...['CONTROL', 'DIRECTORY', 'READ', 'GET_PERMS', 'WATCH', 'UNWATCH', 'TRANSACTION_START', 'TRANSACTION_END', 'INTRODUCE', 'RELEASE', 'GET_DOMAIN_PATH', 'WRITE', 'MKDIR', 'RM', 'SET_PERMS', 'WATCH_EVENT', 'ERROR', 'IS_DOMAIN_INTRODUCED', 'RESUME', 'SET_TARGET', 'RESET_WATCHES', 'DIRECTORY_PART', 'INVALID'].map((s) => `XS_${s}`),
  'XENSTORE_PAYLOAD_MAX',
  'XENSTORE_ABS_PATH_MAX',
  'XENSTORE_REL_PATH_MAX',
  ...['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'].map((s) => `XenbusState${s}`),
];

/**
 * pvsim's `XsError` is a union type, not a table (errors travel by name, so it has no order). The
 * list below must name it exactly (checked by the compiler) and is compared with `xsd_errors[]`.
 */
const XS_ERRORS = [
  'EINVAL', 'EACCES', 'EEXIST', 'EISDIR', 'ENOENT', 'ENOMEM', 'ENOSPC', 'EIO',
  'ENOTEMPTY', 'ENOSYS', 'EROFS', 'EBUSY', 'EAGAIN', 'EISCONN', 'E2BIG', 'EPERM',
] as const satisfies readonly XsError[];
type XsErrorUnlisted = Exclude<XsError, (typeof XS_ERRORS)[number]>;
/** Fails to compile when `XsError` gains a name the list above lacks. */
const xsErrorsListed: [XsErrorUnlisted] extends [never] ? true : XsErrorUnlisted = true;

const consts = scalarExports(MODULES);
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

describe.skipIf(SKIP)(`Xen ABI headers (${INCLUDE_DIR}/xen) against pvsim's constants`, () => {
  const started = Date.now();

  beforeAll(() => {
    xen = compileAndRun();
  });

  afterAll(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    const xenish = /^(BLKIF_|VDISK_|XEN_|GNT|GTF_|EVTCHN|DOMID_|XS_|XSD_|XENSTORE_|Xenbus)/;
    const names = (keep: (n: string) => boolean) => [...new Set(consts.map((c) => c.name).filter((n) => xenish.test(n) && keep(n)))].sort().join(' ');
    const related = names((n) => !comparedNames.has(n) && relatedNames.has(n));
    const notCompared = names((n) => !comparedNames.has(n) && !relatedNames.has(n));
    console.log(
      `[abi-h] ${tally.compared} facts compared (${tally.byName} pvsim constants by name, ${tally.relationships} relationships); ` +
        `xs_wire.h ${xsFeatureQuota ? 'names' : 'predates'} XS_GET_FEATURE..XS_SET_QUOTA; compile+run ${compileMs} ms, ${((Date.now() - started) / 1000).toFixed(1)} s in all. ` +
        `Checked by a relationship only: ${related}. Xen-style pvsim names with no header counterpart (not compared): ${notCompared}`,
    );
  });

  describe('every pvsim constant the headers define under the same name', () => {
    for (const header of HEADERS) {
      it(header, () => {
        const cmp = new Compare();
        compareByName(cmp, xen, consts, header);
        cmp.done();
      });
    }

    it('covers every required name (pvsim still exports it and abi.c still prints it)', () => {
      const byName = new Set(consts.filter((c) => xenNameOf(c, xen) !== null).map((c) => c.name));
      const missing = REQUIRED.filter((n) => !byName.has(n));
      expect(missing, `not compared by name: ${missing.join(', ')}`).toEqual([]);
    });
  });

  describe('xen/io/blkif.h', () => {
    it('struct sizes: the C request pvsim sizes rings from, and the 115-byte msgpack slot that keeps Xen ring sizes', () => {
      const cmp = new Compare();
      const h = 'xen/io/blkif.h';
      const req = xen.int('sizeof(struct blkif_request)');
      const entry = xen.int('sizeof(union blkif_sring_entry)');
      cmp.same('BLKIF_C_REQUEST_BYTES', blkif.BLKIF_C_REQUEST_BYTES, req, h, 'sizeof(struct blkif_request)');
      cmp.same('BLKIF_C_REQUEST_BYTES', blkif.BLKIF_C_REQUEST_BYTES, entry, h, 'sizeof(union blkif_sring_entry)');
      // Deliberate difference (packages/blkif/src/codec.ts): a slot holds one msgpack message of
      // up to BLKIF_SLOT_BYTES (115) bytes, more than C's 112-byte union entry, because the
      // largest legal request needs 115. __RD32 rounds entries down to a power of two, so a page
      // still holds Xen's 32 entries, and 2^order pages Xen's 32·2^order: assert exactly that.
      cmp.holds(
        'BLKIF_SLOT_BYTES >= sizeof(union blkif_sring_entry)',
        blkif.BLKIF_SLOT_BYTES >= entry,
        `BLKIF_SLOT_BYTES = ${blkif.BLKIF_SLOT_BYTES}, sizeof = ${entry}`,
        ['BLKIF_SLOT_BYTES'],
      );
      const cEntries = xen.get('__CONST_RING_SIZE(blkif)') as number[];
      expect(cEntries.length, '__CONST_RING_SIZE(blkif) printed for too few orders').toBeGreaterThan(abi.RING_ORDER_MAX);
      for (let order = 0; order <= abi.RING_ORDER_MAX; order++) {
        const c = cEntries[order]!;
        cmp.same(`ringEntries(${order}, BLKIF_SLOT_BYTES)`, abi.ringEntries(order, blkif.BLKIF_SLOT_BYTES), c, h, `__CONST_RING_SIZE(blkif, ${4096 << order})`);
        cmp.same(`ringEntries(${order}, BLKIF_C_REQUEST_BYTES)`, abi.ringEntries(order, blkif.BLKIF_C_REQUEST_BYTES), c, h, `__CONST_RING_SIZE(blkif, ${4096 << order})`);
        cmp.same(`allocateBlkifSharedRing(${order}).size`, blkif.allocateBlkifSharedRing(order).size, c, h, `__CONST_RING_SIZE(blkif, ${4096 << order})`);
      }
      cmp.same('entries in one 4 KiB blkif page (pvsim documents 32)', 32, cEntries[0], h, '__CONST_RING_SIZE(blkif, 4096)');
      cmp.done();
    });

    it("the msgpack records carry exactly the C structs' fields, under Xen's names", () => {
      const cmp = new Compare();
      const shapes = blkif.BLKIF_STRUCTURES.map((s) => [...s].sort());
      for (const s of ['blkif_request', 'blkif_request_segment', 'blkif_request_discard', 'blkif_response']) {
        // abi.c must list every field: between fields and at the end, nothing but padding.
        let end = 0;
        for (const f of xen.fields(s)) {
          expect(f.offset - end, `abi.c misses a field of struct ${s} before ${f.name}`).toBeLessThan(8);
          end = f.offset + f.size;
        }
        expect(xen.int(`sizeof(struct ${s})`) - end, `abi.c misses a field at the end of struct ${s}`).toBeLessThan(8);
        const cFields = xen.fields(s).map((f) => f.name);
        const found = shapes.some((p) => isDeepStrictEqual(p, [...cFields].sort()));
        cmp.holds(`a BLKIF_STRUCTURES record has exactly struct ${s}'s fields`, found, `C: ${cFields.join(', ')}; pvsim: ${blkif.BLKIF_STRUCTURES.map((p) => `[${p.join(', ')}]`).join(' ')}`);
      }
      // The segment is 8 bytes (gref u32, first_sect u8, last_sect u8, padding); seg[] is
      // BLKIF_MAX_SEGMENTS_PER_REQUEST of them; an indirect page holds PAGE_SIZE / 8 segments.
      const segBytes = xen.int('sizeof(struct blkif_request_segment)');
      const seg = xen.fields('blkif_request').find((f) => f.name === 'seg');
      cmp.holds('seg[] holds BLKIF_MAX_SEGMENTS_PER_REQUEST segments', seg?.size === blkif.BLKIF_MAX_SEGMENTS_PER_REQUEST * segBytes, `sizeof seg = ${seg?.size}, ${blkif.BLKIF_MAX_SEGMENTS_PER_REQUEST} × ${segBytes}`);
      // MAX_INDIRECT_SEGMENTS is Linux blkback's default, not a header constant; it must fit in
      // BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST pages of segments.
      const perPage = abi.XEN_PAGE_SIZE / segBytes;
      cmp.holds(
        'MAX_INDIRECT_SEGMENTS <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST × (XEN_PAGE_SIZE / sizeof(struct blkif_request_segment))',
        blkif.MAX_INDIRECT_SEGMENTS <= xen.int('BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST') * perPage,
        `${blkif.MAX_INDIRECT_SEGMENTS} vs ${xen.int('BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST')} × ${perPage}`,
        ['MAX_INDIRECT_SEGMENTS'],
      );
      cmp.done();
    });

    it('sectors: 512-byte units, a frame of BLKIF_SECTORS_PER_FRAME, first_sect/last_sect fit their C bytes', () => {
      // blkif.h has no macro for the 512-byte unit (it is prose: "sector-based quantities",
      // sector-size at least 512); what the header does fix is the frame (XEN_PAGE_SHIFT) and the
      // width of first_sect/last_sect.
      const cmp = new Compare();
      const page = 1 << xen.int('XEN_PAGE_SHIFT');
      cmp.holds(
        'BLKIF_SECTOR_BYTES × BLKIF_SECTORS_PER_FRAME = 1 << XEN_PAGE_SHIFT',
        blkif.BLKIF_SECTOR_BYTES * blkif.BLKIF_SECTORS_PER_FRAME === page,
        `${blkif.BLKIF_SECTOR_BYTES} × ${blkif.BLKIF_SECTORS_PER_FRAME} vs ${page}`,
        ['BLKIF_SECTOR_BYTES', 'BLKIF_SECTORS_PER_FRAME'],
      );
      cmp.same('XEN_PAGE_SIZE', abi.XEN_PAGE_SIZE, page, 'xen/io/ring.h', '1 << XEN_PAGE_SHIFT');
      for (const f of ['first_sect', 'last_sect']) {
        const size = xen.fields('blkif_request_segment').find((x) => x.name === f)?.size ?? 0;
        cmp.holds(`BLKIF_SECTORS_PER_FRAME - 1 fits blkif_request_segment.${f}`, blkif.BLKIF_SECTORS_PER_FRAME - 1 < 2 ** (8 * size), `${size}-byte field`);
      }
      cmp.done();
    });

    it("field widths: validateRequest accepts each field's C maximum and refuses one more", () => {
      const cmp = new Compare();
      const disk = { sectors: 1 << 20, readOnly: false };
      const base = () => ({ operation: blkif.BLKIF_OP_READ, nr_segments: 1, handle: 0, id: 1, sector_number: 0, seg: [{ gref: 1, first_sect: 0, last_sect: 7 }] });
      const width = (s: string, f: string): number => {
        const x = xen.fields(s).find((y) => y.name === f);
        if (!x) throw new Error(`abi.c printed no ${s}.${f}`);
        return x.size;
      };
      const verdict = (req: unknown): string => {
        const r = blkif.validateRequest(req, disk);
        return r.ok ? 'ok' : r.error.kind === 'reject' ? r.error.code : 'violation';
      };
      const cases: { field: string; bytes: number; set: (r: ReturnType<typeof base>, v: number) => void; refused: string }[] = [
        { field: 'blkif_request.handle', bytes: width('blkif_request', 'handle'), set: (r, v) => void (r.handle = v), refused: 'bad-field' },
        { field: 'blkif_request_segment.gref', bytes: width('blkif_request_segment', 'gref'), set: (r, v) => void (r.seg[0]!.gref = v), refused: 'bad-segment' },
        // 255 segments is a valid u8 but too many (bad-nr-segments); 256 is not a u8 at all.
        { field: 'blkif_request.nr_segments', bytes: width('blkif_request', 'nr_segments'), set: (r, v) => void (r.nr_segments = v), refused: 'bad-field' },
      ];
      for (const c of cases) {
        const max = 2 ** (8 * c.bytes) - 1;
        const atMax = base();
        c.set(atMax, max);
        const over = base();
        c.set(over, max + 1);
        const want = c.field.endsWith('nr_segments') ? 'bad-nr-segments' : 'ok';
        cmp.same(`validateRequest with ${c.field} = ${max}`, verdict(atMax), want, 'xen/io/blkif.h', `a ${c.bytes}-byte field`);
        cmp.same(`validateRequest with ${c.field} = ${max + 1}`, verdict(over), c.refused, 'xen/io/blkif.h', `a ${c.bytes}-byte field`);
      }
      cmp.done();
    });

    it('XEN_IO_PROTO_ABI_NATIVE: x86_64 by decision, which is protocols.h\'s native on x86_64', () => {
      const cmp = new Compare();
      cmp.same('XEN_IO_PROTO_ABI_NATIVE', blkif.XEN_IO_PROTO_ABI_NATIVE, xen.get('XEN_IO_PROTO_ABI_X86_64'), 'xen/io/protocols.h', 'XEN_IO_PROTO_ABI_X86_64');
      if (xen.get('arch') === 'x86_64') cmp.same('XEN_IO_PROTO_ABI_NATIVE', blkif.XEN_IO_PROTO_ABI_NATIVE, xen.get('XEN_IO_PROTO_ABI_NATIVE'), 'xen/io/protocols.h');
      cmp.done();
    });
  });

  describe('xen/grant_table.h', () => {
    it('GNTST_*: all of them, in order (gntstName names exactly the header\'s statuses)', () => {
      const cmp = new Compare();
      const h = 'xen/grant_table.h';
      const count = xen.int('GNTTABOP_error_msgs.length');
      const cNames = xen.namesIn(h).filter((n) => n.startsWith('GNTST_'));
      const nameOf = new Map(cNames.map((n) => [xen.int(n), n]));
      cmp.holds('the header\'s GNTST_* are 0, -1, …, -(GNTTABOP_error_msgs.length - 1)', cNames.length === count && cNames.every((n) => xen.int(n) <= 0 && xen.int(n) > -count), `${cNames.length} names, ${count} messages`);
      for (let k = 0; k < count; k++) cmp.same(`gntstName(${-k})`, abi.gntstName(-k), nameOf.get(-k), h, `the GNTST_* equal to ${-k}`);
      cmp.same(`gntstName(${-count})`, abi.gntstName(-count), `GNTST_${-count}`, h, 'no status beyond GNTTABOP_error_msgs');
      const pvsimCount = Object.keys(abi).filter((n) => n.startsWith('GNTST_')).length;
      cmp.same('number of GNTST_* pvsim exports', pvsimCount, count, h, 'GNTTABOP_error_msgs.length');
      cmp.done();
    });

    it('struct grant_entry_v1: its size, and the bytes pvsim\'s hypervisor keeps for an entry the guest granted', () => {
      const cmp = new Compare();
      const h = 'xen/grant_table.h';
      cmp.same('GRANT_ENTRY_V1_BYTES', abi.GRANT_ENTRY_V1_BYTES, xen.int('sizeof(struct grant_entry_v1)'), h, 'sizeof(struct grant_entry_v1)');
      // The hypervisor keeps each entry as two u32 words (flags | domid << 16, frame), which on a
      // little-endian host must be the guest-visible v1 layout: compare the bytes.
      const ex = xen.get('grant_entry_v1.example') as { flags: number; domid: number; frame: number; bytes: string };
      const spec = hypervisor.createHypervisorSpec({ frames: 16, maxDomains: 2, gfnsPerDomain: ex.frame + 1, grantEntries: 16, maptrackEntries: 4, evtchnPorts: 32 });
      const hv = new hypervisor.Hypervisor(spec);
      const events: EventEmitter = { emit: () => 0 };
      expect(hv.toolstack(events).domainCreate({ domid: 0, name: 'dom0', memoryPages: 8, privileged: true })).toBe(0);
      const dom0 = hv.client(0, events);
      const ref = abi.GNTTAB_NR_RESERVED_ENTRIES + 1;
      const readonly = (ex.flags & abi.GTF_readonly) !== 0;
      expect(dom0.grantForeignAccess(ref, ex.domid, ex.frame, readonly)).toBe(0);
      const bytes = new Uint8Array(spec.grant, (dom0.domid * spec.config.grantEntries + ref) * abi.GRANT_ENTRY_V1_BYTES, abi.GRANT_ENTRY_V1_BYTES);
      cmp.same(`grant entry bytes (flags ${ex.flags}, domid ${ex.domid}, frame ${ex.frame})`, hex(bytes), ex.bytes, h, 'struct grant_entry_v1 as C lays it out');
      cmp.same('client.grantEntry(ref)', dom0.grantEntry(ref), { flags: ex.flags, domid: ex.domid, frame: ex.frame }, h, 'struct grant_entry_v1');
      cmp.done();
    });
  });

  describe('xen/xen.h and xen/errno.h', () => {
    it('errnoName names only what xen/errno.h gives that number', () => {
      const cmp = new Compare();
      const byValue = new Map<number, string[]>();
      for (const n of xen.namesIn('xen/errno.h')) byValue.set(xen.int(n), [...(byValue.get(xen.int(n)) ?? []), n.slice('XEN_'.length)]);
      for (const [v, names] of byValue) {
        const got = /^(\S+) \(/.exec(hypervisor.errnoName(-v))?.[1];
        if (got === undefined || got === 'errno') continue;
        cmp.holds(`errnoName(${-v}) = ${got}`, names.includes(got), `xen/errno.h: ${v} is ${names.join('/')}`);
      }
      cmp.done();
    });

    it('domid_t, grant_ref_t and evtchn_port_t widths match pvsim\'s branded ids', () => {
      const cmp = new Compare();
      const fits = (ok: (n: number) => boolean, bytes: number) => ok(2 ** (8 * bytes) - 1) && !ok(2 ** (8 * bytes));
      cmp.holds('isU16 is domid_t', fits(abi.isU16, xen.int('sizeof(domid_t)')), `sizeof(domid_t) = ${xen.int('sizeof(domid_t)')}`);
      cmp.holds('isU32 is grant_ref_t', fits(abi.isU32, xen.int('sizeof(grant_ref_t)')), `sizeof(grant_ref_t) = ${xen.int('sizeof(grant_ref_t)')}`);
      cmp.holds('isU32 is evtchn_port_t', fits(abi.isU32, xen.int('sizeof(evtchn_port_t)')), `sizeof(evtchn_port_t) = ${xen.int('sizeof(evtchn_port_t)')}`);
      cmp.holds('DOMID_SELF is a domid_t', abi.isU16(abi.DOMID_SELF), `DOMID_SELF = ${abi.DOMID_SELF}`);
      cmp.done();
    });
  });

  describe('xen/io/xenbus.h', () => {
    it('XenbusState: every state, its number and its name (xenbusStrState)', () => {
      const cmp = new Compare();
      const h = 'xen/io/xenbus.h';
      const cStates = xen.namesIn(h).filter((n) => n.startsWith('XenbusState'));
      const keys = Object.keys(xenstore.XenbusState);
      cmp.same('XenbusState keys', [...keys].sort(), cStates.map((n) => n.slice('XenbusState'.length)).sort(), h, 'enum xenbus_state');
      for (const n of cStates) {
        const key = n.slice('XenbusState'.length);
        const v = xen.int(n);
        cmp.same(`XenbusState.${key}`, (xenstore.XenbusState as Record<string, number>)[key], v, h, n);
        cmp.same(`xenbusStrState(${v})`, xenstore.xenbusStrState(v), key, h, n);
        cmp.same(`isXenbusState(${v})`, xenstore.isXenbusState(v), true, h, n);
      }
      const max = Math.max(...cStates.map((n) => xen.int(n)));
      cmp.same(`isXenbusState(${max + 1})`, xenstore.isXenbusState(max + 1), false, h, 'one past the last state');
      cmp.done();
    });
  });

  describe('xen/io/xs_wire.h', () => {
    const h = 'xen/io/xs_wire.h';
    /** Enumerators of xs_wire.h that are not message types. */
    const NOT_TYPES = new Set(['XS_DEBUG', 'XS_TYPE_COUNT', 'XS_INVALID', 'XS_WATCH_PATH', 'XS_WATCH_TOKEN']);

    it('message types: xsOpName names exactly the header\'s types; pvsim\'s newer ones do not collide', () => {
      const cmp = new Compare();
      const count = xen.int('XS_TYPE_COUNT');
      const cTypes = new Map<number, string>();
      for (const n of xen.namesIn(h)) if (n.startsWith('XS_') && !NOT_TYPES.has(n)) cTypes.set(xen.int(n), n);
      cmp.same('XS_CONTROL', xenstore.XS_CONTROL, xen.int('XS_DEBUG'), h, 'XS_DEBUG, its old name');
      for (let v = 0; v < count; v++) {
        // A hole (20: the removed XS_RESTRICT) must stay unnamed.
        cmp.same(`xsOpName(${v})`, xenstore.xsOpName(v), cTypes.get(v) ?? `XS_${v}`, h, cTypes.get(v) ?? `no type ${v}`);
      }
      // pvsim's message types (those xsOpName names) that this header does not know: newer
      // xs_wire.h types (XS_GET_FEATURE .. XS_SET_QUOTA, when the header predates them). They
      // cannot be compared, but must lie past every type this header has and below XS_INVALID.
      for (const c of consts) {
        if (c.module !== '@pvsim/xenstore' || typeof c.value !== 'number' || xenstore.xsOpName(c.value) !== c.name || xen.has(c.name)) continue;
        cmp.holds(`${c.name} (${c.value}) is newer than this xs_wire.h`, c.value >= count && c.value < xen.int('XS_INVALID'), `XS_TYPE_COUNT = ${count}`, [c.name]);
      }
      cmp.done();
    });

    it('struct xsd_sockmsg: its size, and messages byte for byte (encodeMessage, XsWireDecoder, encodeWatchEvent)', () => {
      const cmp = new Compare();
      cmp.same('XSD_SOCKMSG_BYTES', xenstore.XSD_SOCKMSG_BYTES, xen.int('sizeof(struct xsd_sockmsg)'), h, 'sizeof(struct xsd_sockmsg)');
      cmp.same('XS_MESSAGE_MAX', xenstore.XS_MESSAGE_MAX, xen.int('sizeof(struct xsd_sockmsg)') + xen.int('XENSTORE_PAYLOAD_MAX'), h, 'sizeof(struct xsd_sockmsg) + XENSTORE_PAYLOAD_MAX');

      const m = xen.get('xsd_sockmsg.example') as { type: number; req_id: number; tx_id: number; payload: string; bytes: string };
      const payload = Buffer.from(m.payload, 'hex');
      cmp.same('encodeMessage bytes', xenstore.encodeMessage(m.type, m.req_id, m.tx_id, payload).toString('hex'), m.bytes, h, 'struct xsd_sockmsg + payload');
      const dec = new xenstore.XsWireDecoder();
      dec.push(Buffer.from(m.bytes, 'hex'));
      const got = dec.next();
      cmp.same('XsWireDecoder on C bytes', got && { type: got.type, reqId: got.reqId, txId: got.txId, payload: got.payload.toString('hex') }, { type: m.type, reqId: m.req_id, txId: m.tx_id, payload: m.payload }, h, 'struct xsd_sockmsg');

      // XS_WATCH_EVENT's strings in enum xs_watch_type order (XS_WATCH_PATH, XS_WATCH_TOKEN).
      const w = xen.get('xs_watch_event.example') as { path: string; token: string; bytes: string };
      cmp.same('encodeWatchEvent bytes', xenstore.encodeWatchEvent({ path: w.path, token: w.token })?.toString('hex'), w.bytes, h, 'XS_WATCH_EVENT with XS_WATCH_PATH, XS_WATCH_TOKEN');
      cmp.done();
    });

    it('xsd_errors[]: the same error names as XsError, sent as "<name>\\0", with errno numbers as pvsim\'s', () => {
      const cmp = new Compare();
      expect(xsErrorsListed).toBe(true);
      const table = xen.get('xsd_errors') as [string, number][];
      const cNames = table.map(([n]) => n);
      cmp.same('XsError (as a set)', [...XS_ERRORS].sort(), [...cNames].sort(), h, 'xsd_errors[]');
      for (const [name, errnum] of table) {
        const bytes = xenstore.encodeError({ reqId: 1, txId: 0 }, name as XsError);
        cmp.same(`encodeError(${name}) payload`, bytes.subarray(xenstore.XSD_SOCKMSG_BYTES).toString('latin1'), `${name}\0`, h, 'XSD_ERROR(x).errstring');
        cmp.same(`encodeError(${name}) type`, bytes.readUInt32LE(0), xen.int('XS_ERROR'), h, 'XS_ERROR');
        const own = (abi as Module)[name];
        if (typeof own === 'number') cmp.same(name, own, errnum, h, `xsd_errors[].errnum (host errno)`);
      }
      cmp.done();
    });
  });

  describe('the comparison can fail', () => {
    it('a wrong constant is reported by name with both values', () => {
      const cmp = new Compare(false);
      const wrong: PvsimConst[] = [{ module: 'test', name: 'BLKIF_OP_DISCARD', value: 6 }, { module: 'test', name: 'EPERM', value: 2 }];
      compareByName(cmp, xen, wrong, 'xen/io/blkif.h');
      compareByName(cmp, xen, wrong, 'xen/errno.h');
      expect(cmp.mismatches).toEqual([
        "BLKIF_OP_DISCARD: pvsim has 6, Xen's xen/io/blkif.h has 5",
        "EPERM: pvsim has 2, Xen's xen/errno.h has 1 (XEN_EPERM)",
      ]);
      expect(() => cmp.done()).toThrow(/2 mismatch\(es\) with Xen's headers:\n {2}BLKIF_OP_DISCARD: pvsim has 6/);
    });
  });
});

// Keep a visible trace in the report when the suite is skipped locally.
if (SKIP) {
  describe("Xen ABI headers against pvsim's constants", () => {
    it.skip(SKIP_REASON, () => {});
  });
}
