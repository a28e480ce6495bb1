/**
 * What the launcher hands each daemon thread (workerData) and the commands it sends them. Every
 * thread speaks the runtime's command protocol (`startCommandWorker`): `ready`, then
 * `{type: 'command', id, cmd}` answered by `{type: 'reply', id, reply}`.
 */
import type { BlockJob, JobResult } from '@pvsim/loadgen';
import type { XenstoredWorkerData } from '@pvsim/xenstore';
import type { LogChannelSpec } from '@pvsim/eventlog';
import type { HypervisorSpec } from '@pvsim/hypervisor';
import type { XsQuota, XsRingSpec } from '@pvsim/xenstore';

/** One virtual block device as both ends see it. */
export interface VbdSpec {
  frontDom: number;
  backDom: number;
  /** `virtual-device` number (51712 for xvda). */
  devid: number;
  vdevName: string;
  frontDir: string;
  backDir: string;
  readOnly: boolean;
  /** Backing store: RAM of `bytes`, or a file (already created by the launcher if it was missing). */
  backing: { kind: 'mem'; bytes: number } | { kind: 'file'; path: string; sizeBytes?: number };
}

export interface Dom0WorkerData {
  spec: HypervisorSpec;
  log: LogChannelSpec | null;
  xs: XsRingSpec;
  policy: 'sync' | 'replace' | 'async';
  /** Waiter index of this thread on dom0's doorbells. */
  waiter: number;
  devices: VbdSpec[];
}

export interface GuestDiskSpec extends VbdSpec {
  /** The guest's own frames for this device: ring pages first, then the data-page pool. */
  gfns: number[];
  /** Grant refs, one per gfn. */
  grantRefs: number[];
  ringPageOrder: number;
}

export interface GuestWorkerData {
  spec: HypervisorSpec;
  log: LogChannelSpec | null;
  xs: XsRingSpec;
  domid: number;
  name: string;
  waiter: number;
  disks: GuestDiskSpec[];
}

/** xenstored's own worker (`@pvsim/xenstore`), with its socket. */
export type XenstoredLauncherData = XenstoredWorkerData & { socketPath: string };

export type DeviceCommand =
  | { type: 'wait-connected'; timeoutMs: number }
  | { type: 'status' }
  | { type: 'shutdown'; timeoutMs: number }
  /** A guest runs `job` on each of its disks at once (or only `devid`); disk i uses seed `job.seed + i`. */
  | { type: 'load'; job: BlockJob; devid?: number };

/** One disk's share of a `load`. */
export interface DiskLoadResult {
  devid: number;
  vdevName: string;
  result: JobResult;
}


export interface DeviceStatus {
  frontDom: number;
  devid: number;
  /** This end's xenbus state. */
  state: number;
  /** This end's event-channel port (-1 when not connected). */
  port: number;
  inflight: number;
  /** Completed requests (frontend) / ok. */
  completed?: number;
  error?: string | null;
}

export type DeviceReply = { ok: true; devices?: DeviceStatus[]; loads?: DiskLoadResult[] } | { ok: false; error: string };
