/**
 * XenStore keys of a blkif device (blkif.h "Backend XenStore Nodes" / "Frontend XenStore Nodes").
 *
 * Builders turn typed parameters into the key → value map one end writes under its own device
 * directory (keys are relative: `sectors`, `ring-ref0`, …). Parsers check what the *other* end
 * published: they never throw, parse decimal numbers strictly (no sign, no leading zeros, no
 * spaces, in range), and say whose fault a bad value is.
 */
import { assert, err, isU32, ok, RING_ORDER_MAX, type EvtchnPort, type GrantRef, type Result } from '@pvsim/abi';
import {
  VDISK_CDROM,
  VDISK_READONLY,
  VDISK_REMOVABLE,
  XEN_IO_PROTO_ABI_ARM,
  XEN_IO_PROTO_ABI_NATIVE,
  XEN_IO_PROTO_ABI_X86_32,
  XEN_IO_PROTO_ABI_X86_64,
  BLKIF_SECTOR_BYTES,
} from './constants.js';

/** What a parser reads: a directory listing, as a Map or a plain record of own keys. */
export type XsEntries = ReadonlyMap<string, string> | Readonly<Record<string, string>>;

function get(e: XsEntries, k: string): string | undefined {
  if (e instanceof Map) return (e as ReadonlyMap<string, string>).get(k);
  const d = Object.getOwnPropertyDescriptor(e, k);
  return d && typeof d.value === 'string' ? d.value : undefined;
}
function keysOf(e: XsEntries): string[] {
  return e instanceof Map ? [...(e as ReadonlyMap<string, string>).keys()] : Object.keys(e);
}

const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
/** A strict decimal in 0..max, or the problem. */
export function parseDecimal(v: string, max: number): Result<number, string> {
  if (!DECIMAL.test(v)) return err(`${JSON.stringify(v.length > 24 ? `${v.slice(0, 24)}…` : v)} is not a decimal number`);
  const n = Number(v);
  if (!(n <= max)) return err(`${v} is above ${max}`);
  return ok(n);
}

type Who = 'frontend' | 'backend';

/** Read an optional strict decimal key; `dflt` when absent. */
function num(e: XsEntries, who: Who, key: string, max: number, dflt?: number): Result<number, string> {
  const v = get(e, key);
  if (v === undefined) return dflt === undefined ? err(`${who} gave us no "${key}"`) : ok(dflt);
  const r = parseDecimal(v, max);
  return r.ok ? r : err(`${who} gave us "${key}" = ${r.error}`);
}
function flag(e: XsEntries, who: Who, key: string): Result<boolean, string> {
  const v = get(e, key);
  if (v === undefined) return ok(false);
  if (v === '0' || v === '1') return ok(v === '1');
  return err(`${who} gave us "${key}" = ${JSON.stringify(v)}, not 0 or 1`);
}

const b = (x: boolean): string => (x ? '1' : '0');

// ---------------------------------------------------------------------------------------------
// Backend

/** Keys the toolstack (or hotplug script) writes in the backend directory. */
export interface BlkbackToolstackParams {
  readonly mode: 'r' | 'w';
  readonly params: string;
  /** `physical-device`: "MAJOR:MINOR" in hex. */
  readonly physicalDevice?: { readonly major: number; readonly minor: number };
  readonly type?: string;
}

export function buildBackendToolstackKeys(p: BlkbackToolstackParams): Map<string, string> {
  const m = new Map<string, string>([
    ['mode', p.mode],
    ['params', p.params],
  ]);
  if (p.physicalDevice) m.set('physical-device', `${p.physicalDevice.major.toString(16)}:${p.physicalDevice.minor.toString(16)}`);
  if (p.type !== undefined) m.set('type', p.type);
  return m;
}

/** The backend reads its toolstack keys back (they may be written by a less trusted script). */
export function parseBackendToolstackKeys(e: XsEntries): Result<BlkbackToolstackParams, string> {
  const mode = get(e, 'mode');
  if (mode !== 'r' && mode !== 'w') return err(`toolstack gave us "mode" = ${JSON.stringify(mode)}, not "r" or "w"`);
  const params = get(e, 'params');
  if (params === undefined) return err('toolstack gave us no "params"');
  const pd = get(e, 'physical-device');
  let physicalDevice: { major: number; minor: number } | undefined;
  if (pd !== undefined) {
    const m = /^([0-9a-f]{1,8}):([0-9a-f]{1,8})$/.exec(pd);
    if (!m) return err(`toolstack gave us "physical-device" = ${JSON.stringify(pd)}, not MAJOR:MINOR in hex`);
    physicalDevice = { major: parseInt(m[1]!, 16), minor: parseInt(m[2]!, 16) };
  }
  const type = get(e, 'type');
  return ok({ mode, params, ...(physicalDevice ? { physicalDevice } : {}), ...(type !== undefined ? { type } : {}) });
}

/** Written at probe, before InitWait (Linux `xen_blkbk_probe`). */
export interface BlkbackProbeParams {
  /** `max-ring-page-order`, 0..RING_ORDER_MAX. */
  readonly maxRingPageOrder: number;
  /** `feature-max-indirect-segments`; omitted when 0 (no indirect descriptors). */
  readonly featureMaxIndirectSegments?: number;
  readonly multiQueueMaxQueues?: number;
}

export function buildBackendProbeKeys(p: BlkbackProbeParams): Map<string, string> {
  assert(Number.isInteger(p.maxRingPageOrder) && p.maxRingPageOrder >= 0 && p.maxRingPageOrder <= RING_ORDER_MAX, `max-ring-page-order ${p.maxRingPageOrder} not in 0..${RING_ORDER_MAX}`);
  const m = new Map<string, string>([['max-ring-page-order', String(p.maxRingPageOrder)]]);
  if (p.featureMaxIndirectSegments) m.set('feature-max-indirect-segments', String(p.featureMaxIndirectSegments));
  if (p.multiQueueMaxQueues !== undefined) m.set('multi-queue-max-queues', String(p.multiQueueMaxQueues));
  return m;
}

/** Written at connect, before Connected (Linux `connect()`): the device properties. */
export interface BlkbackDeviceParams {
  /** Size in 512-byte sectors. */
  readonly sectors: number;
  /** Logical sector size in bytes (power of two, >= 512). */
  readonly sectorSize: number;
  readonly physicalSectorSize?: number;
  readonly readOnly: boolean;
  readonly cdrom?: boolean;
  readonly removable?: boolean;
  readonly featureFlushCache: boolean;
  readonly featureBarrier?: boolean;
  readonly featurePersistent: boolean;
  readonly featureDiscard?: boolean;
  readonly discardGranularity?: number;
  readonly discardAlignment?: number;
  readonly discardSecure?: boolean;
}

export function vdiskInfo(p: { readOnly: boolean; cdrom?: boolean; removable?: boolean }): number {
  return (p.cdrom ? VDISK_CDROM : 0) | (p.removable ? VDISK_REMOVABLE : 0) | (p.readOnly ? VDISK_READONLY : 0);
}

const isSectorSize = (n: number): boolean => Number.isInteger(n) && n >= BLKIF_SECTOR_BYTES && n <= 1 << 16 && (n & (n - 1)) === 0;

export function buildBackendConnectKeys(p: BlkbackDeviceParams): Map<string, string> {
  assert(Number.isSafeInteger(p.sectors) && p.sectors >= 0, `sectors ${p.sectors} is not a non-negative integer`);
  assert(isSectorSize(p.sectorSize), `sector-size ${p.sectorSize} is not a power of two >= 512`);
  const m = new Map<string, string>([
    ['feature-flush-cache', b(p.featureFlushCache)],
    ['feature-barrier', b(p.featureBarrier ?? false)],
    ['feature-persistent', b(p.featurePersistent)],
    ['sectors', String(p.sectors)],
    ['info', String(vdiskInfo(p))],
    ['sector-size', String(p.sectorSize)],
    ['physical-sector-size', String(p.physicalSectorSize ?? p.sectorSize)],
  ]);
  if (p.featureDiscard) {
    m.set('feature-discard', '1');
    m.set('discard-granularity', String(p.discardGranularity ?? p.sectorSize));
    m.set('discard-alignment', String(p.discardAlignment ?? 0));
    m.set('discard-secure', b(p.discardSecure ?? false));
  }
  return m;
}

export interface BackendFeatures {
  readonly maxRingPageOrder: number;
  readonly featureMaxIndirectSegments: number;
}

/** The frontend reads the backend's probe keys (before publishing its ring). */
export function parseBackendProbeKeys(e: XsEntries): Result<BackendFeatures, string> {
  const order = num(e, 'backend', 'max-ring-page-order', RING_ORDER_MAX, 0);
  if (!order.ok) return order;
  const ind = num(e, 'backend', 'feature-max-indirect-segments', 0xffff_ffff, 0);
  if (!ind.ok) return ind;
  return ok({ maxRingPageOrder: order.value, featureMaxIndirectSegments: ind.value });
}

export interface BackendDevice {
  readonly sectors: number;
  readonly info: number;
  readonly readOnly: boolean;
  readonly cdrom: boolean;
  readonly removable: boolean;
  readonly sectorSize: number;
  readonly physicalSectorSize: number;
  readonly featureFlushCache: boolean;
  readonly featureBarrier: boolean;
  readonly featurePersistent: boolean;
  readonly featureDiscard: boolean;
  readonly discardGranularity: number;
  readonly discardAlignment: number;
  readonly discardSecure: boolean;
}

/** The frontend reads the backend's device properties once the backend is Connected. */
export function parseBackendConnectKeys(e: XsEntries): Result<BackendDevice, string> {
  const sectors = num(e, 'backend', 'sectors', Number.MAX_SAFE_INTEGER);
  if (!sectors.ok) return sectors;
  const info = num(e, 'backend', 'info', 0xffff_ffff);
  if (!info.ok) return info;
  const ss = num(e, 'backend', 'sector-size', 1 << 16);
  if (!ss.ok) return ss;
  if (!isSectorSize(ss.value)) return err(`backend gave us "sector-size" = ${ss.value}, not a power of two >= 512`);
  const pss = num(e, 'backend', 'physical-sector-size', 1 << 16, ss.value);
  if (!pss.ok) return pss;
  if (!isSectorSize(pss.value) || pss.value < ss.value) return err(`backend gave us "physical-sector-size" = ${pss.value}, not a power of two >= sector-size`);
  const flags: Record<string, boolean> = {};
  for (const k of ['feature-flush-cache', 'feature-barrier', 'feature-persistent', 'feature-discard', 'discard-secure']) {
    const f = flag(e, 'backend', k);
    if (!f.ok) return f;
    flags[k] = f.value;
  }
  const gran = num(e, 'backend', 'discard-granularity', 0xffff_ffff, 0);
  if (!gran.ok) return gran;
  const align = num(e, 'backend', 'discard-alignment', 0xffff_ffff, 0);
  if (!align.ok) return align;
  return ok({
    sectors: sectors.value,
    info: info.value,
    readOnly: (info.value & VDISK_READONLY) !== 0,
    cdrom: (info.value & VDISK_CDROM) !== 0,
    removable: (info.value & VDISK_REMOVABLE) !== 0,
    sectorSize: ss.value,
    physicalSectorSize: pss.value,
    featureFlushCache: flags['feature-flush-cache']!,
    featureBarrier: flags['feature-barrier']!,
    featurePersistent: flags['feature-persistent']!,
    featureDiscard: flags['feature-discard']!,
    discardGranularity: gran.value,
    discardAlignment: align.value,
    discardSecure: flags['discard-secure']!,
  });
}

// ---------------------------------------------------------------------------------------------
// Frontend

export type XenIoProtocol = typeof XEN_IO_PROTO_ABI_X86_32 | typeof XEN_IO_PROTO_ABI_X86_64 | typeof XEN_IO_PROTO_ABI_ARM;

export interface BlkfrontParams {
  /** One grant per ring page; 2^order of them. */
  readonly ringRefs: readonly GrantRef[];
  readonly eventChannel: EvtchnPort;
  readonly protocol?: XenIoProtocol;
  readonly featurePersistent: boolean;
  /** `virtual-device` number (see `vdevNumber`). */
  readonly virtualDevice?: number;
  readonly deviceType?: 'disk' | 'cdrom';
}

/**
 * The frontend's transport keys (Linux `talk_to_blkback`): one page → `ring-ref`; more →
 * `ring-page-order` and `ring-ref0..N-1` (and no `ring-ref`).
 */
export function buildFrontendKeys(p: BlkfrontParams): Map<string, string> {
  const n = p.ringRefs.length;
  const order = Math.log2(n);
  assert(Number.isInteger(order) && order >= 0 && order <= RING_ORDER_MAX, `${n} ring pages: need a power of two up to ${1 << RING_ORDER_MAX}`);
  const m = new Map<string, string>();
  if (n === 1) m.set('ring-ref', String(p.ringRefs[0]));
  else {
    m.set('ring-page-order', String(order));
    p.ringRefs.forEach((r, i) => m.set(`ring-ref${i}`, String(r)));
  }
  m.set('event-channel', String(p.eventChannel));
  m.set('protocol', p.protocol ?? XEN_IO_PROTO_ABI_NATIVE);
  m.set('feature-persistent', b(p.featurePersistent));
  if (p.virtualDevice !== undefined) m.set('virtual-device', String(p.virtualDevice));
  if (p.deviceType !== undefined) m.set('device-type', p.deviceType);
  return m;
}

export interface FrontendTransport {
  readonly ringPageOrder: number;
  readonly ringRefs: readonly GrantRef[];
  readonly eventChannel: EvtchnPort;
  readonly protocol: XenIoProtocol;
  readonly featurePersistent: boolean;
}

/**
 * The backend reads the frontend's transport keys (Linux `connect_ring`). `maxRingPageOrder`
 * is what this backend advertised; anything above it is the frontend's fault (-EINVAL).
 */
export function parseFrontendKeys(e: XsEntries, opts: { readonly maxRingPageOrder: number }): Result<FrontendTransport, string> {
  const proto = get(e, 'protocol') ?? XEN_IO_PROTO_ABI_NATIVE;
  if (proto !== XEN_IO_PROTO_ABI_X86_32 && proto !== XEN_IO_PROTO_ABI_X86_64 && proto !== XEN_IO_PROTO_ABI_ARM) {
    return err(`frontend gave us unknown "protocol" = ${JSON.stringify(proto)}`);
  }
  if (proto !== XEN_IO_PROTO_ABI_NATIVE) return err(`frontend gave us "protocol" = ${proto}; only the native ${XEN_IO_PROTO_ABI_NATIVE} layout is supported`);
  const persistent = flag(e, 'frontend', 'feature-persistent');
  if (!persistent.ok) return persistent;
  const mq = get(e, 'multi-queue-num-queues');
  if (mq !== undefined && mq !== '1') return err(`frontend gave us "multi-queue-num-queues" = ${JSON.stringify(mq)}; this backend offers 1 queue`);
  const order = num(e, 'frontend', 'ring-page-order', 0xffff_ffff, 0);
  if (!order.ok) return order;
  if (order.value > opts.maxRingPageOrder) return err(`frontend gave us "ring-page-order" = ${order.value}, above our max-ring-page-order ${opts.maxRingPageOrder}`);
  const n = 1 << order.value;
  const refKeys = order.value === 0 ? ['ring-ref'] : Array.from({ length: n }, (_, i) => `ring-ref${i}`);
  const ringRefs: GrantRef[] = [];
  for (const k of refKeys) {
    const r = num(e, 'frontend', k, 0xffff_ffff);
    if (!r.ok) return err(`${r.error} (ring-page-order ${order.value} needs ${refKeys.join(', ')})`);
    ringRefs.push(r.value as GrantRef);
  }
  for (const k of keysOf(e)) {
    if (/^ring-ref/.test(k) && !refKeys.includes(k)) return err(`frontend gave us "${k}", which does not match ring-page-order ${order.value}`);
  }
  const ev = num(e, 'frontend', 'event-channel', 0xffff_ffff);
  if (!ev.ok) return ev;
  assert(isU32(ev.value), 'event channel parsed as u32');
  return ok({ ringPageOrder: order.value, ringRefs, eventChannel: ev.value as EvtchnPort, protocol: proto, featurePersistent: persistent.value });
}

/** The backend reads `virtual-device` (a number) from the frontend directory. */
export function parseVirtualDevice(e: XsEntries): Result<number, string> {
  return num(e, 'frontend', 'virtual-device', 0xffff_ffff);
}
