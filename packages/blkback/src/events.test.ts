/** blkback's event kinds: version 2 names the device; a version-1 record still reads. */
import { currentVersion, eventSpec } from '@pvsim/eventlog';
import { describe, expect, it } from 'vitest';
import { BLKBACK_VDEV_UNKNOWN } from './index.js';

describe('blk.* kinds of blkback', () => {
  const kinds = ['blk.request', 'blk.reject', 'blk.response', 'blk.ring.halted'];
  it('are at version 2, and the hot ones keep fixed fields with vdev', () => {
    for (const k of kinds) expect(currentVersion(k)).toBe(2);
    expect(eventSpec('blk.request')!.fields!.map(([n]) => n)).toEqual(['dom', 'vdev', 'id', 'op', 'sector', 'nsegs']);
    expect(eventSpec('blk.response')!.fields!.map(([n]) => n)).toEqual(['dom', 'vdev', 'id', 'status']);
  });
  it('read a version-1 payload (no vdev) with vdev -1, and leave version 2 alone', () => {
    for (const k of kinds) {
      const up = eventSpec(k)!.upgrade!;
      expect(up({ dom: 3, id: 7 }, 1)).toEqual({ dom: 3, id: 7, vdev: BLKBACK_VDEV_UNKNOWN });
      expect(up({ dom: 3, vdev: 51712, id: 7 }, 2)).toEqual({ dom: 3, vdev: 51712, id: 7 });
    }
  });
  it('blk.unmap.deferred: a new kind at version 1, with vdev from the start and fixed fields', () => {
    expect(currentVersion('blk.unmap.deferred')).toBe(1);
    expect(eventSpec('blk.unmap.deferred')!.upgrade).toBeUndefined();
    expect(eventSpec('blk.unmap.deferred')!.fields!.map(([n]) => n)).toEqual(['dom', 'vdev', 'id', 'age', 'delayMs', 'busyPages']);
  });
});
