// The CLI as users run it: the compiled entry point in a child process.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTraceFile } from '../src/analyze/load.js';
import { packageRoot } from '../src/native.js';
import { TraceRecordSchema } from '../src/trace/schema.js';
import { sidecarPath } from '../src/trace/writer.js';
import { tempDir } from './helpers.js';

const CLI = join(packageRoot(), 'dist', 'cli', 'main.js');

function greta(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, ...env },
    cwd: tempDir(),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('greta trace', () => {
  it('prints the analysis table and writes the trace where --out says', () => {
    const out = join(tempDir(), 'p4.jsonl');
    const r = greta(['trace', '--prompt', 'p4_sys', '--layers', '0,1,2,15,31', '--out', out]);
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\| prompt \| exp \| first_mismatch_stage \| first_mismatch_layer \| x_in_mae/);
    expect(r.stdout).toMatch(/\| p4_sys \| E1 \| NONE \| - \| 0 \|/);
    expect(r.stdout).toContain('all bit-identical');
    expect(existsSync(out) && existsSync(sidecarPath(out))).toBe(true);
    // The load line: this process's own peak RSS, not its parent's (the test runner's).
    const rss = /loaded in [\d.]+ s, peak RSS (\d+\.\d\d) GB/.exec(r.stderr);
    expect(rss, r.stderr).not.toBeNull();
    expect(Number(rss![1])).toBeGreaterThan(0);
    expect(Number(rss![1])).toBeLessThan(2);
  });

  it('--json prints the same analysis as JSON with the table field names', () => {
    const r = greta(['trace', '--prompt', 'p0_short', '--layers', '0', '--json', '--out', join(tempDir(), 't.jsonl')]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { rows: Record<string, unknown>[] };
    expect(j.rows[0]).toMatchObject({ prompt: 'p0_short', exp: 'E1', first_mismatch_stage: 'NONE', x_in_mae: 0, collapse: false });
  });

  it('takes the GRETA_TRACE_STAGE_* variables, and a flag beats its variable', () => {
    const out = join(tempDir(), 'env.jsonl');
    const env = {
      GRETA_TRACE_STAGE: '1',
      GRETA_TRACE_STAGE_OUT: out,
      GRETA_TRACE_STAGE_LAYERS: '0,1,2,15,31',
      GRETA_TRACE_STAGE_POINTS: 'attn_out,x_after_attn,mlp_out,x_after_mlp,final_rms,lm_head_in,logits,x_in',
      GRETA_TRACE_STAGE_PHASES: 'prefill_last,decode0',
      GRETA_TRACE_STAGE_DEBUG_INPUT: '1',
    };
    const r = greta(['trace', '--prompt', 'p5_ba', '--layers', '2'], env);
    expect(r.code).toBe(0);
    const [run] = loadTraceFile(out);
    expect(new Set(run!.stages.map((s) => s.layer))).toEqual(new Set([2, null]));
    expect(new Set(run!.stages.map((s) => s.point))).toEqual(
      new Set(['attn_out', 'x_after_attn', 'mlp_out', 'x_out', 'final_norm', 'lm_head_in', 'logits', 'x_in']),
    );
    expect(run!.inputs).toHaveLength(2);
  });

  it('GRETA_TRACE_POST_WO=1 traces the points after WO', () => {
    const out = join(tempDir(), 'postwo.jsonl');
    const r = greta(['trace', '--prompt', 'p0_short', '--layers', '0,31', '--out', out], { GRETA_TRACE_POST_WO: '1' });
    expect(r.code).toBe(0);
    const [run] = loadTraceFile(out);
    expect(new Set(run!.stages.map((s) => s.point))).toEqual(new Set(['ffn_norm', 'mlp_out', 'x_out', 'final_norm', 'lm_head_in', 'logits']));
    expect(r.stdout).toMatch(/\| first_mismatch_layer \| ffn_norm_mae \| mlp_out_mae \| x_out_mae \|/);
  });

  it('--prompt-file and --prompt-text trace the given text', () => {
    const dir = tempDir();
    const file = join(dir, 'mine.txt');
    writeFileSync(file, 'Once upon a time');
    const r = greta(['trace', '--prompt-file', file, '--layers', '0', '--out', join(dir, 'f.jsonl')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('| mine | E1 | NONE |');
    const t = greta(['trace', '--prompt-text', 'Hola mundo', '--layers', '0', '--out', join(dir, 't.jsonl')]);
    expect(t.code).toBe(0);
    expect(t.stdout).toContain('| text | E1 | NONE |');
  });

  it('--help documents every option', () => {
    const r = greta(['trace', '--help']);
    expect(r.code).toBe(0);
    for (const f of ['--prompt', '--prompt-text', '--prompt-file', '--exp', '--model', '--backend', '--steps', '--out', '--layers', '--points', '--post-wo', '--phases', '--debug-input', '--topk', '--fault', '--attn-pipe', '--heads', '--json']) {
      expect(r.stdout).toContain(f + ' ');
    }
    expect(r.stdout).toContain('GRETA_TRACE_STAGE_LAYERS');
  });
});

describe('bad input: one line naming the value, exit 2, no output file', () => {
  const cases: [string, string[], RegExp, NodeJS.ProcessEnv?][] = [
    ['unknown prompt', ['--prompt', 'p9_nope'], /--prompt: unknown prompt 'p9_nope' \(allowed: p0_short, p4_sys, p5_ba, p6_long\)/],
    ['unknown point', ['--points', 'x_in,qkv'], /--points: unknown point 'qkv' \(allowed: x_in, .*logits/],
    ['unknown phase', ['--phases', 'prefill_last,decode'], /--phases: unknown phase 'decode' \(allowed: prefill_last, decode0/],
    ['layer out of range', ['--layers', '0,32'], /--layers: layer 32 is out of range for synthetic:tiny \(allowed: 0-31\)/],
    ['non-numeric layers', ['--layers', '0,one'], /--layers: 'one' is not a layer number or range/],
    ['unknown model', ['--model', 'llama-9000'], /--model: unknown model 'llama-9000' \(allowed: synthetic:tiny, synthetic:llama3-8b, a Hugging Face Llama directory, or a \.gguf file\)/],
    ['unknown experiment', ['--exp', 'E2'], /--exp: unknown experiment 'E2' \(allowed: E0, E1\)/],
    ['unknown backend', ['--backend', 'tpu'], /--backend: unknown backend 'tpu' \(allowed: auto, cpu, cpu-fp64, hip\)/],
    ['bad steps', ['--steps', '0'], /--steps: '0' is not an integer in \[1, 4096\]/],
    ['phase past the last step', ['--phases', 'prefill_last,decode2', '--steps', '2'], /--phases: decode2 needs --steps 3 or more \(got --steps 2\)/],
    ['unknown flag', ['--prompts', 'p4_sys'], /Unknown option '--prompts'/],
    ['post-wo with points', ['--post-wo', '--points', 'x_in'], /--post-wo: selects the points itself; give it or --points\/GRETA_TRACE_STAGE_POINTS, not both/],
    ['bad variable', [], /GRETA_TRACE_STAGE_LAYERS: 'x' is not a layer number/, { GRETA_TRACE_STAGE_LAYERS: 'x' }],
    ['head out of range', ['--attn-pipe', '--heads', '0,4'], /--heads: head 4 is out of range for synthetic:tiny \(allowed: 0-3\)/],
    ['bad head list', ['--heads', 'first'], /--heads: 'first' is not a head list \(allowed: all, or e\.g\. 0,5 or 0-3\)/],
    ['unknown fault', ['--fault', 'wo_flip'], /--fault: unknown fault 'wo_flip' \(allowed: token, position, .*lm_head_shift, each optionally @LAYER/],
    ['fault layer out of range', ['--fault', 'wo_layout@32'], /--fault: layer 32 is out of range for synthetic:tiny \(allowed: 0-31\)/],
    ['layerless fault with a layer', ['--fault', 'lm_head_shift@3'], /--fault: fault 'lm_head_shift' acts outside the layers and takes no @LAYER/],
    ['bad fault variable', [], /GRETA_FAULT: unknown fault 'nope'/, { GRETA_FAULT: 'nope' }],
    ['unknown oracle', ['--oracle', 'cpu'], /--oracle: unknown oracle 'cpu' \(allowed: cpu-fp64\)/],
    ['bad oracle bound', ['--oracle', 'cpu-fp64', '--oracle-tol', '0'], /--oracle-tol: '0' is not a number > 0/],
    ['missing addon', [], /^gretacore: GRETA_ADDON: '\/nonexistent\/greta\.node' does not exist \(allowed: /, { GRETA_ADDON: '/nonexistent/greta.node' }],
    // An empty item is refused, not dropped: it is usually a value lost from a script.
    ['empty layer item', ['--layers', '0,,1'], /^gretacore: --layers: '0,,1' has an empty item \(allowed: all, or e\.g\. 0,1,2,15,31 or 0-3,31\)$/],
    ['trailing comma in layers', ['--layers', '0,1,'], /--layers: '0,1,' has an empty item \(allowed: all,/],
    ['empty point item', ['--points', 'x_in,,logits'], /--points: 'x_in,,logits' has an empty item \(allowed: x_in, .*logits/],
    ['trailing comma in prompts', ['--prompt', 'p0_short,'], /--prompt: 'p0_short,' has an empty item \(allowed: p0_short, p4_sys, p5_ba, p6_long\)/],
    ['empty phase item', ['--phases', 'prefill_last,,decode0'], /--phases: 'prefill_last,,decode0' has an empty item \(allowed: prefill_last, decode0, decode1, \.\.\.\)/],
    ['leading comma in experiments', ['--exp', ',E1'], /--exp: ',E1' has an empty item \(allowed: E0, E1\)/],
    ['blank item in a variable', [], /GRETA_TRACE_STAGE_POINTS: 'x_in, ,logits' has an empty item/, { GRETA_TRACE_STAGE_POINTS: 'x_in, ,logits' }],
  ];
  for (const [name, args, re, env] of cases) {
    it(name, () => {
      const dir = tempDir();
      const out = join(dir, 'out.jsonl');
      const r = greta(['trace', '--out', out, ...args], env);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(re);
      expect(readdirSync(dir)).toEqual([]);
    });
  }

  it('an addon that does not load is one EADDON line, exit 1', () => {
    const dir = tempDir();
    const bad = join(dir, 'greta.node');
    writeFileSync(bad, 'not a shared object');
    const r = greta(['trace', '--out', join(dir, 'out.jsonl')], { GRETA_ADDON: bad });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^gretacore: \[EADDON\] cannot load the addon from .*greta\.node: /);
    expect(readdirSync(dir)).toEqual(['greta.node']);
  });

  it('unwritable output path', () => {
    const dir = tempDir();
    const blocker = join(dir, 'file');
    writeFileSync(blocker, 'not a directory');
    const r = greta(['trace', '--out', join(blocker, 'out.jsonl')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--out: cannot write to directory '.*file' \(E(NOTDIR|EXIST)\)/);
    expect(readdirSync(dir)).toEqual(['file']);
  });

  it('analyze: a missing file and a corrupt line are named', () => {
    const dir = tempDir();
    const r = greta(['analyze', join(dir, 'none.jsonl')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read trace '.*none.jsonl' \(ENOENT\)/);
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"type":"stage"}\n');
    const b = greta(['analyze', bad]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/bad.jsonl:1: not a trace record/);
    // A line cut short with whole lines after it is not an interrupted write: bad input.
    const good = join(dir, 'good.jsonl');
    expect(greta(['trace', '--prompt', 'p0_short', '--layers', '0', '--out', good]).code).toBe(0);
    const lines = readFileSync(good, 'utf8').trim().split('\n');
    writeFileSync(good, [lines[0], lines[1]!.slice(0, 50), ...lines.slice(2)].join('\n') + '\n');
    const m = greta(['analyze', good]);
    expect(m.code).toBe(2);
    expect(m.stdout).toBe('');
    expect(m.stderr.trim().split('\n')).toEqual([`gretacore: ${good}:2: not a JSON line`]);
    const t = greta(['analyze', '--tol=-1', good]);
    expect(t.code).toBe(2);
    expect(t.stderr.trim()).toBe("gretacore: --tol: '-1' is not a number >= 0");
  });
});

describe('the KV check and the oracle in trace and analyze', () => {
  it('print the KV verdict and which side departed from fp64, from the trace and again from the file', () => {
    const out = join(tempDir(), 'o.jsonl');
    const t = greta(['trace', '--prompt', 'p4_sys', '--kv-check', '--oracle', 'cpu-fp64', '--fault', 'wo_layout@3', '--layers', '2,3', '--out', out]);
    expect(t.code, t.stderr).toBe(0);
    const kv = /p4_sys E1 kv-check: first differing row: layer 4 position 59 kv head 0 \(k\)/;
    const oracle = /p4_sys E1 oracle \(cpu-fp64, bound 1\.00e-4\): at layer 3 wo_out prefill_last is [\d.e+-]+ from fp64 and decode0 [\d.e+-]+: decode0 departed/;
    expect(t.stdout).toMatch(kv);
    expect(t.stdout).toMatch(oracle);
    const a = greta(['analyze', out]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toMatch(kv);
    expect(a.stdout).toMatch(oracle);
    expect(a.stdout.match(/^\| p4_sys \| E1 \|/gm)).toHaveLength(1); // the oracle run is no row of its own
    const j = JSON.parse(greta(['analyze', '--json', out]).stdout) as { oracle: { departed: string }[]; kv_checks: { equal: boolean }[] };
    expect(j.oracle[0]!.departed).toBe('decode0');
    expect(j.kv_checks[0]!.equal).toBe(false);
  });
});

describe('greta selftest', () => {
  it('--list describes every fault; --help every option', () => {
    const l = greta(['selftest', '--list']);
    expect(l.code).toBe(0);
    for (const f of ['token', 'kv_stale', 'wo_layout', 'ffn_norm_weight', 'matmul_fp16', 'ulp', 'lm_head_shift']) expect(l.stdout).toMatch(new RegExp(`^\\| ${f} \\|`, 'm'));
    const h = greta(['selftest', '--help']);
    expect(h.code).toBe(0);
    for (const f of ['--faults', '--fault-layers', '--prompt', '--points', '--model', '--backend', '--out', '--list', '--json']) expect(h.stdout).toContain(f + ' ');
  });

  it('prints one row per case and exits 0 when every fault is found where planted', () => {
    const r = greta(['selftest', '--faults', 'kv_stale,lm_head_shift', '--fault-layers', '31']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('| p4_sys | none | NONE | NONE | 0 | 0 | equal | equal | pass |');
    // decode0 attends to one key fewer: its scores row is shorter than prefill_last's.
    expect(r.stdout).toMatch(/\| p4_sys \| kv_stale@31 \| layer 31 scores \| layer 31 scores \| \S+ \| \S+ \| layer 31 pos 59 \| layer 31 pos 59 \| pass \|/);
    expect(r.stdout).toMatch(/\| p4_sys \| lm_head_shift \| final logits \| final logits \| .* \| equal \| equal \| pass \|/);
    expect(r.stdout).toMatch(/selftest: 3 cases on synthetic:tiny, cpu .*: 3 passed, 0 failed/);
  });

  it('bad input: one line, exit 2', () => {
    const r = greta(['selftest', '--faults', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^gretacore: --faults: unknown fault 'nope' \(allowed: all, token,/)]);
    for (const [flag, value, re] of [
      ['--faults', 'token,', /^gretacore: --faults: 'token,' has an empty item \(allowed: all, token,/],
      ['--fault-layers', '0,,31', /^gretacore: --fault-layers: '0,,31' has an empty item \(allowed: default, or e\.g\. 0,15,31\)$/],
    ] as const) {
      const e = greta(['selftest', flag, value]);
      expect(e.code).toBe(2);
      expect(e.stderr.trim().split('\n')).toEqual([expect.stringMatching(re)]);
    }
  });
});

describe('npm run bench: bad input', () => {
  const bench = (args: string[]) => spawnSync(process.execPath, [join(packageRoot(), 'dist', 'bench', 'main.js'), ...args], { encoding: 'utf8' });
  for (const [args, re] of [
    [['--bogus'], /^gretacore: bench: Unknown option '--bogus' \(see --help\)$/],
    [['--reps', '0'], /^gretacore: --reps: '0' is not an integer >= 1$/],
    [['--backend', 'tpu'], /^gretacore: --backend: unknown backend 'tpu' \(allowed: auto, cpu, cpu-fp64, hip\)$/],
    [['--load-mib', '0.5'], /^gretacore: --load-mib: '0.5' is not an integer >= 1$/],
    [['--torch', 'always'], /^gretacore: --torch: 'always' is not a mode \(allowed: auto, off\)$/],
    [['--json', '/nonexistent/bench.json'], /^gretacore: --json: '\/nonexistent\/bench.json' is not a file in an existing directory$/],
  ] as const) {
    it(`${args.join(' ')}: one line, exit 2, nothing measured`, () => {
      const r = bench([...args]);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(re)]);
    });
  }
  it('--help documents the options', () => {
    const r = bench(['--help']);
    expect(r.status).toBe(0);
    for (const f of ['--backend', '--reps', '--json', '--torch', '--load-mib', '--help']) expect(r.stdout).toContain(f + ' ');
  });
});

describe('interrupted run', () => {
  it('a killed trace leaves only whole lines, each with its row on disk', async () => {
    const dir = tempDir();
    const out = join(dir, 'killed.jsonl');
    const phases = ['prefill_last', ...Array.from({ length: 400 }, (_, i) => `decode${i}`)].join(',');
    const child = spawn(process.execPath, [CLI, 'trace', '--prompt', 'p6_long', '--steps', '400', '--phases', phases, '--out', out], {
      stdio: 'ignore',
    });
    // Kill it while it is writing: once the file is past 200 kB.
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (existsSync(out) && statSync(out).size > 200_000) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve();
        }
      }, 5);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error('trace finished before it could be interrupted'));
      });
    });
    await new Promise((r) => child.on('exit', r));
    const text = readFileSync(out, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trim().split('\n');
    for (const l of lines) TraceRecordSchema.parse(JSON.parse(l));
    const [run] = loadTraceFile(out);
    expect(run!.end).toBeUndefined();
    expect(run!.stages.length).toBeGreaterThan(100);
    const last = run!.stages.at(-1)!;
    expect(last.row.offset + last.row.bytes).toBeLessThanOrEqual(statSync(sidecarPath(out)).size);

    // The analysis of a run that did not finish is never NONE, and says why; exit 3.
    const a = greta(['analyze', out]);
    expect(a.code, a.stderr).toBe(3);
    expect(a.stdout).toMatch(/^\| p6_long \| E1 \| INCOMPLETE \| - \|/m);
    // Pairs read before the kill may all be equal: only ever "so far", never a verdict.
    expect(a.stdout).not.toMatch(/NONE|all bit-identical(?! so far)/);
    expect(a.stdout).toContain(`p6_long E1: INCOMPLETE: run ${run!.header.run_id} in ${out} has no end record: it did not finish;`);
    const j = greta(['analyze', '--json', out]);
    expect(j.code).toBe(3);
    expect((JSON.parse(j.stdout) as { rows: unknown[] }).rows).toEqual([expect.objectContaining({ status: 'incomplete', first_mismatch_stage: 'INCOMPLETE' })]);

    // Killed in the middle of a line: the line is named, the run is INCOMPLETE, nothing aborts.
    const n = lines.length;
    truncateSync(out, Buffer.byteLength(text) - 40);
    const c = greta(['analyze', out]);
    expect(c.code, c.stderr).toBe(3);
    expect(c.stderr).toBe('');
    expect(c.stdout).toMatch(/^\| p6_long \| E1 \| INCOMPLETE \|/m);
    expect(c.stdout).toContain(`did not finish; ${out}:${n} is cut short`);
  }, 60_000);
});

describe('greta analyze', () => {
  it('exit 0 and the CI lines for a finished run; --stats reports time and peak RSS', () => {
    const out = join(tempDir(), 'ok.jsonl');
    expect(greta(['trace', '--prompt', 'p4_sys', '--layers', '0,31', '--out', out]).code).toBe(0);
    const r = greta(['analyze', '--stats', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\| p4_sys \| E1 \| NONE \| - \| 0 \|/m);
    expect(r.stdout).toContain('p4_sys E1: 17 (layer, point) pairs, all bit-identical');
    const st = /^analyze: 1 file\(s\), [\d.]+ MB of JSONL \(\d+ lines, 1 runs, (\d+) records\), [\d.]+ MB of rows \((\d+) rows, 17 pairs\) in [\d.]+ s; peak RSS ([\d.]+) MB$/m.exec(r.stderr);
    expect(st, r.stderr).not.toBeNull();
    expect(Number(st![2])).toBe(34);
    // Reading traces loads no model: well under the trace command's footprint.
    expect(Number(st![3])).toBeGreaterThan(10);
    expect(Number(st![3])).toBeLessThan(150);
  });

  it('exit 3 when a prompt has nothing to pair (NO_DATA)', () => {
    const out = join(tempDir(), 'pre.jsonl');
    expect(greta(['trace', '--prompt', 'p0_short', '--layers', '0', '--phases', 'prefill_last', '--out', out]).code).toBe(0);
    const r = greta(['analyze', out]);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^\| p0_short \| E1 \| NO_DATA \| - \|/m);
    expect(r.stdout).toContain('p0_short E1: NO_DATA: no decode0 records');
  });

  it('--help documents every option and the exit codes', () => {
    const h = greta(['analyze', '--help']);
    expect(h.code).toBe(0);
    for (const f of ['--json', '--tol', '--stats', '--help']) expect(h.stdout).toContain(f + ' ');
    expect(h.stdout).toMatch(/Exit codes: 0 every row is a real comparison/);
    expect(h.stdout).toMatch(/3 a row is INCOMPLETE or NO_DATA/);
  });
});
