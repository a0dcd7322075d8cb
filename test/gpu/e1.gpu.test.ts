// E1 on the GPU: prefill_last and decode0 bit-identical at every layer and
// point, at small width and at Llama-3-8B shapes; and hip vs cpu on the same
// weights (fill_uniform gives both the same bits).
import { describe, expect, it } from 'vitest';
import { analyzeRuns } from '../../src/analyze/analyze.js';
import { loadTraceFile, readRow } from '../../src/analyze/load.js';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/native.js';
import { formatSelftest, type SelftestResult } from '../../src/selftest.js';
import { POINTS } from '../../src/trace/points.js';
import { traceWith } from '../helpers.js';
import { deviceBackend } from './backend.js';

const PROMPTS = 'p0_short,p4_sys,p6_long';
const BACKEND = deviceBackend();

describe(`E1 with --backend ${BACKEND}`, () => {
  for (const model of ['synthetic:tiny', 'synthetic:llama3-8b']) {
    // Llama-3-8B shapes are there for device memory and kernels at real size;
    // on the cpu backend (standing in) they would take 16 GB and many minutes.
    it.skipIf(model === 'synthetic:llama3-8b' && BACKEND !== 'hip')(`${model}: ${PROMPTS} all bit-identical`, () => {
      const t0 = performance.now();
      const run = traceWith({ prompt: PROMPTS, backend: BACKEND, model });
      const runs = loadTraceFile(run.out);
      const rows = analyzeRuns(runs);
      console.log(`${model} on ${runs[0]!.header.device}: ${(performance.now() - t0).toFixed(0)} ms`);
      for (const r of rows) {
        const worst = Math.max(...r.comparisons.map((c) => c.mae));
        console.log(
          `  ${r.prompt} ${r.exp} first_mismatch=${r.first_mismatch_stage} pairs=${r.comparisons.length} max_mae=${worst} ` +
            `top1 ${r.prefill_last_top1} -> ${r.decode0_top1}`,
        );
        expect(r.first_mismatch_stage).toBe('NONE');
        expect(r.comparisons.length).toBe(32 * 7 + 3);
        for (const c of r.comparisons) expect(c.prefill_last.hash).toBe(c.decode0.hash);
      }
    }, 600_000);
  }

  for (const model of ['synthetic:tiny', 'synthetic:llama3-8b']) {
    it.skipIf(model === 'synthetic:llama3-8b' && BACKEND !== 'hip')(`${model}: every sub-stage point too (attention pipe per head, MLP), and the probe's pv is attn_out`, () => {
      const run = traceWith({ prompt: PROMPTS, backend: BACKEND, model, points: POINTS.join(','), heads: model === 'synthetic:tiny' ? 'all' : '0,7,31' });
      const runs = loadTraceFile(run.out);
      for (const r of analyzeRuns(runs)) {
        console.log(`  ${model} ${r.prompt} sub-stages: first_mismatch=${r.first_mismatch_stage} pairs=${r.comparisons.length}`);
        expect(r.first_mismatch_stage).toBe('NONE');
        for (const c of r.comparisons) expect(c.prefill_last.hash).toBe(c.decode0.hash);
      }
      const stages = runs[0]!.stages;
      const hd = Number(runs[0]!.header.config.head_dim);
      for (const phase of ['prefill_last', 'decode0']) {
        for (const layer of [0, 31]) {
          const pick = (point: string) => stages.filter((s) => s.phase === phase && s.layer === layer && s.point === point && s.prompt === 'p6_long');
          const att = readRow(runs[0]!, pick('attn_out')[0]!);
          for (const s of pick('pv')) expect([...readRow(runs[0]!, s)]).toEqual([...att.subarray(s.head! * hd, (s.head! + 1) * hd)]);
        }
      }
    }, 600_000);
  }

  it(`${BACKEND} vs cpu on synthetic:tiny: logits relative L2`, () => {
    for (const prompt of PROMPTS.split(',')) {
      const a = loadTraceFile(traceWith({ prompt, backend: BACKEND, points: 'x_out,logits', layers: '0,31' }).out)[0]!;
      const b = loadTraceFile(traceWith({ prompt, backend: 'cpu', points: 'x_out,logits', layers: '0,31' }).out)[0]!;
      for (const point of ['x_out', 'logits'] as const) {
        for (const layer of point === 'logits' ? [null] : [0, 31]) {
          const pick = (run: typeof a) => run.stages.find((s) => s.phase === 'prefill_last' && s.point === point && s.layer === layer)!;
          const x = readRow(a, pick(a));
          const y = readRow(b, pick(b));
          let d = 0;
          let n = 0;
          for (let i = 0; i < x.length; i++) {
            d += (x[i]! - y[i]!) ** 2;
            n += y[i]! ** 2;
          }
          const rel = Math.sqrt(d / n);
          console.log(`  ${prompt} prefill_last ${layer === null ? '' : `layer ${layer} `}${point}: ${BACKEND} vs cpu rel_l2 ${rel.toExponential(2)}`);
          // Different (each fixed) reduction orders in fp32 over 32 layers.
          expect(rel).toBeLessThan(1e-3);
        }
      }
    }
  }, 120_000);
});

// Through the CLI in a child process: a selftest at Llama-3-8B shape runs for
// a minute, too long to block the test worker's event loop.
describe(`greta selftest --backend ${BACKEND}`, () => {
  for (const model of ['synthetic:tiny', 'synthetic:llama3-8b']) {
    it.skipIf(model === 'synthetic:llama3-8b' && BACKEND !== 'hip')(`${model}: every fault found exactly where planted, with the KV verdict; nothing without one`, async () => {
      const cli = join(packageRoot(), 'dist', 'cli', 'main.js');
      const { stdout } = await promisify(execFile)(process.execPath, [cli, 'selftest', '--backend', BACKEND, '--model', model, '--json'], {
        maxBuffer: 1 << 26,
      });
      const r = JSON.parse(stdout) as SelftestResult;
      console.log(formatSelftest(r));
      expect(r.failed).toBe(0);
      expect(r.skipped).toBe(0);
      expect(r.cases.length).toBe(51);
    }, 600_000);
  }
});
