/**
 * @pvsim/blkif — Xen's `io/blkif.h` protocol, shared by blkfront and blkback (which never import
 * each other): message schema, ring slot codec, request validator, XenStore keys, vdev names,
 * and test peers.
 */
export * from './constants.js';
export * from './schema.js';
export * from './codec.js';
export * from './validate.js';
export * from './slot.js';
export { encodeCanonicalRequest, encodeCanonicalResponse } from './canonical.js';
export * from './xenstore.js';
export * from './vdev.js';
export * from './testing.js';
