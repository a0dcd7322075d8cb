// Memory stays flat over many runs in one process: 200 traces through the
// library API in a child process (npm run bench:memory), host RSS sampled
// after each. A run that kept its weights, its KV cache or its activations
// would grow the process by at least the tiny model's weights every run.
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';

describe('bench:memory', () => {
  // Asynchronous, so the test worker keeps answering the runner for the minute it takes.
  it('200 traces in one process on cpu: host RSS has no trend beyond 1% after the first 10 runs', async () => {
    const r = await promisify(execFile)(
      process.execPath,
      ['--expose-gc', join(packageRoot(), 'dist', 'bench', 'memory.js'), '--runs', '200', '--backend', 'cpu', '--json'],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    const report = JSON.parse(r.stdout) as { runs: number; flat: boolean; rssDrift: number; samples: { rssBytes: number }[]; baseline: { rssBytes: number }; last: { rssBytes: number } };
    const mb = (b: number) => (b / 2 ** 20).toFixed(1);
    console.log(`200 runs: RSS ${mb(report.baseline.rssBytes)} -> ${mb(report.last.rssBytes)} MiB (medians of 10), trend ${(100 * report.rssDrift).toFixed(2)}%`);
    expect(report.samples).toHaveLength(200);
    expect(report.rssDrift).toBeLessThanOrEqual(0.01);
    expect(report.flat).toBe(true);
  }, 600_000);

  it('a bad option is one line and exit 2', () => {
    const r = spawnSync(process.execPath, [join(packageRoot(), 'dist', 'bench', 'memory.js'), '--runs', '5'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe("gretacore: --runs: '5' is not an integer >= 30");
  });
});
