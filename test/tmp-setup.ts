import { rmSync } from 'node:fs';

// Removes the run's temporary directory (vitest.config.ts makes it TMPDIR).
export function teardown(): void {
  const dir = process.env.GRETA_TEST_TMPDIR;
  if (dir) rmSync(dir, { recursive: true, force: true });
}
