import { defineConfig } from 'vitest/config';

// `npm run test:gpu`: needs a GPU and an addon from `npm run build:hip`.
export default defineConfig({
  test: {
    include: ['test/gpu/**/*.gpu.test.ts'],
    testTimeout: 600_000,
    fileParallelism: false,
  },
});
