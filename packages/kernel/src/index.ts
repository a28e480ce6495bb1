export * from './events.js';
export * from './page.js';
export * from './workqueue.js';
export * from './kernel.js';
export * from './pool.js';
