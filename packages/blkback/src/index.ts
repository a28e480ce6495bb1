/**
 * @pvsim/blkback — Xen's block backend for one frontend device: the xenbus handshake, ring
 * processing as Linux's blkback (copy, advance, validate; bounded passes; final check), grant
 * mapping per request, backing devices (memory, file), and the unmap policy at completion
 * (`sync`, `replace`, `async`).
 */
export * from './audit.js';
export * from './backing.js';
export * from './device.js';
export * from './events.js';
export * from './xenbus.js';
