export * from './types.js';
export * from './events.js';
export * from './store.js';
