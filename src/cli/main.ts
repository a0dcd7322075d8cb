#!/usr/bin/env node
// greta trace | analyze | compare | report | selftest. Bad input: one line on stderr, exit 2.
// Each command is the library call of src/api/ with argv parsing (the option
// specs and schemas of spec.ts and options.ts), printing what the call
// returns, and the exit code it stands for.
// analyze and compare load no model code: trace and selftest import theirs
// (the tokenizer, the addon), and report the tokenizer for token text, when
// they run, so reading traces stays light.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ANALYZE_EXIT, formatAnalysis, formatTable, toJson } from '../analyze/analyze.js';
import { formatOracle, type OracleVerdict } from '../analyze/oracle.js';
import { analyzeWith } from '../api/analyze.js';
import { compareWith } from '../api/compare.js';
import { COMPARE_EXIT, formatCompare, FP32_REL_L2, FP32_REL_L2_OTHER } from '../compare/compare.js';
import { UsageError } from '../errors.js';
import { LoaderError } from '../loaders/errors.js';
import type { Timing } from '../rss.js';
import { ANALYZE_OPTIONS, COMPARE_OPTIONS, optionLines, REPORT_OPTIONS, resolveAnalyzeOptions, resolveCompareOptions, resolveReportOptions, type Flags, type OptionSpec } from '../spec.js';
import { formatKvCheck } from '../trace/kvcheck.js';
import type { KvCheckRecord } from '../trace/schema.js';

function traceHelp(specs: Record<string, OptionSpec>): string {
  const lines = optionLines(specs);
  return [
    'usage: npm run trace -- [options]',
    '',
    'Runs prefill and decode on our kernels, records every stage of the chosen layers',
    'to JSONL, and prints where decode0 first departs from prefill_last.',
    '',
    'options (flag beats the environment variable in brackets):',
    ...lines,
    '  --help                 this text',
    '',
    'GRETA_TRACE_STAGE=1 is accepted for compatibility; the trace command always traces.',
    'GRETA_ADDON=<greta.node> loads that addon instead of build/Release/greta.node',
    '(e.g. one built with npm run build:hip -- -O DIR: DIR/Release/greta.node).',
    'Exit codes: 0 ok, 1 run failed, 2 bad input.',
  ].join('\n');
}

const ANALYZE_HELP = [
  'usage: npm run analyze -- [--json] [--tol X] [--stats] <trace.jsonl ...>',
  '',
  'Pairs prefill_last with decode0 per (layer, point) in each run of the files,',
  'finds the first mismatch in forward order and prints the table. A run without',
  'its end record is INCOMPLETE, a prompt and experiment with nothing to pair',
  'NO_DATA; neither is ever NONE.',
  '',
  `  --json      ${ANALYZE_OPTIONS.json.help}`,
  `  --tol <x>   ${ANALYZE_OPTIONS.tol.help}`,
  `  --oracle-tol <x>  ${ANALYZE_OPTIONS.oracleTol.help}`,
  `  --stats     ${ANALYZE_OPTIONS.stats.help}`,
  '  --help      this text',
  '',
  `Exit codes: ${ANALYZE_EXIT.ok} every row is a real comparison (NONE or a first mismatch),`,
  `${ANALYZE_EXIT.badInput} bad input (a missing file, a malformed line), ${ANALYZE_EXIT.notCompared} a row is INCOMPLETE or NO_DATA`,
  'or a line was cut short, 1 the analysis failed.',
].join('\n');

const COMPARE_HELP = [
  'usage: npm run compare -- [options] BASE.jsonl TEST.jsonl',
  '',
  'Pairs the stage records of two traces by (prompt, exp, phase, layer, point[, head])',
  'and position, computes MAE, max abs, relative L2 (to BASE) and cosine similarity',
  'in float64 on the full rows, and prints the first pair beyond tolerance in forward',
  'order, each phase\'s count, the worst relative L2 of each layer per phase (error',
  'growth through depth) and the records on one side only.',
  '',
  `  --tol <x>            ${COMPARE_OPTIONS.tol.help}`,
  `  --tol-point <p=x,..> ${COMPARE_OPTIONS.tolPoint.help}`,
  `  --run <id>           ${COMPARE_OPTIONS.runs.help.replaceAll('\n', `\n${' '.repeat(23)}`)}`,
  `  --json               ${COMPARE_OPTIONS.json.help}`,
  `  --stats              ${COMPARE_OPTIONS.stats.help}`,
  '  --help               this text',
  '',
  'Default tolerance: bits equal when both runs name the same backend and model;',
  'otherwise each point\'s relative L2 within its fp32-against-fp64 bound',
  `(${Object.entries(FP32_REL_L2).map(([p, b]) => `${p} ${b.toExponential()}`).join(', ')}; other points ${FP32_REL_L2_OTHER.toExponential()}).`,
  'A token or position that differs (token_id, token_index, pos_id) is a mismatch.',
  '',
  `Exit codes: ${COMPARE_EXIT.ok} every common pair within tolerance, ${COMPARE_EXIT.beyond} a pair beyond it,`,
  `${COMPARE_EXIT.badInput} bad input (a missing file or flag value, no common pairs, an ambiguous run),`,
  `${COMPARE_EXIT.unfinished} every pair within tolerance but a run did not finish.`,
].join('\n');

const selftestHelp = (specs: Record<string, OptionSpec>) => [
  'usage: npm run selftest -- [options]',
  '',
  'Plants each known decode defect (--list) in turn, traces E1 at every layer and',
  'point, and checks that the first mismatch is exactly where the fault was planted,',
  'and that the run without a fault is bit-identical. One row per case.',
  '',
  'options (flag beats the environment variable in brackets):',
  ...optionLines(specs),
  '  --help                 this text',
  '',
  'Exit codes: 0 every case passed, 1 a case failed or the run failed, 2 bad input.',
].join('\n');

function parse<const O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, ''));
  }
}

function parseSpecs(argv: string[], specs: Record<string, OptionSpec>) {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { help: { type: 'boolean' } };
  for (const o of Object.values(specs)) options[o.flag] = { type: o.type, ...(o.multiple ? { multiple: true } : {}) };
  const { values, positionals } = parse(argv, options);
  // Only string options repeat (multiple), so a list is of strings.
  return { values: values as Flags, positionals };
}

/** The table (or --json) of an analysis, with the KV verdicts and the oracle's, as trace and analyze print them. */
function printAnalysis(json: boolean | undefined, table: string, jsonRows: object, kvChecks: KvCheckRecord[], oracle: OracleVerdict[]): void {
  if (json) console.log(JSON.stringify({ ...jsonRows, kv_checks: kvChecks, oracle }, null, 2));
  else console.log([table, ...kvChecks.map((c) => formatKvCheck(c.prompt, c.exp, c)), ...(oracle.length ? [formatOracle(oracle)] : [])].join('\n'));
}

async function traceCommand(argv: string[]): Promise<void> {
  const { resolveTraceOptions, TRACE_OPTIONS } = await import('../options.js');
  const { traceWith } = await import('../api/trace.js');
  const { values, positionals } = parseSpecs(argv, TRACE_OPTIONS);
  if (values.help) {
    console.log(traceHelp(TRACE_OPTIONS));
    return;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' (see --help)`);
  const opts = resolveTraceOptions(values, process.env);
  const log = (l: string) => console.error(l);
  const t = traceWith(opts, log);
  log(`trace: ${t.out} (${(t.timing.seconds * 1e3).toFixed(0)} ms)`);
  for (const r of t.results) log(`${r.prompt} ${r.exp} generated: ${JSON.stringify(r.generated_text)}`);
  printAnalysis(opts.json, formatTable(t.rows), toJson(t.rows), t.kvChecks, t.oracle);
}

function statsLine(cmd: string, timing: Timing, parts: string[]): string {
  return `${cmd}: ${parts.join(', ')} in ${timing.seconds.toFixed(2)} s; peak RSS ${(timing.peak_rss_bytes / 1e6).toFixed(1)} MB`;
}

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

/** Returns the exit code: 3 when a row is not a real comparison. */
function analyzeCommand(argv: string[]): number {
  const { values, positionals } = parseSpecs(argv, ANALYZE_OPTIONS);
  if (values.help) {
    console.log(ANALYZE_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('analyze: give at least one trace .jsonl file (see --help)');
  const opts = resolveAnalyzeOptions(values);
  const a = analyzeWith(positionals, opts);
  printAnalysis(opts.json, formatAnalysis(a), toJson(a.rows, a.problems), a.kvChecks, a.oracle);
  if (opts.stats) {
    const st = a.stats;
    console.error(
      statsLine('analyze', a.timing, [
        `${st.files} file(s), ${mb(st.bytes)} of JSONL (${st.lines} lines, ${st.runs} runs, ${st.records} records)`,
        `${mb(st.row_bytes_read)} of rows (${st.rows_read} rows, ${st.pairs} pairs)`,
      ]),
    );
  }
  return a.exit;
}

/** Returns the exit code: 1 beyond tolerance, 3 a run did not finish. */
function compareCommand(argv: string[]): number {
  const { values, positionals } = parseSpecs(argv, COMPARE_OPTIONS);
  if (values.help) {
    console.log(COMPARE_HELP);
    return 0;
  }
  if (positionals.length !== 2) {
    throw new UsageError(`compare: give two trace files, BASE.jsonl TEST.jsonl (got ${positionals.length}; see --help)`);
  }
  const opts = resolveCompareOptions(values);
  const { timing, ...r } = compareWith(positionals[0]!, positionals[1]!, opts);
  console.log(opts.json ? JSON.stringify(r, null, 2) : formatCompare(r));
  if (opts.stats) {
    console.error(statsLine('compare', timing, [`${r.pairs.length} pairs`, `${mb(r.stats.row_bytes_read)} of rows (${r.stats.rows_read} rows)`]));
  }
  return r.exit;
}

const reportHelp = (specs: Record<string, OptionSpec>) => [
  'usage: npm run report -- [options] <trace.jsonl ...>',
  '',
  'Writes one self-contained HTML page (no network needed) with, per prompt and',
  'experiment, the analyze results drawn: a heatmap of log10 error over layer x point',
  'with the first mismatch marked, error growth through depth, the oracle verdict,',
  'the probs of both phases at the attention mismatch, the KV check, top-k tables and',
  'collapse, and with --compare the compare result of each trace against BASE.',
  '',
  'options:',
  ...optionLines(specs),
  '  --help                 this text',
  '',
  'Exit codes: 0 written, every row a real comparison; 2 bad input (a missing file,',
  'a malformed line, a bad flag); 3 written, but a row is INCOMPLETE or NO_DATA or a',
  'line was cut short; 1 the report failed.',
].join('\n');

/** Returns the analyzer's exit code once the page is written. */
async function reportCommand(argv: string[]): Promise<number> {
  const { reportWith } = await import('../api/report.js');
  const { values, positionals } = parseSpecs(argv, REPORT_OPTIONS);
  if (values.help) {
    console.log(reportHelp(REPORT_OPTIONS));
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('report: give at least one trace .jsonl file (see --help)');
  const r = reportWith(positionals, resolveReportOptions(values));
  console.error(`report: ${r.out} (${(r.bytes / 1e3).toFixed(1)} kB, ${r.data.sections.length} prompt x exp, ${r.timing.seconds.toFixed(2)} s)`);
  return r.exit;
}

/** Returns the exit code: 1 when a case missed. */
async function selftestCommand(argv: string[]): Promise<number> {
  const { resolveSelftestOptions, SELFTEST_OPTIONS } = await import('../options.js');
  const { faults, selftestWith } = await import('../api/selftest.js');
  const { formatFaults, formatSelftest } = await import('../selftest.js');
  const { values, positionals } = parseSpecs(argv, SELFTEST_OPTIONS);
  if (values.help) {
    console.log(selftestHelp(SELFTEST_OPTIONS));
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' (see --help)`);
  const opts = resolveSelftestOptions(values, process.env);
  if (opts.list) {
    console.log(formatFaults(faults()));
    return 0;
  }
  const r = selftestWith(opts, (l) => console.error(l));
  console.log(opts.json ? JSON.stringify(r, null, 2) : formatSelftest(r));
  return r.failed > 0 ? 1 : 0;
}

const COMMANDS = ['trace', 'analyze', 'compare', 'report', 'selftest'];

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === 'trace') await traceCommand(rest);
    else if (cmd === 'analyze') return analyzeCommand(rest);
    else if (cmd === 'compare') return compareCommand(rest);
    else if (cmd === 'report') return await reportCommand(rest);
    else if (cmd === 'selftest') return await selftestCommand(rest);
    else if (cmd === undefined || cmd === '--help' || cmd === 'help') console.log(`usage: greta <${COMMANDS.join('|')}> [options]; --help on each`);
    else throw new UsageError(`unknown command '${cmd}' (allowed: ${COMMANDS.join(', ')})`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof LoaderError) {
      console.error(`gretacore: ${e.message}`);
      return 2;
    }
    const err = e as Error & { code?: string };
    // Errors with a code (from the addon, or resource checks) are expected failures: one line.
    console.error(err.code ? `gretacore: [${err.code}] ${err.message}` : `gretacore: ${err.stack ?? err.message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
