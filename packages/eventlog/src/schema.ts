/**
 * Events: one kind per state transition, typed and versioned.
 *
 * A package declares its kinds in two places, and the log's core changes for neither:
 *  - types, by augmenting the `EventPayloads` interface:
 *      declare module '@pvsim/eventlog' { interface EventPayloads { 'grant.map': { gref: number; … } } }
 *  - runtime facts, with `declareEvent({ kind, version, upgrade })`: the current version of the
 *    payload and how to read a record written by an older version (a field added later gets its
 *    default). A record of a kind this build does not know is still read, with its raw payload.
 *
 * On the wire and on disk a record is binary (record.ts): a fixed header, then the payload as
 * the kind's declared fields or as a msgpack map.
 */
import { assert } from '@pvsim/abi';

/** Payload type per event kind; packages augment this interface. */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface EventPayloads {
  /** The sink: a writer (thread) joined the run. */
  'log.writer': { writer: number; name: string; dom: number };
  /** The sink: sequence numbers `from`..`to` (inclusive) never arrived (their writer died between taking and publishing them). */
  'log.gap': { from: number; to: number; reason: string };
  /** The sink: events dropped (a writer's buffer stayed full, or a record arrived after its gap was declared); counted, never silent. */
  'log.dropped': { writer: number; count: number; total: number; reason?: string };
  /** The sink: a clean end of the run; `lastSeq` is this record's own seq, the last in the log. */
  'log.end': { lastSeq: number; events: number };
}

export type EventKind = keyof EventPayloads & string;

/** One event as read back or handed to projections. `payload` is typed by `kind`. */
export interface EventRecord<K extends string = string> {
  /** Global sequence number: one total order across every thread of a run. */
  readonly seq: number;
  /** Nanoseconds since the run's epoch (the emitting thread's clock). */
  readonly tsNs: number;
  /** The emitting domain. */
  readonly dom: number;
  /** The emitting writer (thread), as announced by a `log.writer` event. */
  readonly thread: number;
  readonly kind: K;
  /** Payload version as written. */
  readonly v: number;
  readonly payload: K extends EventKind ? EventPayloads[K] : Record<string, unknown>;
}

export type AnyEvent = { [K in EventKind]: EventRecord<K> }[EventKind];

export interface EventSpec {
  readonly kind: string;
  /** Current payload version (1 for a new kind; bump when a field is added or changes meaning). */
  readonly version: number;
  /** One line for people reading `pvsim log show`: what the transition means. */
  readonly doc?: string;
  /** Bring a payload written at `fromVersion` to the current version (fill defaults). */
  readonly upgrade?: (payload: Record<string, unknown>, fromVersion: number) => Record<string, unknown>;
  /**
   * The payload's fields with their binary types, in order: events on hot paths declare them so
   * they are written as a fixed little-endian struct instead of msgpack (several times cheaper
   * to emit and to read). A payload that does not fit (missing field, value out of range) is
   * written as msgpack instead, so nothing is ever lost or truncated.
   */
  readonly fields?: readonly (readonly [name: string, type: FieldType])[];
}

/** Binary field types: integers are range-checked, `str` is u16 length + UTF-8. */
export type FieldType = 'u8' | 'u16' | 'u32' | 'i32' | 'f64' | 'bool' | 'str';
export const FIELD_TYPES: readonly FieldType[] = ['u8', 'u16', 'u32', 'i32', 'f64', 'bool', 'str'];

const registry = new Map<string, EventSpec>();

/** Declare (or re-declare identically) an event kind. */
export function declareEvent(spec: EventSpec): EventSpec {
  assert(/^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$/.test(spec.kind), `event kind '${spec.kind}' must be dotted lower case, e.g. 'grant.map'`);
  assert(Number.isInteger(spec.version) && spec.version >= 1, `event kind '${spec.kind}': version must be an integer >= 1`);
  const prev = registry.get(spec.kind);
  assert(!prev || prev.version === spec.version, `event kind '${spec.kind}' declared twice with versions ${prev?.version} and ${spec.version}`);
  for (const [name, type] of spec.fields ?? []) {
    assert(typeof name === 'string' && name.length > 0 && FIELD_TYPES.includes(type), `event kind '${spec.kind}': bad field ${name}: ${type}`);
  }
  registry.set(spec.kind, spec);
  return spec;
}

export function eventSpec(kind: string): EventSpec | undefined {
  return registry.get(kind);
}

export function declaredKinds(): string[] {
  return [...registry.keys()].sort();
}

/** Current version of `kind` (1 for kinds never declared). */
export function currentVersion(kind: string): number {
  return registry.get(kind)?.version ?? 1;
}

declareEvent({ kind: 'log.writer', version: 1, doc: 'a writer (thread) joined the run' });
declareEvent({ kind: 'log.gap', version: 1, doc: 'sequence numbers that never arrived' });
declareEvent({ kind: 'log.dropped', version: 1, doc: 'a writer dropped events: its buffer stayed full' });
declareEvent({ kind: 'log.end', version: 1, doc: 'clean end of the run' });
