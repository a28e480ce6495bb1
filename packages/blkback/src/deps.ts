/** Re-exports of the protocol and ABI names blkback uses (one import site). */
export { EBUSY, GNTMAP_host_map, GNTMAP_readonly, GNTST_okay, assert, err, ok, type GrantRef, type Result } from '@pvsim/abi';
export { GATE_OK as GATE_OK_VALUE } from '@pvsim/hypervisor';
export * from '@pvsim/blkif';
export { describeBroken, type SharedRing } from '@pvsim/ring';
