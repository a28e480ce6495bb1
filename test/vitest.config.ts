import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Multi-package, worker-thread and real-peer suites. They import the built packages (dist), so
// the root `npm test` builds everything first.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
