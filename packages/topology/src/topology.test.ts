import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatTopologyErrors, MiB, parseTopology, type TopologyError } from './index.js';

const examples = resolve(dirname(fileURLToPath(import.meta.url)), '../../../examples');

function errorsOf(text: string, file = 't.yaml'): readonly TopologyError[] {
  const r = parseTopology(text, file);
  if (r.ok) throw new Error('expected errors, got a topology');
  return r.errors;
}

/** The single error for `field`, with its 1-based position. */
function one(text: string, field: string): TopologyError {
  const es = errorsOf(text).filter((e) => e.field === field);
  expect(es, formatTopologyErrors(errorsOf(text))).toHaveLength(1);
  return es[0]!;
}

const lines = (...ls: string[]): string => ls.join('\n') + '\n';

describe('examples', () => {
  for (const name of ['two-guests.yaml', 'seed-bug.yaml']) {
    it(`${name} parses cleanly`, () => {
      const file = join(examples, name);
      const r = parseTopology(readFileSync(file, 'utf8'), file);
      expect(r.ok ? [] : formatTopologyErrors(r.errors)).toEqual([]);
    });
  }

  it('two-guests.yaml parses to the expected topology', () => {
    const file = join(examples, 'two-guests.yaml');
    const r = parseTopology(readFileSync(file, 'utf8'), file);
    expect(r).toEqual({
      ok: true,
      topology: {
        file,
        run: { seed: 42, memory: 256 * MiB, log: true },
        dom0: { memory: 64 * MiB, blkback: { unmapPolicy: 'async', maxRingPageOrder: 0 } },
        domains: [
          {
            name: 'guest1',
            memory: 32 * MiB,
            vcpus: 1,
            disks: [{ target: { kind: 'mem', size: 64 * MiB }, vdev: { name: 'xvda', number: 51712 }, access: 'rw' }],
          },
          {
            name: 'guest2',
            memory: 32 * MiB,
            vcpus: 2,
            disks: [
              { target: { kind: 'mem', size: 64 * MiB }, vdev: { name: 'xvda', number: 51712 }, access: 'rw' },
              {
                target: { kind: 'file', path: join(examples, 'images/shared.img'), size: 16 * MiB },
                vdev: { name: 'xvdb', number: 51728 },
                access: 'ro',
              },
            ],
          },
        ],
      },
    });
  });

  it('seed-bug.yaml selects the sync policy', () => {
    const file = join(examples, 'seed-bug.yaml');
    const r = parseTopology(readFileSync(file, 'utf8'), file);
    expect(r.ok && r.topology.dom0.blkback.unmapPolicy).toBe('sync');
  });
});

describe('valid files', () => {
  it('fills defaults', () => {
    const r = parseTopology(lines('domains:', '  - name: g', '    memory: 1MiB'), '/etc/pvsim/t.yaml');
    expect(r).toEqual({
      ok: true,
      topology: {
        file: '/etc/pvsim/t.yaml',
        run: { seed: undefined, memory: 256 * MiB, log: true },
        dom0: { memory: 64 * MiB, blkback: { unmapPolicy: 'async', maxRingPageOrder: 0 } },
        domains: [{ name: 'g', memory: MiB, vcpus: 1, disks: [] }],
      },
    });
  });

  it('reads xl positional disk specs, keyed specs, maps and byte counts', () => {
    const text = lines(
      'run: { memory: 268435456, log: false, seed: 7 }',
      'dom0: { memory: 64MiB, blkback: { unmap-policy: replace, max-ring-page-order: 4 } }',
      'domains:',
      '  - name: a.b_c-1',
      '    memory: 16MiB',
      '    disks:',
      '      - "/srv/a.img,raw,xvda,w"',
      '      - "disk.img,xvdb,r"',
      '      - "file:/x.img, xvdc1, ro, size=1024"',
      '      - "vdev=xvdaa, target=mem, size=4KiB"',
      '      - { target: "mem:512", vdev: xvde }',
    );
    const r = parseTopology(text, '/topo/t.yaml');
    if (!r.ok) throw new Error(formatTopologyErrors(r.errors));
    expect(r.topology.run).toEqual({ seed: 7, memory: 256 * MiB, log: false });
    expect(r.topology.dom0.blkback).toEqual({ unmapPolicy: 'replace', maxRingPageOrder: 4 });
    expect(r.topology.domains[0]!.disks).toEqual([
      { target: { kind: 'file', path: '/srv/a.img' }, vdev: { name: 'xvda', number: 51712 }, access: 'rw' },
      { target: { kind: 'file', path: '/topo/disk.img' }, vdev: { name: 'xvdb', number: 51728 }, access: 'ro' },
      { target: { kind: 'file', path: '/x.img', size: 1024 }, vdev: { name: 'xvdc1', number: 51745 }, access: 'ro' },
      { target: { kind: 'mem', size: 4096 }, vdev: { name: 'xvdaa', number: (1 << 28) | (26 << 8) }, access: 'rw' },
      { target: { kind: 'mem', size: 512 }, vdev: { name: 'xvde', number: 51776 }, access: 'rw' },
    ]);
  });
});

describe('errors name line, column and field', () => {
  it('formats like the compiler', () => {
    const text = lines(
      'domains:', //                                          1
      '  - name: g1', //                                      2
      '    memory: 8MiB', //                                  3
      '  - name: g2', //                                      4
      '    memory: 8MiB', //                                  5
      '    disks:', //                                        6
      '      - "target=mem:64MiB, vdev=xvdq7x, access=rw"', // 7
    );
    expect(formatTopologyErrors(errorsOf(text, 'examples/two-guests.yaml'))).toBe(
      "examples/two-guests.yaml:7:33: domains[1].disks[0].vdev: 'xvdq7x' is not a virtual disk name (xvda, xvdb, …)",
    );
  });

  it('wrong type', () => {
    const e = one(lines('run:', '  seed: "forty-two"', 'domains: [{ name: g, memory: 1MiB }]'), 'run.seed');
    expect([e.line, e.column]).toEqual([2, 9]);
    expect(e.message).toMatch(/expected an integer/);
    const e2 = one(lines('run:', '  log: yes please', 'domains: [{ name: g, memory: 1MiB }]'), 'run.log');
    expect([e2.line, e2.column]).toEqual([2, 8]);
    const e3 = one(lines('domains:', '  name: g'), 'domains');
    expect([e3.line, e3.column, e3.message]).toEqual([2, 3, 'expected a list of domains, got a map']);
  });

  it('unknown key, with a suggestion', () => {
    const e = one(lines('domains:', '  - name: g', '    memroy: 8MiB', '    memory: 8MiB'), 'domains[0].memroy');
    expect([e.line, e.column]).toEqual([3, 5]);
    expect(e.message).toBe("unknown key 'memroy' (did you mean 'memory'?)");
    const e2 = one(lines('domains: [{ name: g, memory: 1MiB }]', 'zzz: 1'), 'zzz');
    expect(e2.message).toBe("unknown key 'zzz' (expected one of: run, dom0, domains)");
    const e3 = one(lines('domains:', '  - name: g', '    memory: 8MiB', '    disks: ["target=mem:1MiB, vdve=xvda"]'), 'domains[0].disks[0].vdve');
    expect([e3.line, e3.column, e3.message]).toEqual([4, 31, "unknown disk parameter 'vdve' (did you mean 'vdev'?)"]);
  });

  it('missing name', () => {
    const e = one(lines('domains:', '  - name: a', '    memory: 8MiB', '  - memory: 8MiB'), 'domains[1].name');
    expect([e.line, e.column, e.message]).toEqual([4, 5, 'missing name']);
  });

  it('bad and reserved names', () => {
    expect(one(lines('domains:', '  - name: "a b"', '    memory: 8MiB'), 'domains[0].name').column).toBe(11);
    expect(one(lines('domains:', '  - name: Domain-0', '    memory: 8MiB'), 'domains[0].name').message).toMatch(/dom0/);
  });

  it('duplicate domain name', () => {
    const e = one(lines('domains:', '  - name: a', '    memory: 8MiB', '  - name: a', '    memory: 8MiB'), 'domains[1].name');
    expect([e.line, e.column, e.message]).toEqual([4, 11, "duplicate domain name 'a' (first at line 2)"]);
  });

  it('duplicate vdev', () => {
    const text = lines('domains:', '  - name: a', '    memory: 8MiB', '    disks:', '      - "target=mem:1MiB, vdev=xvda"', '      - { target: "mem:1MiB", vdev: xvda }');
    const e = one(text, 'domains[0].disks[1].vdev');
    expect([e.line, e.column, e.message]).toEqual([6, 37, "duplicate vdev 'xvda' (already used by domains[0].disks[0] at line 5)"]);
  });

  it('bad size', () => {
    const e = one(lines('domains:', '  - name: a', '    memory: 8MB'), 'domains[0].memory');
    expect([e.line, e.column, e.message]).toEqual([3, 13, "'8MB': unit 'MB' is not one of B, KiB, MiB, GiB (did you mean '8MiB'?)"]);
    const e2 = one(lines('domains:', '  - name: a', '    memory: 8MiB', '    disks: [{ target: "mem:1000", vdev: xvda }]'), 'domains[0].disks[0].target');
    expect([e2.line, e2.column, e2.message]).toEqual([4, 23, '1000B is not a multiple of the 512-byte sector']);
    const e3 = one(lines('domains:', '  - name: a', '    memory: 100KiB'), 'domains[0].memory');
    expect(e3.message).toBe('100KiB is too small (at least 1MiB)');
  });

  it('bad policy', () => {
    const e = one(lines('dom0:', '  blkback:', '    unmap-policy: asnyc', 'domains: [{ name: a, memory: 8MiB }]'), 'dom0.blkback.unmap-policy');
    expect([e.line, e.column, e.message]).toEqual([3, 19, "'asnyc' is not an unmap policy (sync | replace | async) (did you mean 'async'?)"]);
    const e2 = one(lines('dom0:', '  blkback:', '    max-ring-page-order: 5', 'domains: [{ name: a, memory: 8MiB }]'), 'dom0.blkback.max-ring-page-order');
    expect([e2.line, e2.column, e2.message]).toEqual([3, 26, '5 is out of range (0..4)']);
  });

  it('bad disk spec', () => {
    const base = ['domains:', '  - name: a', '    memory: 8MiB', '    disks:'];
    const e = one(lines(...base, '      - "target=phy:/dev/sda, vdev=xvda"'), 'domains[0].disks[0].target');
    expect([e.line, e.column, e.message]).toEqual([5, 17, "target kind 'phy' is not supported (mem:<size> or file:<path>)"]);
    const e2 = one(lines(...base, "      - 'target=mem:1MiB, vdev=xvda, access=rx'"), 'domains[0].disks[0].access');
    expect([e2.line, e2.column]).toEqual([5, 45]);
    expect(e2.message).toMatch(/not an access mode/);
    const e3 = one(lines(...base, '      - "target=mem:1MiB, vdev=xvda, vdev=xvdb"'), 'domains[0].disks[0].vdev');
    expect([e3.line, e3.column, e3.message]).toEqual([5, 38, "'vdev' is given twice"]);
    const e4 = one(lines(...base, '      - "a.img,raw,xvda,rw,extra"'), 'domains[0].disks[0]');
    expect([e4.line, e4.column]).toEqual([5, 28]);
    const e5 = one(lines(...base, '      - 42'), 'domains[0].disks[0]');
    expect([e5.line, e5.column]).toEqual([5, 9]);
    const e6 = one(lines(...base, '      - "vdev=xvda"'), 'domains[0].disks[0].target');
    expect([e6.line, e6.column, e6.message]).toEqual([5, 9, 'missing target (mem:<size> or file:<path>)']);
  });

  it('memory over budget', () => {
    const text = lines('run: { memory: 128MiB }', 'dom0: { memory: 64MiB }', 'domains:', '  - { name: a, memory: 32MiB }', '  - { name: b, memory: 48MiB }');
    const e = one(text, 'domains[1].memory');
    expect([e.line, e.column]).toEqual([5, 24]);
    expect(e.message).toBe('memory over budget: dom0 64MiB + domains[0..1] 80MiB = 144MiB > run.memory 128MiB');
  });

  it('malformed YAML', () => {
    const es = errorsOf(lines('domains:', '  - name: a', '    memory: [8MiB', 'run: 1'));
    expect(es.length).toBeGreaterThan(0);
    expect(es[0]!.field).toBe('');
    expect(es[0]!.line).toBeGreaterThanOrEqual(3);
    expect(es[0]!.message).toMatch(/^malformed YAML: /);
    const dup = errorsOf(lines('domains: []', 'domains: []'));
    expect([dup[0]!.line, dup[0]!.column]).toEqual([2, 1]);
    const tab = errorsOf('domains:\n\t- name: a\n');
    expect(tab[0]!.line).toBe(2);
  });

  it('empty and non-map documents', () => {
    expect(errorsOf('')[0]!.message).toMatch(/empty topology/);
    expect(errorsOf('# nothing\n')[0]!.message).toMatch(/empty topology/);
    expect(errorsOf('- 1\n')[0]!.message).toMatch(/expected a map/);
    expect(one('run: {}\n', 'domains').message).toBe('missing domains (a list of guests)');
  });
});

describe('robustness', () => {
  const pieces = [
    'run:', 'dom0:', 'domains:', 'blkback:', '  ', '    ', '- ', 'name: ', 'memory: ', 'disks:', 'vcpus: ', 'seed: ',
    'unmap-policy: ', 'async', 'sync', '64MiB', '1GiB', '"target=mem:64MiB, vdev=xvda, access=rw"', 'vdev=', 'xvd', 'target=',
    'file:', 'mem:', '{', '}', '[', ']', ',', ':', '&a ', '*a', '!!str ', '"', "'", '#', '\n', '\t', '|', '>', '?', '<<: *a', '%YAML 1.2\n', '---\n', '...\n', '-1', '1e999', '\u0000', '\ud800',
  ];
  const yamlish = fc.array(fc.oneof(fc.constantFrom(...pieces), fc.string({ maxLength: 6 })), { maxLength: 60 }).map((a) => a.join(''));

  it('never throws, and errors are well-formed', () => {
    fc.assert(
      fc.property(yamlish, (text) => {
        const r = parseTopology(text, 'fuzz.yaml');
        if (!r.ok) {
          expect(r.errors.length).toBeGreaterThan(0);
          for (const e of r.errors) {
            expect(e.line).toBeGreaterThanOrEqual(1);
            expect(e.column).toBeGreaterThanOrEqual(1);
            expect(typeof e.message).toBe('string');
          }
          formatTopologyErrors(r.errors);
        }
      }),
      { seed: 20240611, numRuns: 2000 },
    );
  });

  it('never throws on mutations of a valid file', () => {
    const valid = readFileSync(join(examples, 'two-guests.yaml'), 'utf8');
    fc.assert(
      fc.property(fc.nat(valid.length), fc.nat(valid.length), fc.string({ maxLength: 8 }), (a, b, ins) => {
        const [i, j] = a <= b ? [a, b] : [b, a];
        const r = parseTopology(valid.slice(0, i) + ins + valid.slice(Math.min(j, i + 10)), 'm.yaml');
        expect(typeof r.ok).toBe('boolean');
      }),
      { seed: 7, numRuns: 1000 },
    );
  });
});
