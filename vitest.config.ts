import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // GPU tests run on a GPU machine with `npm run test:gpu`.
    exclude: ['test/gpu/**', '**/node_modules/**'],
    testTimeout: 60_000,
    // Tests spawn the CLI and run models; two cores are the target machine.
    maxWorkers: 2,
  },
});
