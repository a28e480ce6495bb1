export * from './clock.js';
export * from './keepalive.js';
