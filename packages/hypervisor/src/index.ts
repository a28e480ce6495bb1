export * from './shared.js';
export * from './client.js';
export * from './events.js';
export * from './projection.js';
export * from './daemon.js';
export * from './inprocess.js';
