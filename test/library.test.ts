// The library API, imported by the package's own name: the exports map and
// the declarations are what a user gets from `import ... from 'gretacore'`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';
import { tempDir } from './helpers.js';

const lib = await import('gretacore');

describe("import { trace, analyze, compare, report, selftest } from 'gretacore'", () => {
  it('trace takes typed options and returns the analysis, the KV verdict and the oracle', () => {
    const out = join(tempDir(), 'lib.jsonl');
    const t = lib.trace({ prompt: ['p4_sys'], layers: [14, 15], points: ['x_in', 'wo_out'], fault: 'wo_layout@15', kvCheck: true, oracle: 'cpu-fp64', out });
    expect(t.out).toBe(out);
    expect(existsSync(out)).toBe(true);
    expect(t.rows).toHaveLength(1);
    expect(t.rows[0]).toMatchObject({ prompt: 'p4_sys', exp: 'E1', first_mismatch_stage: 'wo_out', first_mismatch_layer: 15, fault: 'wo_layout@15' });
    expect(t.kvChecks[0]).toMatchObject({ equal: false, first: { layer: 16, position: 59 } });
    expect(t.oracle[0]).toMatchObject({ departed: 'decode0', at: { layer: 15, point: 'wo_out' } });
    expect(t.results[0]!.prefill_last_top1).toBe(t.rows[0]!.prefill_last_top1);

    const a = lib.analyze(out);
    expect(a.rows.map((r) => r.first_mismatch_stage)).toEqual(['wo_out']);
    expect(a.oracle[0]!.departed).toBe('decode0');

    const clean = lib.trace({ prompt: 'p4_sys', layers: [14, 15], points: ['x_in', 'wo_out'], out: join(tempDir(), 'clean.jsonl') });
    expect(clean.rows[0]!.first_mismatch_stage).toBe('NONE');
    const c = lib.compare(clean.out, out);
    expect(c.mode).toBe('exact');
    expect(c.first).toMatchObject({ phase: 'decode0', layer: 15, point: 'wo_out' });

    const html = join(tempDir(), 'lib.html');
    const r = lib.report([out], { out: html, compare: clean.out });
    expect(r.out).toBe(html);
    expect(statSync(html).size).toBe(r.bytes);
    expect(r.exit).toBe(0);
    expect(r.data.sections[0]).toMatchObject({ prompt: 'p4_sys', first: { layer: 15, point: 'wo_out' }, oracle: { departed: 'decode0' } });
    expect(r.data.compare!.results[0]!.first).toMatchObject({ layer: 15, point: 'wo_out' });
    expect(() => lib.report(out, { out: 'r.txt' })).toThrow(/--out: 'r\.txt' is not an \.html or \.htm file name/);
  });

  it('selftest runs the fault zoo', () => {
    const r = lib.selftest({ faults: ['ulp', 'lm_head_shift'], faultLayers: [3] });
    expect(r.cases.map((x) => `${x.fault} ${x.result}`)).toEqual(['none pass', 'ulp@3 pass', 'lm_head_shift pass']);
  });

  it('bad options are the CLI errors: one UsageError naming the value and what is allowed', () => {
    expect(() => lib.trace({ prompt: 'p9' })).toThrow(lib.UsageError);
    expect(() => lib.trace({ prompt: 'p9' })).toThrow(/--prompt: unknown prompt 'p9' \(allowed: p0_short, p4_sys, p5_ba, p6_long\)/);
    expect(() => lib.trace({ layers: [40] })).toThrow(/layer 40 is out of range for synthetic:tiny/);
    expect(() => lib.trace({ nope: 1 } as never)).toThrow(/unknown option 'nope' \(allowed: prompt, /);
  });

  it('ships declarations for every export', () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { exports: { '.': { types: string } } };
    const dts = readFileSync(join(packageRoot(), pkg.exports['.'].types), 'utf8');
    for (const name of ['trace', 'analyze', 'compare', 'report', 'selftest', 'TraceInput', 'TraceOutput', 'ReportInput', 'ReportOutput', 'UsageError', 'FAULT_NAMES']) {
      expect(dts).toMatch(new RegExp(`\\b${name}\\b`));
    }
  });
});
