import { describe, expect, it } from 'vitest';
import type { EvtchnPort, GrantRef } from '@pvsim/abi';
import {
  buildBackendConnectKeys,
  buildBackendProbeKeys,
  buildBackendToolstackKeys,
  buildFrontendKeys,
  parseBackendConnectKeys,
  parseBackendProbeKeys,
  parseBackendToolstackKeys,
  parseDecimal,
  parseFrontendKeys,
  parseVirtualDevice,
  VDISK_READONLY,
} from './index.js';

const refs = (n: number) => Array.from({ length: n }, (_, i) => (100 + i) as GrantRef);

describe('backend keys', () => {
  it('builds the probe and connect keys of blkif.h and parses them back', () => {
    const probe = buildBackendProbeKeys({ maxRingPageOrder: 4, featureMaxIndirectSegments: 256 });
    expect(Object.fromEntries(probe)).toEqual({ 'max-ring-page-order': '4', 'feature-max-indirect-segments': '256' });
    expect(parseBackendProbeKeys(probe)).toEqual({ ok: true, value: { maxRingPageOrder: 4, featureMaxIndirectSegments: 256 } });
    const conn = buildBackendConnectKeys({ sectors: 2097152, sectorSize: 512, readOnly: true, featureFlushCache: true, featurePersistent: false, featureDiscard: true });
    expect(Object.fromEntries(conn)).toEqual({
      'feature-flush-cache': '1',
      'feature-barrier': '0',
      'feature-persistent': '0',
      sectors: '2097152',
      info: String(VDISK_READONLY),
      'sector-size': '512',
      'physical-sector-size': '512',
      'feature-discard': '1',
      'discard-granularity': '512',
      'discard-alignment': '0',
      'discard-secure': '0',
    });
    const dev = parseBackendConnectKeys(conn);
    expect(dev.ok && dev.value).toMatchObject({ sectors: 2097152, readOnly: true, cdrom: false, sectorSize: 512, featureFlushCache: true, featureDiscard: true });
  });
  it('toolstack keys: mode, params, physical-device in hex', () => {
    const t = buildBackendToolstackKeys({ mode: 'w', params: '/dev/vg/disk', physicalDevice: { major: 0xfd, minor: 0x10 } });
    expect(t.get('physical-device')).toBe('fd:10');
    expect(parseBackendToolstackKeys(t)).toEqual({ ok: true, value: { mode: 'w', params: '/dev/vg/disk', physicalDevice: { major: 0xfd, minor: 0x10 } } });
    expect(parseBackendToolstackKeys({ mode: 'rw', params: 'x' })).toMatchObject({ ok: false });
    expect(parseBackendToolstackKeys({ mode: 'r', params: 'x', 'physical-device': '8:zz' })).toMatchObject({ ok: false });
  });
  it.each([
    [{ sectors: '-1', info: '0', 'sector-size': '512' }, /"sectors" = "-1" is not a decimal/],
    [{ sectors: '010', info: '0', 'sector-size': '512' }, /"010" is not a decimal/],
    [{ sectors: ' 8', info: '0', 'sector-size': '512' }, /not a decimal/],
    [{ sectors: '8', info: '0', 'sector-size': '1000' }, /not a power of two/],
    [{ sectors: '8', 'sector-size': '512' }, /no "info"/],
    [{ sectors: '8', info: '0', 'sector-size': '512', 'feature-flush-cache': 'yes' }, /not 0 or 1/],
    [{ sectors: '99999999999999999', info: '0', 'sector-size': '512' }, /above/],
  ])('rejects bad backend values %#', (e, re) => {
    const r = parseBackendConnectKeys(e);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatch(/^backend gave us/);
      expect(r.error).toMatch(re);
    }
  });
  it('max-ring-page-order above RING_ORDER_MAX is the backend\'s fault', () => {
    expect(parseBackendProbeKeys({ 'max-ring-page-order': '5' })).toMatchObject({ ok: false });
    expect(parseBackendProbeKeys({})).toEqual({ ok: true, value: { maxRingPageOrder: 0, featureMaxIndirectSegments: 0 } });
  });
});

describe('frontend keys', () => {
  const base = { eventChannel: 9 as EvtchnPort, featurePersistent: true, virtualDevice: 51712 };
  it('one page: ring-ref, no ring-page-order; round trip', () => {
    const k = buildFrontendKeys({ ...base, ringRefs: refs(1) });
    expect(Object.fromEntries(k)).toEqual({ 'ring-ref': '100', 'event-channel': '9', protocol: 'x86_64-abi', 'feature-persistent': '1', 'virtual-device': '51712' });
    expect(parseFrontendKeys(k, { maxRingPageOrder: 0 })).toEqual({
      ok: true,
      value: { ringPageOrder: 0, ringRefs: [100], eventChannel: 9, protocol: 'x86_64-abi', featurePersistent: true },
    });
    expect(parseVirtualDevice(k)).toEqual({ ok: true, value: 51712 });
  });
  it('four pages: ring-page-order 2 and ring-ref0..3; round trip', () => {
    const k = buildFrontendKeys({ ...base, ringRefs: refs(4) });
    expect(k.has('ring-ref')).toBe(false);
    expect(k.get('ring-page-order')).toBe('2');
    expect(k.get('ring-ref3')).toBe('103');
    const r = parseFrontendKeys(k, { maxRingPageOrder: 4 });
    expect(r.ok && r.value.ringRefs).toEqual([100, 101, 102, 103]);
  });
  const good = () => Object.fromEntries(buildFrontendKeys({ ...base, ringRefs: refs(2) }));
  it.each([
    ['order above our max', { ...good(), 'ring-page-order': '3' }, 2, /above our max-ring-page-order 2/],
    ['missing ring-ref1', (({ 'ring-ref1': _x, ...r }) => r)(good()), 4, /no "ring-ref1"/],
    ['an extra ring-ref2', { ...good(), 'ring-ref2': '7' }, 4, /"ring-ref2", which does not match ring-page-order 1/],
    ['a stray ring-ref with order 1', { ...good(), 'ring-ref': '7' }, 4, /"ring-ref", which does not match/],
    ['ring-ref beyond u32', { ...good(), 'ring-ref0': '4294967296' }, 4, /above 4294967295/],
    ['hex event channel', { ...good(), 'event-channel': '0x9' }, 4, /not a decimal/],
    ['no event channel', (({ 'event-channel': _x, ...r }) => r)(good()), 4, /no "event-channel"/],
    ['foreign protocol', { ...good(), protocol: 'x86_32-abi' }, 4, /only the native/],
    ['unknown protocol', { ...good(), protocol: 'pdp11' }, 4, /unknown "protocol"/],
    ['two queues', { ...good(), 'multi-queue-num-queues': '2' }, 4, /1 queue/],
    ['feature-persistent 2', { ...good(), 'feature-persistent': '2' }, 4, /not 0 or 1/],
  ])('rejects %s', (_n, e, max, re) => {
    const r = parseFrontendKeys(e, { maxRingPageOrder: max });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatch(/^frontend gave us/);
      expect(r.error).toMatch(re);
    }
  });
  it('reads own keys only: a prototype cannot supply ring-ref', () => {
    const e = Object.create({ 'ring-ref': '5' }) as Record<string, string>;
    e['event-channel'] = '3';
    expect(parseFrontendKeys(e, { maxRingPageOrder: 0 })).toMatchObject({ ok: false });
  });
  it('parseDecimal is strict', () => {
    expect(['0', '7', '4294967295'].map((v) => parseDecimal(v, 2 ** 32 - 1).ok)).toEqual([true, true, true]);
    expect(['', '-0', '+1', '1e3', '07', '1.0', ' 1', '1 ', '4294967296', '99999999999999999999'].map((v) => parseDecimal(v, 2 ** 32 - 1).ok)).toEqual(Array(10).fill(false));
  });
});
