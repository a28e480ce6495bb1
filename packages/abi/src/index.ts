export * from './result.js';
export * from './ids.js';
export * from './ring-layout.js';
export * from './grant.js';
