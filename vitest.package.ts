import { defineConfig } from 'vitest/config';

/**
 * Unit tests beside each package. Timeouts are generous on purpose: the machines are shared
 * 2-core boxes and nx runs several packages' tests at once, so a test that spawns threads or
 * processes may wait its turn; a test that is merely slow must not fail.
 */
export default defineConfig({
  test: { include: ['src/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 60_000 },
});
