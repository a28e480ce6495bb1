/** @pvsim/blkfront — a guest's Xen virtual block device over the blkif ring. */
export * from './events.js';
export * from './blkfront.js';
