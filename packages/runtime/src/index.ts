export * from './clock.js';
export * from './keepalive.js';
export * from './command-worker.js';
