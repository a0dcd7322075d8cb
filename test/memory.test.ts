// Memory stays flat over many runs in one process: 200 traces through the
// library API in a child process (npm run bench:memory), host RSS and the
// memory blocks alive sampled after each. A run that kept its weights, its KV
// cache or its activations would leave blocks behind (exact) and grow the
// process by at least the tiny model's weights every run.
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createBackend, packageRoot, storageBlocks } from '../src/native.js';
import { WARMUP_RUNS, type MemoryReport } from '../src/bench/memory.js';

/**
 * The bench's target (1% over 1000 runs) is met on a quiet host. On a shared
 * two-core host running other test files beside it, RSS sampled this way
 * wanders by up to 1.5% over 200 runs with no leak (measured: trends from
 * -1.5% to +0.3% over eight runs beside three others), so the trend allowed
 * here is 3%: a leak of 20 kB a run still fails it, and any tensor, scratch or
 * graph input left behind fails the exact block count.
 */
const CI_RSS_TREND = 0.03;

describe('bench:memory', () => {
  // Asynchronous, so the test worker keeps answering the runner for the minute it takes.
  it('200 traces in one process on cpu: no block left behind, host RSS has no trend beyond 3% after the first 10 runs', async () => {
    let stdout: string;
    try {
      stdout = (
        await promisify(execFile)(
          process.execPath,
          ['--expose-gc', join(packageRoot(), 'dist', 'bench', 'memory.js'), '--runs', '200', '--backend', 'cpu', '--json'],
          { encoding: 'utf8', maxBuffer: 1 << 24 },
        )
      ).stdout;
    } catch (e) {
      // Exit 1 (grew) still prints the report: keep it, so the failure below shows the figures.
      stdout = (e as { stdout?: string }).stdout ?? '';
      if (!stdout) throw e;
    }
    const report = JSON.parse(stdout) as MemoryReport;
    const mb = (b: number) => (b / 2 ** 20).toFixed(1);
    console.log(
      `200 runs: RSS ${mb(report.baseline.rssBytes)} -> ${mb(report.last.rssBytes)} MiB (medians of 10), trend ${(100 * report.rssDrift).toFixed(2)}%, ` +
        `single runs within ${(100 * report.rssSampleDrift).toFixed(2)}%, blocks alive ${report.samples[WARMUP_RUNS]!.storageBlocks} (+${report.blocksGrowth})`,
    );
    expect(report.samples).toHaveLength(200);
    expect(report.blocksGrowth).toBe(0);
    expect(report.rssDrift).toBeLessThanOrEqual(CI_RSS_TREND);
  }, 600_000);

  it('the block count sees one tensor taken and given back', () => {
    const b = createBackend('cpu');
    const before = storageBlocks();
    const t = b.alloc('f32', [4, 8]);
    const view = t.rows(1, 2);
    const shaped = t.reshape(2, 16);
    expect(storageBlocks()).toBe(before + 1);
    view.free();
    shaped.free();
    expect(storageBlocks()).toBe(before + 1);
    t.free();
    expect(storageBlocks()).toBe(before);
  });

  it('a bad option is one line and exit 2', () => {
    const memory = (args: string[]) => spawnSync(process.execPath, [join(packageRoot(), 'dist', 'bench', 'memory.js'), ...args], { encoding: 'utf8' });
    for (const [args, line] of [
      [['--runs', '5'], "gretacore: --runs: '5' is not an integer >= 30"],
      [['--model', 'nope'], "gretacore: --model: unknown model 'nope' (allowed: synthetic:tiny, synthetic:llama3-8b, a Hugging Face Llama directory, or a .gguf file)"],
    ] as const) {
      const r = memory([...args]);
      expect(r.status).toBe(2);
      expect(r.stderr.trim()).toBe(line);
    }
  });
});
