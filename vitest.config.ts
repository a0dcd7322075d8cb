import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Every temporary file of a run (models, traces, clones, the CLI's own) goes
// under one directory, removed when the run ends (test/tmp-setup.ts): a run
// writes about a gigabyte, which small CI disks do not keep for long. Set
// before the test processes start, so they and their children inherit it.
if (!process.env.GRETA_TEST_TMPDIR) {
  process.env.GRETA_TEST_TMPDIR = mkdtempSync(join(tmpdir(), 'greta-test-'));
  process.env.TMPDIR = process.env.GRETA_TEST_TMPDIR;
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // GPU tests run on a GPU machine with `npm run test:gpu`.
    exclude: ['test/gpu/**', '**/node_modules/**'],
    testTimeout: 60_000,
    globalSetup: ['test/tmp-setup.ts'],
    // Tests spawn the CLI and run models; two cores are the target machine.
    maxWorkers: 2,
  },
});
