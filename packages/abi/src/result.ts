/**
 * Result values for operations whose failure is an expected outcome (peer misbehaviour, a full
 * ring, a refused grant). Programmer errors are assertions (see `assert`), never Results.
 */
export type Ok<T> = { readonly ok: true; readonly value: T };
export type Err<E> = { readonly ok: false; readonly error: E };
export type Result<T, E> = Ok<T> | Err<E>;

export const ok = <T>(value: T): Ok<T> => ({ ok: true, value });
export const err = <E>(error: E): Err<E> => ({ ok: false, error });

/** Thrown only for internal bugs: a broken invariant of pvsim itself, never a peer's input. */
export class AssertionFailure extends Error {
  override name = 'AssertionFailure';
}

/** Assert a programmer invariant. The message must say what was expected; it reads as a bug report. */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionFailure(`pvsim bug: ${message}`);
}
