export * from './errors.js';
export * from './codec.js';
export * from './sring.js';
export * from './rings.js';
export * from './doorbell.js';
