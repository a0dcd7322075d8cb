// The library API, imported by the package's own name: the exports map and
// the declarations are what a user gets from `import ... from 'gretacore'`.
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';
import { tempDir } from './helpers.js';

const lib = await import('gretacore');

describe("import { trace, analyze, compare, report, selftest, faults } from 'gretacore'", () => {
  it('trace takes typed options and returns the analysis, the KV verdict and the oracle', () => {
    const out = join(tempDir(), 'lib.jsonl');
    const lines: string[] = [];
    const t = lib.trace({ prompt: ['p4_sys'], layers: [14, 15], points: ['x_in', 'wo_out'], fault: 'wo_layout@15', kvCheck: true, oracle: 'cpu-fp64', out }, (l) => lines.push(l));
    expect(t.out).toBe(out);
    expect(lines.some((l) => /^model synthetic:tiny .* loaded in /.test(l))).toBe(true);
    expect(lines.some((l) => l.startsWith('oracle: p4_sys E1: 60 tokens'))).toBe(true);
    expect(t.timing.seconds).toBeGreaterThan(0);
    expect(t.timing.peak_rss_bytes).toBeGreaterThan(0);
    expect(existsSync(out)).toBe(true);
    expect(t.rows).toHaveLength(1);
    expect(t.rows[0]).toMatchObject({ prompt: 'p4_sys', exp: 'E1', first_mismatch_stage: 'wo_out', first_mismatch_layer: 15, fault: 'wo_layout@15' });
    expect(t.kvChecks[0]).toMatchObject({ equal: false, first: { layer: 16, position: 59 } });
    expect(t.oracle[0]).toMatchObject({ departed: 'decode0', at: { layer: 15, point: 'wo_out' } });
    expect(t.results[0]!.prefill_last_top1).toBe(t.rows[0]!.prefill_last_top1);

    const a = lib.analyze(out);
    expect(a.rows.map((r) => r.first_mismatch_stage)).toEqual(['wo_out']);
    expect(a.oracle[0]!.departed).toBe('decode0');
    expect(a.kvChecks).toEqual(t.kvChecks);
    expect(a.exit).toBe(0);
    expect(a.stats).toMatchObject({ files: 1, runs: 2 });
    expect(lib.analyze(out, { tol: 1e6 }).rows[0]!.first_mismatch_stage).toBe('NONE');

    const clean = lib.trace({ prompt: 'p4_sys', layers: [14, 15], points: ['x_in', 'wo_out'], out: join(tempDir(), 'clean.jsonl') });
    expect(clean.rows[0]!.first_mismatch_stage).toBe('NONE');
    const c = lib.compare(clean.out, out);
    expect(c.mode).toBe('exact');
    expect(c.first).toMatchObject({ phase: 'decode0', layer: 15, point: 'wo_out' });
    expect(c.exit).toBe(1);
    const loose = lib.compare(clean.out, out, { tolPoint: { wo_out: 1e9, x_in: 1e9 } });
    expect([loose.first, loose.exit]).toEqual([null, 0]);

    const html = join(tempDir(), 'lib.html');
    const r = lib.report([out], { out: html, compare: clean.out });
    expect(r.out).toBe(html);
    expect(statSync(html).size).toBe(r.bytes);
    expect(r.exit).toBe(0);
    expect(r.data.sections[0]).toMatchObject({ prompt: 'p4_sys', first: { layer: 15, point: 'wo_out' }, oracle: { departed: 'decode0' } });
    expect(r.data.compare!.results[0]!.first).toMatchObject({ layer: 15, point: 'wo_out' });
    expect(() => lib.report(out, { out: 'r.txt' })).toThrow(/--out: 'r\.txt' is not an \.html or \.htm file name/);
  });

  it('selftest runs the fault zoo; faults() lists it', () => {
    const lines: string[] = [];
    const r = lib.selftest({ faults: ['ulp', 'lm_head_shift'], faultLayers: [3] }, (l) => lines.push(l));
    expect(r.cases.map((x) => `${x.fault} ${x.result}`)).toEqual(['none pass', 'ulp@3 pass', 'lm_head_shift pass']);
    expect(lines.at(-1)).toBe('selftest: lm_head_shift traced (3/3)');
    const f = lib.faults();
    expect(f.map((x) => x.name)).toEqual([...lib.FAULT_NAMES]);
    expect(f.find((x) => x.name === 'wo_layout')).toMatchObject({ layered: true, at_stage_points: 'wo_out' });
  });

  it('bad options are the CLI errors: one UsageError naming the value and what is allowed', () => {
    expect(() => lib.trace({ prompt: 'p9' })).toThrow(lib.UsageError);
    expect(() => lib.trace({ prompt: 'p9' })).toThrow(/--prompt: unknown prompt 'p9' \(allowed: p0_short, p4_sys, p5_ba, p6_long\)/);
    expect(() => lib.trace({ layers: [40] })).toThrow(/layer 40 is out of range for synthetic:tiny/);
    expect(() => lib.trace({ nope: 1 } as never)).toThrow(/unknown option 'nope' \(allowed: prompt, /);
    expect(() => lib.trace({ prompt: 'p4_sys', promptText: 'hi' })).toThrow(/^--prompt and --prompt-text\/--prompt-file: give one of them, not both$/);
    expect(() => lib.analyze('x.jsonl', { tol: -1 })).toThrow(/^--tol: '-1' is not a number >= 0$/);
    expect(() => lib.analyze([])).toThrow(/^analyze: give at least one trace \.jsonl file$/);
    expect(() => lib.compare('a.jsonl', 'b.jsonl', { tolPoint: { logits: -1 } })).toThrow(/^--tol-point logits: '-1' is not a number >= 0$/);
    expect(() => lib.compare('a.jsonl', 'b.jsonl', { json: true } as never)).toThrow(/unknown option 'json' \(allowed: tol, tolPoint, runs\)/);
  });

  it('ships declarations for every export', () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { exports: { '.': { types: string } } };
    const dts = readFileSync(join(packageRoot(), pkg.exports['.'].types), 'utf8');
    for (const name of ['trace', 'analyze', 'compare', 'report', 'selftest', 'faults', 'TraceInput', 'TraceOutput', 'ReportInput', 'ReportOutput', 'UsageError', 'FAULT_NAMES']) {
      expect(dts).toMatch(new RegExp(`\\b${name}\\b`));
    }
  });

  it("the README's example type-checks against the declarations, as a user's strict project would", () => {
    const readme = readFileSync(join(packageRoot(), 'README.md'), 'utf8');
    const example = /## Library\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(example).toMatch(/from 'gretacore'/);
    // A project beside the package, which it finds as a dependency.
    const dir = tempDir();
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(packageRoot(), join(dir, 'node_modules', 'gretacore'), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    writeFileSync(join(dir, 'example.ts'), example);
    const program = ts.createProgram([join(dir, 'example.ts')], {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      noUncheckedIndexedAccess: true,
      noEmit: true,
      skipLibCheck: true,
      types: ['node'],
      typeRoots: [join(packageRoot(), 'node_modules', '@types')],
    });
    const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(errors).toEqual([]);
  });
});
