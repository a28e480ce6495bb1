/**
 * blkback's side of the xenbus handshake (Linux `xen-blkback/xenbus.c`): probe keys before
 * InitWait, the frontend's transport keys parsed as untrusted input at connect, the device
 * properties published before Connected, and a disconnect that waits for requests in flight
 * (Linux's -EBUSY). A halted ring closes the device; the backend process lives on.
 */
import { buildBackendConnectKeys, buildBackendProbeKeys, parseFrontendKeys } from '@pvsim/blkif';
import { GNTMAP_host_map, assert, err, ok, type GrantRef } from '@pvsim/abi';
import type { GnttabMapGrantRef, GnttabUnmapGrantRef } from '@pvsim/hypervisor';
import type { Kernel } from '@pvsim/kernel';
import { SharedRing } from '@pvsim/ring';
import { BLKIF_SLOT_BYTES } from '@pvsim/blkif';
import { XenbusState, runBackendHandshake, xenbusSwitchState, type BackendEnd, type XsClient } from '@pvsim/xenstore';
import type { Clock } from '@pvsim/runtime';
import type { BlkbackDevice, RingMapper } from './device.js';
import { BLKBACK_VDEV_UNKNOWN } from './events.js';

/** `xen_blkif_max_ring_order` (Linux: XENBUS_MAX_RING_GRANT_ORDER = 4). */
export const BLKBACK_MAX_RING_PAGE_ORDER = 4;

/**
 * A `RingMapper` over the kernel's grant mappings: the ring pages are mapped (read-write) into
 * ballooned pages, and each is reached through the kernel's hypercall client (`frameView` of the
 * page's own gfn: the backend's page tables, as `xenbus_map_ring_valloc` gives Linux a vaddr),
 * never through machine memory. The ring's views are used only between this map and `unmap`:
 * the device drops its ring before it unmaps (see `BlkbackDevice.disconnect`), since a view
 * cannot be revoked.
 */
export function kernelRingMapper(kernel: Kernel): RingMapper {
  return {
    map(frontDom, refs) {
      const pages = kernel.gnttab_alloc_pages(refs.length);
      if (typeof pages === 'number') return err(`no pages to map the ring (${pages})`);
      const ops: GnttabMapGrantRef[] = refs.map((ref, i) => ({ hostGfn: pages[i]!.gfn, flags: GNTMAP_host_map, ref, dom: frontDom }));
      const rc = kernel.gnttab_map_refs(ops, pages);
      const bad = ops.findIndex((o) => o.status !== 0);
      const undo = () => {
        const done = ops.filter((o) => o.status === 0);
        const donePages = pages.filter((_, i) => ops[i]!.status === 0);
        if (done.length) kernel.gnttab_unmap_refs(done.map((o) => ({ hostGfn: o.hostGfn, handle: o.handle! })), donePages);
        kernel.gnttab_free_pages(pages);
      };
      if (rc !== 0 || bad >= 0) {
        undo();
        return err(`frontend gave us ring-ref ${refs[bad < 0 ? 0 : bad]} that cannot be mapped (status ${bad < 0 ? rc : ops[bad]!.status})`);
      }
      const views: Uint8Array[] = [];
      for (const p of pages) {
        const v = kernel.client.frameView(p.gfn);
        if (!v.ok) {
          // Every page was just mapped writable here, under our own lock order: refusing one is
          // an inconsistency between the kernel and the hypervisor, not the frontend's doing.
          undo();
          assert(false, `blkback: no view of the ring page just mapped at gfn ${p.gfn} (${v.error.reason}): a bug`);
        }
        views.push(v.value);
      }
      const sring = new SharedRing(views, BLKIF_SLOT_BYTES);
      const unmapOps: GnttabUnmapGrantRef[] = ops.map((o) => ({ hostGfn: o.hostGfn, handle: o.handle! }));
      return ok({
        sring,
        unmap() {
          kernel.gnttab_unmap_refs(unmapOps, pages);
          kernel.gnttab_free_pages(pages);
        },
      });
    },
  };
}

/**
 * Run the handshake for `device` on `backDir` (watching `frontDir`). Resolves in InitWait; from
 * then on the device connects, disconnects and reconnects as the frontend moves.
 */
export async function runBlkbackXenbus(xs: XsClient, dirs: { backDir: string; frontDir: string }, device: BlkbackDevice, frontDom: number, opts: { clock?: Clock } = {}): Promise<BackendEnd> {
  if (device.vdev === BLKBACK_VDEV_UNKNOWN) {
    // Linux's backend_changed: the handle is the last component of the frontend's node
    // (`/local/domain/<dom>/device/vbd/<vdev>`), written by the toolstack, not the guest.
    const last = dirs.frontDir.slice(dirs.frontDir.lastIndexOf('/') + 1);
    const vdev = /^\d{1,10}$/.test(last) ? Number(last) : NaN;
    if (vdev >= 0 && vdev <= 0x7fff_ffff) device.vdev = vdev;
  }
  device.onHalt = () => {
    void xenbusSwitchState(xs, dirs.backDir, XenbusState.Closing).catch(() => {});
  };
  return runBackendHandshake(
    xs,
    dirs,
    {
      features: () => Object.fromEntries(buildBackendProbeKeys({ maxRingPageOrder: BLKBACK_MAX_RING_PAGE_ORDER })),
      frontendKeys: ['event-channel'],
      async connect() {
        // Read the whole directory: ring-ref or ring-page-order + ring-ref0..N, protocol.
        const entries: Record<string, string> = {};
        for (const k of await xs.directory(dirs.frontDir)) {
          const v = await xs.tryRead(`${dirs.frontDir}/${k}`);
          if (v !== null) entries[k] = v;
        }
        const t = parseFrontendKeys(entries, { maxRingPageOrder: BLKBACK_MAX_RING_PAGE_ORDER });
        if (!t.ok) throw new Error(t.error);
        const c = device.connect({ frontDom, ringRefs: t.value.ringRefs as readonly GrantRef[], eventChannel: t.value.eventChannel });
        if (!c.ok) throw new Error(c.error);
        const d = device.disk;
        return Object.fromEntries(
          buildBackendConnectKeys({ sectors: device.blkifDisk.sectors, sectorSize: d.sectorSize, readOnly: d.readOnly, featureFlushCache: true, featurePersistent: false }),
        );
      },
      async disconnect() {
        await device.disconnectWhenIdle();
      },
    },
    opts.clock ? { clock: opts.clock } : {},
  );
}
