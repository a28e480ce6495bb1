/**
 * The store folded from the log, and the same state read live (replay-equals-state).
 *
 * Key: a node's absolute path ('/' is the root). Value: `XsNodeValue` — the node's value (UTF-8
 * text, or base64 with `enc: 'base64'`) and its whole permission list (`b0,r1`). Seq: the
 * `xs.node` event that last set the node. `xs.node` carries the whole node, so the fold needs
 * nothing but the event; `xs.rm` deletes the path and everything below it (the store then emits
 * `xs.node` for the parent, whose children changed).
 */
import { keyedProjection, registerProjection, stateSnapshot, type StateSnapshot } from '@pvsim/eventlog';
import type { XenStore, XsNodeValue } from './store.js';
import './events.js';

export const XS_STORE_PROJECTION = 'xs.store';

const isEnc = (v: unknown): v is XsNodeValue['enc'] => v === 'utf8' || v === 'base64';

export const xsStoreProjection = registerProjection(
  keyedProjection<XsNodeValue>({
    name: XS_STORE_PROJECTION,
    on: {
      'xs.node': (e, m) => {
        // The log is input: a payload that does not carry a node is skipped, never folded.
        const { path, value, enc, perms } = e.payload;
        if (typeof path !== 'string' || !path.startsWith('/') || typeof value !== 'string' || !isEnc(enc) || typeof perms !== 'string') return;
        m.set(path, { value, enc, perms });
      },
      'xs.rm': (e, m) => {
        const { path } = e.payload;
        if (typeof path !== 'string' || !path.startsWith('/') || path === '/') return;
        const below = `${path}/`;
        m.delete(path);
        for (const k of [...m.keys()]) if (k.startsWith(below)) m.delete(k);
      },
    },
  }),
);

/** The live tree in the projection's form, as of `atSeq` (take it while no request runs). */
export function xsSnapshot(store: XenStore, atSeq: number): StateSnapshot {
  return stateSnapshot(XS_STORE_PROJECTION, atSeq, store.entries());
}
