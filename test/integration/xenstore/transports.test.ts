/**
 * xenstored in its own thread serving both transports — the xs_wire Unix socket (dom0 tools)
 * and the domains' rings — through one dispatcher: the same script gets the same replies and
 * events over either, a change made over one transport reaches a watcher on the other at once,
 * and an XS_RELEASE over the socket closes the released domain's rings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  XS_GET_DOMAIN_PATH,
  XS_IS_DOMAIN_INTRODUCED,
  XS_RELEASE,
  XS_WATCH,
  XS_WRITE,
  XsRingPeer,
  XsWireSocketPeer,
  runXsScript,
  startXenstoredWorker,
  xsDispatchScript,
  xsScriptMismatches,
  xsScriptWithout,
  type XenstoredHandle,
  type XsScriptPeer,
} from '@pvsim/xenstore';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** A xenstored thread that also serves xs_wire on a fresh socket. */
async function xenstored(): Promise<{ xs: XenstoredHandle; socketPath: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'pvsim-xs-transports-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'socket');
  const xs = await startXenstoredWorker({ socketPath });
  cleanups.push(() => xs.stop());
  return { xs, socketPath };
}

function closing<T extends XsScriptPeer>(p: T): T {
  cleanups.push(() => p.close());
  return p;
}

/** Poll `take` until it has yielded `n` items (or 5 s went by); everything it yielded. */
async function collect(take: () => string[], n: number): Promise<string[]> {
  const got: string[] = [];
  const end = Date.now() + 5000;
  while (got.length < n && Date.now() < end) {
    got.push(...take());
    if (got.length < n) await new Promise((r) => setTimeout(r, 2));
  }
  return got;
}

describe('xenstored thread: one dispatcher behind the socket and the rings', () => {
  it('the same script over its socket and over its rings gets the same replies and events', async () => {
    const script = xsScriptWithout(xsDispatchScript(), 'dom1');
    const a = await xenstored();
    const b = await xenstored();
    const socketPeers = { dom0: closing(await XsWireSocketPeer.open(a.socketPath)), dom0b: closing(await XsWireSocketPeer.open(a.socketPath)) };
    const ringPeers = { dom0: closing(new XsRingPeer(await b.xs.connect(0))), dom0b: closing(new XsRingPeer(await b.xs.connect(0))) };
    const overSocket = await runXsScript(socketPeers, script, { barrier: true });
    const overRings = await runXsScript(ringPeers, script, { barrier: true });
    expect(xsScriptMismatches(script, overSocket)).toEqual([]);
    expect(overRings).toEqual(overSocket);
    const st = await b.xs.stats();
    expect([st.malformed, st.internalErrors, st.brokenRings]).toEqual([0, 0, 0]);
  });

  it('a change over the socket reaches a ring watcher that sends nothing, and the other way round', async () => {
    const { xs, socketPath } = await xenstored();
    const tool = closing(await XsWireSocketPeer.open(socketPath));
    const ring = closing(new XsRingPeer(await xs.connect(0)));
    expect(await ring.request(XS_WATCH, 0, ['/tool/x', 'r'])).toBe('OK');
    expect(await tool.request(XS_WATCH, 0, ['/tool/y', 's'])).toBe('OK');
    // The ring client has nothing outstanding: only xenstored's own wake-up delivers this.
    expect(await tool.request(XS_WRITE, 0, ['/tool/x/k', 'from the socket'])).toBe('OK');
    expect(await collect(() => ring.takeEvents(), 2)).toEqual(['/tool/x|r', '/tool/x/k|r']);
    expect(await ring.request(XS_WRITE, 0, ['/tool/y', 'from a ring'])).toBe('OK');
    expect(await collect(() => tool.takeEvents(), 2)).toEqual(['/tool/y|s', '/tool/y|s']);
  });

  it("an XS_RELEASE over the socket closes the domain's rings and fires @releaseDomain on a ring", async () => {
    const { xs, socketPath } = await xenstored();
    const tool = closing(await XsWireSocketPeer.open(socketPath));
    const dom0 = closing(new XsRingPeer(await xs.connect(0)));
    await xs.connect(4);
    expect((await xs.stats()).connections).toBe(2);
    expect(await dom0.request(XS_WATCH, 0, ['@releaseDomain', 'rel'])).toBe('OK');
    expect(await tool.request(XS_IS_DOMAIN_INTRODUCED, 0, ['4'])).toBe('bool:T');
    expect(await tool.request(XS_RELEASE, 0, ['4'])).toBe('OK');
    expect((await xs.stats()).connections).toBe(1);
    expect(await dom0.request(XS_IS_DOMAIN_INTRODUCED, 0, ['4'])).toBe('bool:F');
    expect(await collect(() => dom0.takeEvents(), 2)).toEqual(['@releaseDomain|rel', '@releaseDomain|rel']);
    expect(await tool.request(XS_GET_DOMAIN_PATH, 0, ['4'])).toBe('path:/local/domain/4');
  });
});
