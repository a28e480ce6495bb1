import { err, ok, type Result } from '@pvsim/abi';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const UNITS: Readonly<Record<string, number>> = { B: 1, KiB, MiB, GiB };
const UNIT_NAMES = Object.keys(UNITS);
/** Common spellings that are not accepted, and what they probably meant. */
const LOOKALIKES: Readonly<Record<string, string>> = {
  k: 'KiB', kb: 'KiB', kib: 'KiB', m: 'MiB', mb: 'MiB', mib: 'MiB', g: 'GiB', gb: 'GiB', gib: 'GiB', b: 'B',
};

/**
 * A size: a non-negative integer number of bytes, or `<integer><unit>` with unit B, KiB, MiB or
 * GiB (`64MiB`, `512 B`). The error names the accepted forms.
 */
export function parseSize(v: unknown): Result<number, string> {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) return err(`${String(v)} is not a size (a whole number of bytes, or e.g. 64MiB)`);
    return ok(v);
  }
  if (typeof v !== 'string') return err(`expected a size such as 64MiB, got ${describe(v)}`);
  const m = /^\s*([0-9]+)\s*([A-Za-z]*)\s*$/.exec(v);
  if (!m) return err(`'${v}' is not a size (e.g. 512, 4KiB, 64MiB, 1GiB)`);
  const unitText = m[2] ?? '';
  const unit = unitText === '' ? 1 : UNITS[unitText];
  if (unit === undefined) {
    const hint = LOOKALIKES[unitText.toLowerCase()];
    return err(`'${v}': unit '${unitText}' is not one of ${UNIT_NAMES.join(', ')}${hint ? ` (did you mean '${m[1]}${hint}'?)` : ''}`);
  }
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) return err(`'${v}' is too large`);
  return ok(n);
}

/** `67108864` → `64MiB` (largest exact unit). */
export function formatSize(n: number): string {
  for (const [name, unit] of [['GiB', GiB], ['MiB', MiB], ['KiB', KiB]] as const) {
    if (n >= unit && n % unit === 0) return `${n / unit}${name}`;
  }
  return `${n}B`;
}

/** A short description of a YAML value's type for "expected X, got Y" messages. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}…` : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return 'a map';
}
