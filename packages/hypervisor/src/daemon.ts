/**
 * The hypervisor daemon: owns domain lifecycle (create, pause, destroy) behind a small command
 * protocol. Hypercalls themselves run on the calling threads (client.ts); only the toolstack's
 * operations go through here, as `xl` goes through the toolstack. Runs in-process (tests, the
 * deterministic mode) or in its own worker thread (`startHypervisorWorker`).
 */
import { startCommandWorker } from '@pvsim/runtime';
import type { Worker } from 'node:worker_threads';
import type { EventEmitter, LogChannelSpec } from '@pvsim/eventlog';
import { Hypervisor, type DomainCreateOptions, type HypercallClient } from './client.js';
import type { HypervisorSpec } from './shared.js';

export type HvCommand =
  | { type: 'create'; opts: DomainCreateOptions }
  | { type: 'destroy'; domid: number }
  | { type: 'pause'; domid: number; paused: boolean }
  | { type: 'list' };

export interface DomainListEntry {
  domid: number;
  name: string;
  state: 'active' | 'dying';
  memoryPages: number;
  maxPages: number;
  paused: boolean;
  privileged: boolean;
  mappings: number;
}

export type HvReply = { ok: true; domid?: number; domains?: DomainListEntry[] } | { ok: false; error: string; errno?: number };

export interface Dom0Options {
  memoryPages: number;
  name?: string;
}

export class HypervisorDaemon {
  readonly hv: Hypervisor;
  private readonly toolstack: HypercallClient;

  /** Boots the machine's dom0 (privileged) if it does not exist yet. */
  constructor(spec: HypervisorSpec, events: EventEmitter, dom0: Dom0Options) {
    this.hv = new Hypervisor(spec);
    if (!this.hv.s.isActive(0)) {
      const r = this.hv.toolstack(events).domainCreate({ domid: 0, name: dom0.name ?? 'Domain-0', memoryPages: dom0.memoryPages, privileged: true });
      if (r !== 0) throw new Error(`could not create dom0: errno ${-r}`);
      this.hv.client(0, events).domainPause(0, false);
    }
    this.toolstack = this.hv.client(0, events);
  }

  /** One command; never throws for a bad request (it is answered with an error). */
  handle(cmd: HvCommand): HvReply {
    switch (cmd.type) {
      case 'create': {
        const r = this.toolstack.domainCreate(cmd.opts);
        return r >= 0 ? { ok: true, domid: r } : { ok: false, error: `domain create '${cmd.opts.name}' failed: ${errnoName(r)}`, errno: r };
      }
      case 'destroy': {
        const r = this.toolstack.domainDestroy(cmd.domid);
        return r === 0 ? { ok: true } : { ok: false, error: `destroy d${cmd.domid}: ${errnoName(r)}`, errno: r };
      }
      case 'pause': {
        const r = this.toolstack.domainPause(cmd.domid, cmd.paused);
        return r === 0 ? { ok: true } : { ok: false, error: `pause d${cmd.domid}: ${errnoName(r)}`, errno: r };
      }
      case 'list':
        return { ok: true, domains: this.list() };
      default:
        return { ok: false, error: `unknown command ${JSON.stringify((cmd as { type?: unknown }).type)}` };
    }
  }

  /** Like `xl list`. */
  list(): DomainListEntry[] {
    const out: DomainListEntry[] = [];
    for (let d = 0; d < this.hv.config.maxDomains; d++) {
      const i = this.toolstack.domainInfo(d);
      if (!i) continue;
      out.push({
        domid: d,
        name: i.name,
        state: i.state === 1 ? 'active' : 'dying',
        memoryPages: i.totPages,
        maxPages: i.maxPages,
        paused: i.paused,
        privileged: i.privileged,
        mappings: this.toolstack.mappingsHeld(d),
      });
    }
    return out;
  }
}

const ERRNO: Record<number, string> = { 1: 'EPERM', 3: 'ESRCH', 12: 'ENOMEM', 16: 'EBUSY', 22: 'EINVAL', 28: 'ENOSPC' };
export const errnoName = (r: number): string => `${ERRNO[-r] ?? 'errno'} (${r})`;

export interface HypervisorWorkerData {
  spec: HypervisorSpec;
  log: LogChannelSpec | null;
  dom0: Dom0Options;
}

export interface HypervisorHandle {
  /** The daemon's thread (for `worker.performance.eventLoopUtilization()`). */
  readonly worker: Worker;
  request(cmd: HvCommand): Promise<HvReply>;
  stop(): Promise<void>;
}

/** The daemon in its own thread; commands travel over a MessagePort as a discriminated union. */
export async function startHypervisorWorker(data: HypervisorWorkerData): Promise<HypervisorHandle> {
  const w = await startCommandWorker<HvCommand, HvReply>(new URL('./hypervisor-worker.js', import.meta.url), data, 'pvsim-hypervisor');
  const worker = w.worker;
  return {
    worker,
    request: (cmd) => w.request(cmd),
    async stop() {
      await worker.terminate();
    },
  };
}
