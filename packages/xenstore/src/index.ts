export * from './types.js';
export * from './events.js';
export * from './store.js';
export * from './projection.js';
export * from './daemon.js';
export * from './client.js';
export * from './xenbus.js';
