import { describe, expect, it } from 'vitest';
import { BENCHMARKS, checkOption } from '../registry.js';
import { parseCli, resolveOptions } from '../cli.js';
import { LOG_RING_ORDER_DEFAULT } from '@pvsim/eventlog';

describe('eventlog registration', () => {
  it('is in the registry and loads a benchmark of the same name', async () => {
    expect(Object.keys(BENCHMARKS)).toContain('eventlog');
    const b = await BENCHMARKS.eventlog!.load();
    expect(b.name).toBe('eventlog');
    expect(b.description).toBe(BENCHMARKS.eventlog!.description);
    expect(parseCli(['eventlog', '--quick'], Object.keys(BENCHMARKS))).toMatchObject({ names: ['eventlog'], quick: true });
  });

  it('declares options whose defaults fit their own specs', async () => {
    const b = await BENCHMARKS.eventlog!.load();
    for (const [k, spec] of Object.entries(b.options)) expect(checkOption(k, spec, spec.default)).toBeNull();
    expect(resolveOptions(b, [['emitters', '2'], ['eventlog.events', '5000']], [b])).toMatchObject({ emitters: 2, events: 5000, logOrder: LOG_RING_ORDER_DEFAULT });
    expect(() => resolveOptions(b, [['emitters', '0']], [b])).toThrow(/≥ 1/);
  });
});
