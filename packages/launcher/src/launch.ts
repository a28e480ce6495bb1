/**
 * `launch(topology)`: a running pvsim host. Threads: the event-log sink, the hypervisor daemon,
 * xenstored (serving its xs_wire socket too), one dom0 block-backend thread for every disk, and
 * one thread per guest running its frontends. This thread is the toolstack: it creates the
 * domains (through the hypervisor daemon), writes their XenStore homes and device directories,
 * and reads back status the way `xl list` / `xl block-list` do.
 */
import { existsSync, mkdirSync, openSync, closeSync, ftruncateSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { XEN_PAGE_SIZE, ringEntries } from '@pvsim/abi';
import { BLKIF_SLOT_BYTES } from '@pvsim/blkif';
import { EventWriter, nullEmitter, startSinkWorker, writeSnapshotFile, SNAPSHOT_FILE_NAME, type EventEmitter, type LogChannelSpec, type SinkWorkerHandle, type StateSnapshot } from '@pvsim/eventlog';
import { Hypervisor, createHypervisorSpec, grantsSnapshot, startHypervisorWorker, type HypervisorHandle, type HvReply } from '@pvsim/hypervisor';
import { RealClock, startCommandWorker, type CommandWorker } from '@pvsim/runtime';
import type { Topology } from '@pvsim/topology';
import { XENSTORED_WORKER_URL, XsRingClient, xenbusAddDevice, xenbusRemoveDevice, type XenstoredHandle, type XsdCommand, type XsdReply } from '@pvsim/xenstore';
import type { BlockJob } from '@pvsim/loadgen';
import type { Worker } from 'node:worker_threads';
import type { DeviceCommand, DeviceReply, DeviceStatus, DiskLoadResult, Dom0WorkerData, GuestDiskSpec, GuestWorkerData, VbdSpec, XenstoredLauncherData } from './protocol.js';

/** How long one cleanup step of a failed launch may take before the next one runs. */
const UNWIND_STEP_MS = 5000;

export interface LaunchOptions {
  /** Where the run lives: `events/` (the log), `snapshot.msgpack`, the default socket. */
  runDir: string;
  /** xenstored's xs_wire socket (default `<runDir>/xenstored.sock`). */
  xenstoreSocket?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** How long devices may take to reach Connected (default 20 s). */
  connectTimeoutMs?: number;
}

/** `xl list`: one row per domain. */
export interface DomainRow {
  name: string;
  id: number;
  /** MiB. */
  mem: number;
  vcpus: number;
  /** `r-----`-style flags (running / paused / dying). */
  state: string;
}

/** `xl block-list`: one row per virtual block device. */
export interface BlockRow {
  domain: string;
  domid: number;
  vdev: number;
  vdevName: string;
  be: number;
  handle: number;
  /** The frontend's xenbus state number (4 = Connected). */
  state: number;
  backState: number;
  evtch: number;
  ringRef: string;
  backendPath: string;
  /** Live I/O counters from the two ends (absent when a thread did not answer). */
  io?: { frontInflight: number; completed: number; backInflight: number };
}

export interface RunStatus {
  domains: DomainRow[];
  devices: BlockRow[];
}

/** A daemon thread's event-loop time so far (ms): diff two samples for a window's busy share. */
export interface ThreadSample {
  name: string;
  idle: number;
  active: number;
}

export interface Run {
  readonly runDir: string;
  /** The event log (`<runDir>/events`), or null when the topology turns it off (`run.log: false`). */
  readonly logDir: string | null;
  readonly xenstoreSocket: string;
  status(): Promise<RunStatus>;
  /**
   * Run a load job in guest `domain` (its name) on each of its disks at once, or only on `devid`;
   * resolves with each disk's result. The job runs in the guest's thread, as fio would.
   */
  load(domain: string, job: BlockJob, devid?: number): Promise<DiskLoadResult[]>;
  /** Event-loop time of every daemon thread so far (`eventLoopUtilization`), by thread name. */
  threads(): ThreadSample[];
  /** Drain, disconnect devices, destroy guests, save the snapshot, close the log. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Pages of guest memory each disk takes for its ring and data pool, and grant refs it uses. The
 * pool holds two pages per ring slot (at least 64): a full ring of one-page I/Os, plus room for
 * pages whose end of access is deferred while the backend still maps them.
 */
const diskDataPages = (ringPageOrder: number) => Math.max(64, 2 * ringEntries(ringPageOrder, BLKIF_SLOT_BYTES));
const DISK_GFN_STRIDE = 64;
const GFN_BASE = 16;
const GREF_BASE = 8;
const BALLOON_GFNS = 8192;
const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;

interface Guest {
  domid: number;
  name: string;
  memoryBytes: number;
  vcpus: number;
  disks: GuestDiskSpec[];
  worker: CommandWorker<DeviceCommand, DeviceReply> | null;
}

function xsHandle(w: CommandWorker<XsdCommand, XsdReply>): XenstoredHandle {
  const req = async (cmd: XsdCommand) => {
    const r = await w.request(cmd);
    if (!r.ok) throw new Error(`xenstored: ${r.error}`);
    return r;
  };
  return {
    connect: async (dom) => (await req({ type: 'connect', dom })).spec!,
    disconnect: async (conn) => void (await req({ type: 'disconnect', conn })),
    introduce: async (dom) => void (await req({ type: 'introduce', dom })),
    release: async (dom) => void (await req({ type: 'release', dom })),
    snapshot: async (atSeq) => (await req(atSeq === undefined ? { type: 'snapshot' } : { type: 'snapshot', atSeq })).snapshot!,
    stats: async () => (await req({ type: 'stats' })).stats!,
    stop: async () => {
      if (!w.failure) await req({ type: 'stop' });
      await w.worker.terminate();
    },
  };
}

async function deviceRequest(w: CommandWorker<DeviceCommand, DeviceReply>, what: string, cmd: DeviceCommand): Promise<DeviceStatus[]> {
  const r = await w.request(cmd);
  if (!r.ok) throw new Error(`${what}: ${r.error}`);
  return r.devices ?? [];
}

const hvOk = (r: HvReply, what: string): Extract<HvReply, { ok: true }> => {
  if (!r.ok) throw new Error(`hypervisor: ${what}: ${r.error}`);
  return r;
};

/** A file-backed disk whose image is missing: created (sparse) when the topology gives its size. */
function prepareFileDisk(path: string, size: number | undefined, where: string): { kind: 'file'; path: string; sizeBytes?: number } {
  if (existsSync(path)) return size === undefined ? { kind: 'file', path } : { kind: 'file', path, sizeBytes: size };
  if (size === undefined) throw new Error(`${where}: disk image ${path} does not exist (give the disk a size to have it created)`);
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'wx');
  try {
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return { kind: 'file', path, sizeBytes: size };
}

const ioOf = (f: DeviceStatus | undefined, b: DeviceStatus | undefined): Pick<BlockRow, 'io'> =>
  f && b ? { io: { frontInflight: f.inflight, completed: f.completed ?? 0, backInflight: b.inflight } } : {};

export async function launch(topology: Topology, opts: LaunchOptions): Promise<Run> {
  const say = opts.log ?? (() => {});
  const runDir = resolve(opts.runDir);
  const logDir = join(runDir, 'events');
  const socketPath = resolve(opts.xenstoreSocket ?? join(runDir, 'xenstored.sock'));
  mkdirSync(topology.run.log ? logDir : runDir, { recursive: true });
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;

  // Everything started so far, stopped in reverse on failure.
  const undo: (() => Promise<unknown>)[] = [];
  // Undo what started, newest first; each step is bounded so one stuck thread cannot hang the
  // others' cleanup.
  const unwind = async () => {
    for (const f of undo.splice(0).reverse()) {
      await Promise.race([f().catch(() => {}), new Promise<void>((r) => setTimeout(r, UNWIND_STEP_MS).unref())]);
    }
  };
  try {
    // Backing images first: a missing one is a clear error before any thread starts.
    const backings = topology.domains.map((d) =>
      d.disks.map((k, i): VbdSpec['backing'] =>
        k.target.kind === 'mem' ? { kind: 'mem', bytes: k.target.size } : prepareFileDisk(k.target.path, k.target.size, `domains[${topology.domains.indexOf(d)}].disks[${i}]`),
      ),
    );

    // `run.log: false` runs without the sink: every thread gets a null emitter, no snapshot.
    const sink: SinkWorkerHandle | null = topology.run.log
      ? await startSinkWorker({ dir: logDir, header: { runId: `pvsim-up-${process.pid}-${Date.now()}`, seed: topology.run.seed ?? 0 } })
      : null;
    if (sink) undo.push(() => sink.close());
    const channel = async (name: string, dom: number): Promise<LogChannelSpec | null> => (sink ? sink.channel(name, dom) : null);
    const clock = new RealClock(sink?.hub.epochMs);

    // The machine.
    const pages = (bytes: number) => Math.ceil(bytes / XEN_PAGE_SIZE);
    const maxDomPages = Math.max(pages(topology.dom0.memory), ...topology.domains.map((d) => pages(d.memory)));
    const spec = createHypervisorSpec({
      frames: pages(topology.run.memory),
      maxDomains: Math.max(8, topology.domains.length + 2),
      gfnsPerDomain: maxDomPages + BALLOON_GFNS,
      evtchnPorts: 64,
    });
    const hvd: HypervisorHandle = await startHypervisorWorker({ spec, log: await channel('hypervisor', 0), dom0: { memoryPages: pages(topology.dom0.memory) } });
    undo.push(() => hvd.stop());
    const hv = new Hypervisor(spec);
    say(`hypervisor: ${spec.config.frames} frames, dom0 ${topology.dom0.memory >> 20} MiB`);

    // xenstored, with its socket.
    const xsData: XenstoredLauncherData = { log: await channel('xenstored', 0), socketPath };
    const xsw = await startCommandWorker<XsdCommand, XsdReply>(XENSTORED_WORKER_URL, xsData, 'pvsim-xenstored');
    const xs = xsHandle(xsw);
    undo.push(() => xs.stop());
    say(`xenstored: XENSTORED_PATH=${socketPath}`);
    const toolLog = await channel('toolstack', 0);
    const toolEvents: EventEmitter = toolLog ? new EventWriter(toolLog, clock) : nullEmitter();
    const toolstack = new XsRingClient(await xs.connect(0), { events: toolEvents });
    undo.push(async () => toolstack.close());
    await toolstack.write('/local/domain/0/name', 'Domain-0');
    await toolstack.write('/local/domain/0/domid', '0');

    // Guests: domains, XenStore homes, device directories.
    const guests: Guest[] = [];
    for (const [gi, d] of topology.domains.entries()) {
      const created = hvOk(await hvd.request({ type: 'create', opts: { name: d.name, memoryPages: pages(d.memory) } }), `create ${d.name}`);
      const domid = created.domid!;
      undo.push(() => hvd.request({ type: 'destroy', domid }));
      hvOk(await hvd.request({ type: 'pause', domid, paused: false }), `unpause ${d.name}`);
      const home = `/local/domain/${domid}`;
      await toolstack.mkdir(home);
      await toolstack.setPerms(home, [{ dom: domid, mode: 'n' }]);
      await toolstack.write(`${home}/name`, d.name);
      await toolstack.write(`${home}/domid`, String(domid));
      await toolstack.write(`${home}/memory/target`, String(d.memory >> 10));
      const order = topology.dom0.blkback.maxRingPageOrder;
      const disks: GuestDiskSpec[] = [];
      for (const [i, k] of d.disks.entries()) {
        const { frontDir, backDir } = await xenbusAddDevice(toolstack, { type: 'vbd', frontDom: domid, backDom: 0, devid: k.vdev.number });
        await toolstack.write(`${backDir}/params`, k.target.kind === 'mem' ? `mem:${k.target.size}` : k.target.path);
        await toolstack.write(`${backDir}/mode`, k.access === 'ro' ? 'r' : 'w');
        await toolstack.write(`${frontDir}/virtual-device`, String(k.vdev.number));
        const n = (1 << order) + diskDataPages(order);
        const stride = Math.max(DISK_GFN_STRIDE, n);
        const gfns = Array.from({ length: n }, (_, j) => GFN_BASE + i * stride + j);
        if (gfns[gfns.length - 1]! >= pages(d.memory)) throw new Error(`${d.name}: ${d.memory >> 20} MiB is too little memory for ${d.disks.length} disks`);
        disks.push({
          frontDom: domid,
          backDom: 0,
          devid: k.vdev.number,
          vdevName: k.vdev.name,
          frontDir,
          backDir,
          readOnly: k.access === 'ro',
          backing: backings[gi]![i]!,
          gfns,
          grantRefs: gfns.map((_, j) => GREF_BASE + i * stride + j),
          ringPageOrder: order,
        });
      }
      guests.push({ domid, name: d.name, memoryBytes: d.memory, vcpus: d.vcpus, disks, worker: null });
      say(`domain ${d.name}: d${domid}, ${d.memory >> 20} MiB, ${d.disks.length} disk(s)`);
    }

    // dom0's backend thread: every disk. It answers once each backend is in InitWait.
    const allDisks = guests.flatMap((g) => g.disks);
    const dom0Data: Dom0WorkerData = {
      spec,
      log: await channel('blkback', 0),
      xs: await xs.connect(0),
      policy: topology.dom0.blkback.unmapPolicy,
      waiter: 1,
      devices: allDisks.map(({ gfns: _g, grantRefs: _r, ringPageOrder: _o, ...v }) => v),
    };
    const dom0w = await startCommandWorker<DeviceCommand, DeviceReply>(new URL('./dom0-worker.js', import.meta.url), dom0Data, 'pvsim-dom0-blkback');
    undo.push(() => dom0w.worker.terminate());
    // One thread per guest: its frontends.
    for (const g of guests) {
      const data: GuestWorkerData = { spec, log: await channel(`${g.name}-blkfront`, g.domid), xs: await xs.connect(g.domid), domid: g.domid, name: g.name, waiter: 0, disks: g.disks };
      const w = await startCommandWorker<DeviceCommand, DeviceReply>(new URL('./guest-worker.js', import.meta.url), data, `pvsim-${g.name}`);
      g.worker = w;
      undo.push(() => w.worker.terminate());
    }

    // Every device to Connected (and one read through each).
    const connectAll = Promise.all([
      deviceRequest(dom0w, 'dom0 blkback', { type: 'wait-connected', timeoutMs: connectTimeoutMs }),
      ...guests.map((g) => deviceRequest(g.worker!, g.name, { type: 'wait-connected', timeoutMs: connectTimeoutMs })),
    ]);
    try {
      await connectAll;
    } catch (e) {
      throw new Error(`devices did not all reach Connected within ${connectTimeoutMs} ms: ${e instanceof Error ? e.message : String(e)}`);
    }
    say(`all ${allDisks.length} device(s) Connected`);

    const status = async (): Promise<RunStatus> => {
      const list = hvOk(await hvd.request({ type: 'list' }), 'list').domains ?? [];
      const domains: DomainRow[] = list.map((d) => ({
        name: d.name,
        id: d.domid,
        mem: Math.round((d.memoryPages * XEN_PAGE_SIZE) / (1 << 20)),
        vcpus: d.domid === 0 ? 1 : (guests.find((g) => g.domid === d.domid)?.vcpus ?? 1),
        state: `${d.paused ? '-p' : 'r-'}${d.state === 'dying' ? '--d' : '---'}-`,
      }));
      const devices: BlockRow[] = [];
      // Live counters from each end's thread (a thread that does not answer leaves them out).
      const ask = async (w: CommandWorker<DeviceCommand, DeviceReply>, what: string) =>
        Promise.race([deviceRequest(w, what, { type: 'status' }), new Promise<DeviceStatus[]>((r) => setTimeout(() => r([]), 2000).unref())]).catch(() => [] as DeviceStatus[]);
      const backs = await ask(dom0w, 'dom0 blkback');
      const fronts = (await Promise.all(guests.map((g) => ask(g.worker!, g.name)))).flat();
      for (const g of guests) {
        for (const k of g.disks) {
          const rd = async (p: string) => (await toolstack.tryRead(p)) ?? '';
          devices.push({
            domain: g.name,
            domid: g.domid,
            vdev: k.devid,
            vdevName: k.vdevName,
            be: k.backDom,
            handle: k.devid,
            state: Number(await rd(`${k.frontDir}/state`)) || 0,
            backState: Number(await rd(`${k.backDir}/state`)) || 0,
            evtch: Number((await rd(`${k.frontDir}/event-channel`)) || -1),
            ringRef: (await rd(`${k.frontDir}/ring-ref`)) || (await rd(`${k.frontDir}/ring-ref0`)) || '-1',
            backendPath: k.backDir,
            ...ioOf(fronts.find((f) => f.frontDom === g.domid && f.devid === k.devid), backs.find((b) => b.frontDom === g.domid && b.devid === k.devid)),
          });
        }
      }
      return { domains, devices };
    };

    let down: Promise<void> | null = null;
    const shutdown = async (): Promise<void> => {
      const problems: string[] = [];
      const note = (what: string) => (e: unknown) => void problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
      // Frontends drain and close; backends follow to Closed and unmap.
      await Promise.all(guests.map((g) => deviceRequest(g.worker!, g.name, { type: 'shutdown', timeoutMs: SHUTDOWN_TIMEOUT_MS }).catch(note(g.name))));
      await deviceRequest(dom0w, 'dom0 blkback', { type: 'shutdown', timeoutMs: SHUTDOWN_TIMEOUT_MS }).catch(note('dom0 blkback'));
      for (const g of guests) await g.worker!.worker.terminate();
      await dom0w.worker.terminate();
      // The toolstack removes the devices and destroys the guests (`xl destroy`).
      for (const g of guests) {
        for (const k of g.disks) await xenbusRemoveDevice(toolstack, { type: 'vbd', frontDom: g.domid, backDom: 0, devid: k.devid }).catch(note(`remove ${k.vdevName}`));
        await toolstack.rm(`/local/domain/${g.domid}`).catch(note(`rm d${g.domid}`));
        await hvd.request({ type: 'destroy', domid: g.domid }).then((r) => hvOk(r, `destroy ${g.name}`), note(`destroy ${g.name}`));
        await xs.release(g.domid).catch(note(`release d${g.domid}`));
      }
      toolstack.close();
      // Replay-equals-state: the live grant tables and the store, at the run's last seq.
      if (sink) {
        const atSeq = Number(Atomics.load(new BigInt64Array(sink.hub.seq), 0)) - 1;
        const snaps: StateSnapshot[] = [grantsSnapshot(hv.s, atSeq), await xs.snapshot(atSeq)];
        await writeSnapshotFile(join(runDir, SNAPSHOT_FILE_NAME), snaps);
      }
      await xs.stop();
      await hvd.stop();
      await sink?.close();
      undo.length = 0;
      if (problems.length) throw new Error(`shutdown: ${problems.join('; ')}`);
    };

    const load = async (domain: string, job: BlockJob, devid?: number): Promise<DiskLoadResult[]> => {
      if (down) throw new Error('the run is shutting down');
      const g = guests.find((x) => x.name === domain);
      if (!g) throw new Error(`no guest named ${JSON.stringify(domain)} (guests: ${guests.map((x) => x.name).join(', ') || 'none'})`);
      const r = await g.worker!.request(devid === undefined ? { type: 'load', job } : { type: 'load', job, devid });
      if (!r.ok) throw new Error(`${domain}: ${r.error}`);
      return r.loads ?? [];
    };
    const threadList: [string, Worker][] = [
      ['hypervisor', hvd.worker],
      ['xenstored', xsw.worker],
      ['dom0-blkback', dom0w.worker],
      ...guests.map((g): [string, Worker] => [g.name, g.worker!.worker]),
      ...(sink ? [['log-sink', sink.worker] as [string, Worker]] : []),
    ];
    const threads = (): ThreadSample[] =>
      threadList.map(([name, w]) => {
        const u = w.performance.eventLoopUtilization();
        return { name, idle: u.idle, active: u.active };
      });

    return {
      runDir,
      logDir: sink ? logDir : null,
      xenstoreSocket: socketPath,
      status,
      load,
      threads,
      shutdown: () => (down ??= shutdown()),
    };
  } catch (e) {
    await unwind();
    throw e;
  }
}
