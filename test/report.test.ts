// greta report: the page's data is the analyzer's (same first mismatch, same
// numbers), and the page works in a real browser: Debian's chromium headless
// loads the report of a run with a planted fault and of a clean run, logs no
// console errors, draws the heatmap with the first mismatch on the planted
// (layer, point), and says bit-identical everywhere for the clean run. The
// page leaves its facts in the DOM (data-rendered, data-errors, data-* on
// cells), so --dump-dom proves the script ran and drew. Screenshots go to
// test-artifacts/ (gitignored).
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';
import type { ReportData } from '../src/report/data.js';
import { scriptJson } from '../src/report/html.js';
import { sidecarPath } from '../src/trace/writer.js';
import { tempDir } from './helpers.js';

const CLI = join(packageRoot(), 'dist', 'cli', 'main.js');
const ARTIFACTS = join(packageRoot(), 'test-artifacts');

/**
 * A child process, awaited: the test worker's event loop stays free while
 * traces, reports and the browser run (a blocked worker misses vitest's RPC).
 */
function run(cmd: string, args: string[], cwd = tempDir()): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME }, cwd });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

const greta = (args: string[]) => run(process.execPath, [CLI, ...args]);

/** `greta trace` on cpu with these flags; returns the trace path. */
async function trace(out: string, flags: string[]): Promise<string> {
  const r = await greta(['trace', '--backend', 'cpu', '--model', 'synthetic:tiny', ...flags, '--out', out]);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

/** The page's own data: the JSON in #report-data, as its script reads it. */
function pageData(html: string): ReportData {
  const m = /<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html);
  expect(m, 'no #report-data in the page').not.toBeNull();
  const nonfinite = (v: unknown): v is { nonfinite: string } => v !== null && typeof v === 'object' && typeof (v as { nonfinite?: unknown }).nonfinite === 'string';
  return JSON.parse(m![1]!, (_k, v: unknown) => (nonfinite(v) ? Number(v.nonfinite) : v)) as ReportData;
}

let dir: string;
let faultTrace: string;
let cleanTrace: string;
let faultHtml: string;
let cleanHtml: string;

beforeAll(async () => {
  dir = tempDir('greta-report-');
  // Every layer and point, the attention pipe (probs), the KV check and the fp64 oracle.
  const common = ['--prompt', 'p0_short,p4_sys', '--attn-pipe', '--kv-check'];
  [faultTrace, cleanTrace] = await Promise.all([
    trace(join(dir, 'fault.jsonl'), [...common, '--fault', 'wo_layout@2', '--oracle', 'cpu-fp64']),
    trace(join(dir, 'clean.jsonl'), common),
  ]);
  faultHtml = join(dir, 'fault.html');
  cleanHtml = join(dir, 'clean.html');
  const [f, c] = await Promise.all([
    greta(['report', faultTrace, '--out', faultHtml]),
    greta(['report', cleanTrace, '--compare', faultTrace, '--out', cleanHtml]),
  ]);
  expect(f.code, f.stderr).toBe(0);
  expect(c.code, c.stderr).toBe(0);
}, 120_000);

describe('greta report: the page data is the analyzer JSON', () => {
  it('writes one self-contained file: data and script inline, nothing fetched', () => {
    const html = readFileSync(faultHtml, 'utf8');
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).not.toMatch(/\bsrc\s*=|<link\b|@import|url\(|https?:\/\//i);
    expect(html).toContain("default-src 'none'");
  });

  it('has the same rows, first mismatch and numbers as greta analyze --json', async () => {
    const a = await greta(['analyze', '--json', faultTrace]);
    expect(a.code).toBe(0);
    const j = JSON.parse(a.stdout) as {
      rows: { run_id: string; prompt: string; exp: string; first_mismatch_stage: string; first_mismatch_layer: number | null; first_mismatch: { head: number | null; mae: number; max_abs: number; rel_l2: number } | null; comparisons: { layer: number | null; point: string; head: number | null; equal: boolean; mae: number; max_abs: number; rel_l2: number }[] }[];
      kv_checks: { prompt: string; equal: boolean; first: unknown }[];
      oracle: { prompt: string; departed: string; prefill_last_rel_l2: number; decode0_rel_l2: number }[];
    };
    const d = pageData(readFileSync(faultHtml, 'utf8'));
    expect(d.sections.map((s) => [s.run_id, s.prompt, s.exp, s.first_mismatch_stage, s.first?.layer ?? null])).toEqual(
      j.rows.map((r) => [r.run_id, r.prompt, r.exp, r.first_mismatch_stage, r.first_mismatch_layer]),
    );
    for (const [i, r] of j.rows.entries()) {
      const s = d.sections[i]!;
      expect(s.first_mismatch_stage).toBe('wo_out');
      expect(s.first).toMatchObject({ layer: 2, point: 'wo_out', ...r.first_mismatch });
      expect(s.pairs).toBe(r.comparisons.length);
      // Every cell of a whole-row point is that comparison, number for number.
      for (const c of r.comparisons.filter((x) => x.head === null)) {
        const cell = s.cells.find((x) => x.layer === c.layer && x.point === c.point)!;
        expect(cell).toMatchObject({ equal: c.equal, mae: c.mae, max_abs: c.max_abs, rel_l2: c.rel_l2 });
      }
      // A per-head cell is its worst head by MAE, as the analyzer's <point>_mae.
      const probs = r.comparisons.filter((x) => x.point === 'probs' && x.layer === 5);
      const cell = s.cells.find((x) => x.layer === 5 && x.point === 'probs')!;
      expect(cell.mae).toBe(Math.max(...probs.map((x) => x.mae)));
      expect(cell.heads).toBe(probs.length);
      const kv = j.kv_checks.find((k) => k.prompt === r.prompt)!;
      expect(s.kv_check).toMatchObject({ equal: kv.equal, first: kv.first });
      const o = j.oracle.find((x) => x.prompt === r.prompt)!;
      expect(s.oracle).toMatchObject({ departed: 'decode0', prefill_last_rel_l2: o.prefill_last_rel_l2, decode0_rel_l2: o.decode0_rel_l2 });
      // wo_out is after attention: the probs panel shows the first probs row that differs, a layer down.
      expect(s.attention).toMatchObject({ layer: 3, why: 'first_probs_mismatch', equal: false });
      expect(s.topk.prefill_last![0]!.id).toBe(s.top1.prefill_last!.id);
      expect(typeof s.topk.decode0![0]!.text).toBe('string');
    }
    expect(d.runs.map((r) => r.backend)).toEqual(['cpu', 'cpu-fp64']);
    expect(d.runs[0]).toMatchObject({ model: { name: 'synthetic:tiny' }, device: expect.any(String), options: { fault: 'wo_layout@2' } });
  });

  it('a fault inside attention: the probs panel is at the first mismatch, where decode0 attends differently', async () => {
    const t = await trace(join(dir, 'stale.jsonl'), ['--prompt', 'p4_sys', '--layers', '0-3', '--attn-pipe', '--fault', 'kv_stale@2']);
    const out = join(dir, 'stale.html');
    const r = await greta(['report', t, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const s = pageData(readFileSync(out, 'utf8')).sections[0]!;
    expect(s.first).toMatchObject({ layer: 2, point: 'scores' });
    expect(s.attention).toMatchObject({ layer: 2, head: s.first!.head, why: 'first_mismatch', equal: false });
    const a = s.attention as { prefill_last: number[]; decode0: number[] };
    expect(a.prefill_last).toHaveLength(60);
    expect(a.decode0.some((v, i) => v !== a.prefill_last[i])).toBe(true);
  });

  it('--compare: the page holds the compare result against BASE', async () => {
    const d = pageData(readFileSync(cleanHtml, 'utf8'));
    const c = JSON.parse((await greta(['compare', '--json', faultTrace, cleanTrace])).stdout) as { first: { phase: string; layer: number; point: string; rel_l2: number } };
    expect(d.compare!.results).toHaveLength(1);
    const r = d.compare!.results[0]!;
    expect(r.mode).toBe('exact');
    expect(r.first).toMatchObject({ phase: 'decode0', layer: 2, point: 'wo_out', rel_l2: c.first.rel_l2 });
    expect(r.layers.find((l) => l.layer === 1)!.phases.decode0!.rel_l2).toBe(0);
  });

  it('collapse across prompts names the stuck token and its text', async () => {
    // The symptom: every decode0 lands on one token. A real trace's decode0 logits rewritten that way.
    const t = await trace(join(dir, 'ok.jsonl'), ['--prompt', 'p0_short,p4_sys,p6_long', '--layers', '0']);
    const lines = readFileSync(t, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; point?: string; phase?: string; topk?: { ids: number[] } });
    for (const l of lines) if (l.type === 'stage' && l.point === 'logits' && l.phase === 'decode0') l.topk!.ids[0] = 96965;
    const forced = join(dir, 'collapse.jsonl');
    writeFileSync(forced, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    copyFileSync(sidecarPath(t), sidecarPath(forced));
    const a = JSON.parse((await greta(['analyze', '--json', forced])).stdout) as { rows: { collapse: boolean; collapse_token: number | null }[] };
    expect(a.rows.every((r) => r.collapse && r.collapse_token === 96965)).toBe(true);
    const out = join(dir, 'collapse.html');
    expect((await greta(['report', forced, '--out', out])).code).toBe(0);
    const d = pageData(readFileSync(out, 'utf8'));
    expect(d.sections.map((s) => s.collapse?.id)).toEqual([96965, 96965, 96965]);
    expect(d.collapse).toHaveLength(1);
    expect(d.collapse[0]!.prompts.map((p) => p.prompt)).toEqual(['p0_short', 'p4_sys', 'p6_long']);
    expect(d.collapse[0]!.token).toEqual({ id: 96965, text: expect.any(String) });
    expect(d.collapse[0]!.token.text!.length).toBeGreaterThan(0);
  });
});

describe('the page data in its script element', () => {
  it('keeps infinities and NaN apart from text that spells them, and cannot close the script', () => {
    const data = { a: Infinity, b: -Infinity, c: NaN, d: 1.5, text: 'NaN', t2: 'Infinity', html: '</script><script>alert(1)</script>', sep: '\u2028' };
    const json = scriptJson(data);
    expect(json).not.toContain('</script');
    expect(json).not.toContain('\u2028');
    const back = pageData(`<script type="application/json" id="report-data">${json}</script>`) as unknown as typeof data;
    expect(back).toEqual(data);
  });
});

describe('greta report: a run that did not finish', () => {
  it('is written, exits 3 as analyze does, and the page says INCOMPLETE, never bit-identical', async () => {
    const cut = join(dir, 'cut.jsonl');
    const lines = readFileSync(cleanTrace, 'utf8').trim().split('\n');
    writeFileSync(cut, lines.slice(0, -1).join('\n') + '\n');
    copyFileSync(sidecarPath(cleanTrace), sidecarPath(cut));
    const out = join(dir, 'cut.html');
    const r = await greta(['report', cut, '--out', out]);
    expect(r.code).toBe(3);
    expect((await greta(['analyze', cut])).code).toBe(3);
    const d = pageData(readFileSync(out, 'utf8'));
    expect(d.sections.map((s) => [s.first_mismatch_stage, s.status, s.first])).toEqual([
      ['INCOMPLETE', 'incomplete', null],
      ['INCOMPLETE', 'incomplete', null],
    ]);
    expect(d.exit).toBe(3);
  });
});

describe('greta report: bad input is one line and exit 2', () => {
  const cases: [string, (t: string) => string[], RegExp][] = [
    ['no trace', () => ['report'], /^gretacore: report: give at least one trace \.jsonl file \(see --help\)$/],
    ['missing trace', () => ['report', 'nope.jsonl'], /^gretacore: cannot read trace 'nope\.jsonl' \(ENOENT\)$/],
    ['not an html out', (t) => ['report', t, '--out', 'x.jsonl'], /^gretacore: --out: 'x\.jsonl' is not an \.html or \.htm file name$/],
    ['negative tol', (t) => ['report', t, '--tol=-1'], /^gretacore: --tol: '-1' is not a number >= 0$/],
    ['zero oracle bound', (t) => ['report', t, '--oracle-tol', '0'], /^gretacore: --oracle-tol: '0' is not a number > 0$/],
    ['missing BASE', (t) => ['report', t, '--compare', 'base.jsonl'], /^gretacore: cannot read trace 'base\.jsonl' \(ENOENT\)$/],
    ['unknown flag', (t) => ['report', t, '--outt', 'r.html'], /^gretacore: Unknown option '--outt'$/],
  ];
  for (const [name, args, want] of cases) {
    it(name, async () => {
      const r = await greta(args(cleanTrace));
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(want);
    });
  }

  it('--compare with a file of several runs: one line saying which runs, exit 2', async () => {
    const two = join(dir, 'two.jsonl'); // both sidecars sit beside it, named by their records
    writeFileSync(two, readFileSync(cleanTrace, 'utf8') + readFileSync(faultTrace, 'utf8'));
    const r = await greta(['report', two, '--compare', cleanTrace, '--out', join(dir, 'two.html')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^gretacore: --compare: TEST '.*two\.jsonl' holds 3 runs; name one \(runs: .*\); the report compares files of one run \(and its oracle\): use greta compare --run for the others$/);
  });

  it('--help lists every option', async () => {
    const r = await greta(['report', '--help']);
    expect(r.code).toBe(0);
    for (const f of ['--out', '--compare', '--tol', '--oracle-tol', '--help']) expect(r.stdout).toContain(f + ' ');
  });
});

/** The chromium binary, or an error naming it: the browser tests fail, never skip, without it. */
function chromium(): string {
  const bin = process.env.CHROMIUM ?? 'chromium';
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`${bin} not found: the report's browser tests need Debian's chromium (apt-get install --no-install-recommends chromium; .ci/run installs it)`);
  }
  return r.stdout.trim();
}

const HEADLESS = ['--headless', '--disable-gpu', '--no-sandbox', '--hide-scrollbars', '--no-first-run', '--disable-extensions'];

/** The DOM after the page's script ran, and the console lines chromium logged. */
async function loadInChromium(bin: string, html: string): Promise<{ dom: string; console: string[] }> {
  const profile = tempDir('greta-chromium-');
  const r = await run(bin, [...HEADLESS, `--user-data-dir=${profile}`, '--enable-logging=stderr', '--v=0', '--dump-dom', pathToFileURL(html).href]);
  expect(r.code, r.stderr).toBe(0);
  return { dom: r.stdout, console: r.stderr.split('\n').filter((l) => /:CONSOLE[:(]/.test(l)) };
}

async function screenshot(bin: string, html: string, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const png = join(ARTIFACTS, name);
  const profile = tempDir('greta-chromium-');
  const r = await run(bin, [...HEADLESS, `--user-data-dir=${profile}`, '--window-size=1500,2200', `--screenshot=${png}`, pathToFileURL(html).href]);
  expect(r.code, r.stderr).toBe(0);
  expect(existsSync(png) && statSync(png).size > 10_000).toBe(true);
  console.log(`report screenshot: ${png}`);
  return png;
}

/** The drawn report: <main>, without the page's script text (which spells the same attributes). */
const drawn = (dom: string) => /<main id="report">([\s\S]*?)<\/main>/.exec(dom)?.[1] ?? '';
const attrs = (tag: string) => Object.fromEntries([...tag.matchAll(/([a-z-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));

describe('greta report in chromium (headless)', () => {
  let bin: string;
  beforeAll(() => {
    bin = chromium();
  });

  it('the planted-fault page draws the heatmap with the first mismatch at the planted (layer, point), no console errors', async () => {
    const { dom, console: logged } = await loadInChromium(bin, faultHtml);
    const body = attrs(/<body[^>]*>/.exec(dom)![0]);
    expect(body['data-rendered']).toBe('1');
    expect(body['data-errors']).toBe('0');
    expect(logged).toEqual([]);
    const main = drawn(dom);
    const maps = [...main.matchAll(/<svg[^>]*class="heatmap"[^>]*>/g)].map((m) => attrs(m[0]));
    expect(maps).toHaveLength(2);
    const d = pageData(readFileSync(faultHtml, 'utf8'));
    for (const m of maps) expect(Number(m['data-cells'])).toBe(d.sections[0]!.cells.length);
    expect(main.match(/<rect class="cell"/g)!.length).toBe(d.sections.reduce((n, s) => n + s.cells.length, 0));
    const firsts = [...main.matchAll(/<rect class="cell"[^>]*data-first-mismatch="1"[^>]*>/g)].map((m) => attrs(m[0]));
    expect(firsts.map((f) => [f['data-layer'], f['data-point'], f['data-equal']])).toEqual([
      ['2', 'wo_out', 'false'],
      ['2', 'wo_out', 'false'],
    ]);
    // Cells before the fault are shown as exact, not as tiny numbers.
    expect(main).toMatch(/<rect class="cell"[^>]*data-layer="1" data-point="x_out" data-equal="true"(?![^>]*data-log10)/);
    const sections = [...main.matchAll(/<section [^>]*>/g)].map((m) => attrs(m[0]));
    expect(sections.map((s) => [s['data-prompt'], s['data-first-stage'], s['data-first-layer'], s['data-bit-identical']])).toEqual([
      ['p0_short', 'wo_out', '2', 'false'],
      ['p4_sys', 'wo_out', '2', 'false'],
    ]);
    expect(main).toMatch(/<svg[^>]*class="probs"[^>]*data-layer="3"/);
    // Hovering a cell shows its numbers: a copy of the page that moves the mouse over the first mismatch.
    const hover = join(dir, 'fault-hover.html');
    const probe =
      "<script>var c = document.querySelector('rect[data-first-mismatch]'), r = c.getBoundingClientRect();" +
      "c.dispatchEvent(new MouseEvent('mousemove', { bubbles: true, clientX: r.x + 2, clientY: r.y + 2 }));" +
      "var t = document.getElementById('tip'); document.body.setAttribute('data-tip', t.style.display + '|' + t.textContent.replace(/\\n/g, ';'));</script>";
    writeFileSync(hover, readFileSync(faultHtml, 'utf8').replace('</body>', probe + '</body>'));
    const tip = attrs(/<body[^>]*>/.exec((await loadInChromium(bin, hover)).dom)![0])['data-tip']!;
    const first = pageData(readFileSync(faultHtml, 'utf8')).sections[0]!.first!;
    expect(tip).toContain('block|p0_short E1  layer 2 wo_out');
    expect(tip).toContain(`mae      ${first.mae.toExponential(3)}`);
    expect(tip).toContain(`rel_l2   ${first.rel_l2.toExponential(3)}`);
    expect(tip).toContain('FIRST MISMATCH');
    expect(main).toContain('decode0 departed');
    expect(main).toMatch(/data-kv="differs"/);
    await screenshot(bin, faultHtml, 'report-fault.png');
  });

  it('the clean page says bit-identical everywhere, and shows the compare result', async () => {
    const { dom, console: logged } = await loadInChromium(bin, cleanHtml);
    const body = attrs(/<body[^>]*>/.exec(dom)![0]);
    expect([body['data-rendered'], body['data-errors']]).toEqual(['1', '0']);
    expect(logged).toEqual([]);
    const main = drawn(dom);
    expect(main).toMatch(/id="overall"[^>]*data-all-bit-identical="true"/);
    expect(main).toContain('every prompt and experiment: bit-identical everywhere');
    const maps = [...main.matchAll(/<svg[^>]*class="heatmap"[^>]*>/g)].map((m) => attrs(m[0]));
    expect(maps).toHaveLength(2);
    for (const m of maps) expect(m['data-exact']).toBe(m['data-cells']);
    expect(main).not.toContain('data-first-mismatch');
    expect(main.match(/bit-identical everywhere: all \d+ \(layer, point\) pairs equal/g)).toHaveLength(2);
    expect(main).toMatch(/data-compare-first="p0_short E1 decode0 layer 2 wo_out"/);
    await screenshot(bin, cleanHtml, 'report-clean.png');
  });
});
