/** XenStore's events: node changes carry the whole node, so replay rebuilds the tree exactly. */
import { declareEvent } from '@pvsim/eventlog';

declare module '@pvsim/eventlog' {
  interface EventPayloads {
    /** A node was created or changed: its value and whole permission list (`b0,r1`). */
    'xs.node': { path: string; value: string; enc: 'utf8' | 'base64'; perms: string };
    /** A node and everything below it were removed. */
    'xs.rm': { path: string; dom: number; nodes: number };
    /** A transaction started, committed, was aborted, or failed (EAGAIN, quota). */
    'xs.tx': { dom: number; conn: number; tx: number; outcome: string };
    'xs.watch': { dom: number; conn: number; path: string; token: string; on: boolean };
    'xs.watch_fire': { dom: number; conn: number; path: string; token: string };
    /** XS_INTRODUCE / XS_RELEASE: a domain became known to the store, or went away. */
    'xs.domain': { dom: number; introduced: boolean };
    /** A xenbus device end changed state (`XenbusState*`). */
    'xenbus.state': { path: string; dom: number; from: number; to: number; name: string };
  }
}

declareEvent({ kind: 'xs.node', version: 1, doc: 'a XenStore node was created or changed' });
declareEvent({ kind: 'xs.rm', version: 1, doc: 'a XenStore subtree was removed' });
declareEvent({ kind: 'xs.tx', version: 1, doc: 'a XenStore transaction started or ended' });
declareEvent({ kind: 'xs.watch', version: 1, doc: 'a watch was set or removed' });
declareEvent({ kind: 'xs.watch_fire', version: 1, doc: 'a watch fired' });
declareEvent({ kind: 'xs.domain', version: 1, doc: 'a domain was introduced to or released from XenStore' });
declareEvent({ kind: 'xenbus.state', version: 1, doc: 'a xenbus device end changed state' });
