/**
 * A topology: the machine a pvsim run builds, read from a YAML file.
 *
 * ```yaml
 * run:                      # optional
 *   seed: 42                # integer (optional; absent = the launcher picks one)
 *   memory: 256MiB          # machine memory, default 256MiB
 *   log: true               # event log on/off, default true
 * dom0:                     # optional
 *   memory: 64MiB           # default 64MiB
 *   blkback:
 *     unmap-policy: async   # sync | replace | async (default async)
 *     max-ring-page-order: 0  # 0..4 (default 0)
 * domains:                  # at least one
 *   - name: guest1          # unique, [A-Za-z0-9_.-]+, not Domain-0
 *     memory: 32MiB         # ≥ 1MiB, multiple of 4KiB; dom0 + all domains ≤ run.memory
 *     vcpus: 1              # optional, 1..64 (default 1)
 *     disks:                # optional
 *       - "target=mem:64MiB, vdev=xvda, access=rw"     # an xl.cfg disk spec string…
 *       - { target: "file:/tmp/guest1-b.img", vdev: xvdb, access: ro, size: 16MiB }  # …or a map
 * ```
 *
 * Sizes are an integer number of bytes or a string `<integer><unit>` with unit `B`, `KiB`, `MiB`
 * or `GiB` (binary units only). Disk sizes must be multiples of 512 bytes.
 *
 * Disk targets: `mem:<size>` (a RAM-backed disk of that size) or `file:<path>` (a plain path
 * without a prefix is a file too). Relative file paths are resolved against the directory of the
 * topology file. Access: `rw` (also `w`) or `ro` (also `r`), default `rw`.
 */
export interface Topology {
  /** The file the topology was read from, as passed to `parseTopology`. */
  readonly file: string;
  readonly run: RunOptions;
  readonly dom0: Dom0Options;
  readonly domains: readonly DomainSpec[];
}

export interface RunOptions {
  /** PRNG seed; `undefined` when the file does not set one. */
  readonly seed: number | undefined;
  /** Machine memory in bytes (default 256MiB). */
  readonly memory: number;
  /** Whether the event log is written (default true). */
  readonly log: boolean;
}

/**
 * How dom0's blkback gives back a guest's granted pages when a request completes:
 * - `sync`: unmap at once, even if the page is still referenced (say by a TCP retransmit on the
 *   way to network storage) — the seed's bug: the late access is a `mem.fault`;
 * - `replace`: the legacy `gnttab_unmap_and_replace` — a scratch page takes the grant's place, so
 *   the late access reads the wrong frame (`mem.leak`);
 * - `async`: `gnttab_unmap_refs_async` — the unmap waits until the page's other references are
 *   dropped (`PG_foreign`), the fix Linux adopted. The default.
 */
export type UnmapPolicy = 'sync' | 'replace' | 'async';
export const UNMAP_POLICIES: readonly UnmapPolicy[] = ['sync', 'replace', 'async'];

export interface BlkbackOptions {
  readonly unmapPolicy: UnmapPolicy;
  /** `max-ring-page-order` advertised by blkback, 0..4. */
  readonly maxRingPageOrder: number;
}

export interface Dom0Options {
  /** Bytes (default 64MiB). */
  readonly memory: number;
  readonly blkback: BlkbackOptions;
}

export interface DomainSpec {
  readonly name: string;
  /** Bytes. */
  readonly memory: number;
  readonly vcpus: number;
  readonly disks: readonly DiskSpec[];
}

export type DiskTarget =
  | { readonly kind: 'mem'; readonly size: number }
  | { readonly kind: 'file'; /** Absolute (resolved) path. */ readonly path: string; readonly size?: number };

export interface DiskSpec {
  readonly target: DiskTarget;
  /** `name` as written (`xvda`), `number` the Linux/Xen `virtual-device` number (51712 for xvda). */
  readonly vdev: { readonly name: string; readonly number: number };
  readonly access: 'rw' | 'ro';
}

/** One problem in a topology file; `line` and `column` are 1-based. */
export interface TopologyError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** Path of the offending field, e.g. `domains[1].disks[0].vdev` (empty for the document itself). */
  readonly field: string;
  readonly message: string;
}

export type TopologyResult =
  | { readonly ok: true; readonly topology: Topology }
  | { readonly ok: false; readonly errors: readonly TopologyError[] };
