import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatVdevName, parseVdevName, parseVdevNumber, vdevNameToNumber, vdevNumber, vdevNumberToName, XEN_VBD_EXTENDED_DISK_MAX } from './index.js';

describe('vdev names', () => {
  it.each([
    ['xvda', 51712],
    ['xvda1', 51713],
    ['xvdb', 51728],
    ['xvdp15', (202 << 8) | (15 << 4) | 15],
    ['xvdq', (1 << 28) | (16 << 8)],
    ['xvda16', (1 << 28) | 16],
    ['xvdaa', (1 << 28) | (26 << 8)],
    ['xvdaa3', (1 << 28) | (26 << 8) | 3],
  ])('%s ↔ %d', (name, n) => {
    expect(vdevNameToNumber(name)).toEqual({ ok: true, value: n });
    expect(vdevNumberToName(n)).toEqual({ ok: true, value: name });
  });
  it.each(['sda', 'xvd', 'xvdA', 'xvda0', 'xvda01', 'xvda256', 'xvd1', ' xvda', 'xvdzzzzz'])('rejects %s', (name) => {
    expect(parseVdevName(name).ok).toBe(false);
  });
  it.each([0x0801, 3 << 8, -1, 1.5, 2 ** 32, (1 << 29) | 5])('rejects number %d', (n) => {
    expect(parseVdevNumber(n).ok).toBe(false);
  });
  it('round trips disk/partition → name → number → name', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: XEN_VBD_EXTENDED_DISK_MAX }), fc.integer({ min: 0, max: 255 }), (disk, part) => {
        const name = formatVdevName({ disk, part });
        expect(parseVdevName(name)).toEqual({ ok: true, value: { disk, part } });
        const n = vdevNumber({ disk, part });
        expect(parseVdevNumber(n)).toEqual({ ok: true, value: { disk, part } });
        expect(vdevNumberToName(n)).toEqual({ ok: true, value: name });
      }),
      { seed: 202, numRuns: 2000 },
    );
  });
});
