export * from './shared.js';
export * from './client.js';
export * from './events.js';
