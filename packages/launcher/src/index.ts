export * from './launch.js';
export * from './status.js';
export type { VbdSpec, DeviceStatus, DiskLoadResult } from './protocol.js';
export { makeJob, mergedLatency, type BlockJob, type JobResult, type LatencyStats } from '@pvsim/loadgen';
// The topology parser, for callers that go file → launch (the CLI depends only on the launcher).
export { parseTopology, formatTopologyErrors, type Topology, type TopologyError } from '@pvsim/topology';
