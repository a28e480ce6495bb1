/** Status tables as `xl list` and `xl block-list` print them. */
import { xenbusStrState } from '@pvsim/xenstore';
import type { RunStatus } from './launch.js';

function table(header: string[], rows: string[][], right: boolean[]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (right[i] ? c.padStart(w[i]!) : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `xl list`: Name, ID, Mem, VCPUs, State. */
export function formatDomains(s: RunStatus): string {
  return table(
    ['Name', 'ID', 'Mem', 'VCPUs', 'State'],
    s.domains.map((d) => [d.name, String(d.id), String(d.mem), String(d.vcpus), d.state]),
    [false, true, true, true, false],
  );
}

/** `xl block-list` for every guest: Vdev, BE, handle, state, evt-ch, ring-ref, BE-path (plus the domain and state name). */
export function formatDevices(s: RunStatus): string {
  return table(
    ['Domain', 'Vdev', 'BE', 'handle', 'state', 'evt-ch', 'ring-ref', 'BE-path'],
    s.devices.map((d) => [
      d.domain,
      `${d.vdev} (${d.vdevName})`,
      String(d.be),
      String(d.handle),
      `${d.state} (${xenbusStrState(d.state)})`,
      String(d.evtch),
      d.ringRef,
      d.backendPath,
    ]),
    [false, false, true, true, false, true, true, false],
  );
}

/** Live I/O per device: requests in flight at each end and completed by the frontend. */
export function formatDeviceIo(s: RunStatus): string {
  return table(
    ['Domain', 'Vdev', 'in-flight (front)', 'in-flight (back)', 'completed'],
    s.devices.map((d) => [d.domain, `${d.vdev} (${d.vdevName})`, d.io ? String(d.io.frontInflight) : '?', d.io ? String(d.io.backInflight) : '?', d.io ? String(d.io.completed) : '?']),
    [false, false, true, true, true],
  );
}
