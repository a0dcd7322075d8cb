#!/usr/bin/env node
// greta trace | analyze | selftest. Bad input: one line on stderr, exit 2.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { analyzeRuns, formatTable, toJson } from '../analyze/analyze.js';
import { loadTraceFile } from '../analyze/load.js';
import { UsageError } from '../errors.js';
import { LoaderError } from '../loaders/errors.js';
import { resolveSelftestOptions, resolveTraceOptions, SELFTEST_OPTIONS, TRACE_OPTIONS, type OptionSpec } from '../options.js';
import { planTrace, runTrace } from '../run.js';
import { formatKvCheck } from '../trace/kvcheck.js';
import { formatOracle, oracleVerdicts } from '../analyze/oracle.js';
import { formatSelftest, listFaults, runSelftest } from '../selftest.js';

function optionLines(specs: Record<string, OptionSpec>): string[] {
  return Object.values(specs).map((o) => {
    const flag = `--${o.flag}${o.type === 'string' ? ' <v>' : ''}`;
    const env = o.env ? ` [${o.env}]` : '';
    const def = o.def !== undefined && o.type === 'string' ? ` (default ${o.def})` : '';
    return `  ${flag.padEnd(22)} ${o.help}${def}${env}`;
  });
}

const TRACE_HELP = (() => {
  const lines = optionLines(TRACE_OPTIONS);
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
})();

const ANALYZE_HELP = [
  'usage: npm run analyze -- [--json] [--tol X] <trace.jsonl ...>',
  '',
  'Pairs prefill_last with decode0 per (layer, point) in each run of the files,',
  'finds the first mismatch in forward order and prints the table.',
  '',
  '  --json      print the analysis as JSON on stdout',
  '  --tol <x>   count a pair as a mismatch only when its MAE exceeds x (default 0: any bit)',
  '  --help      this text',
].join('\n');

const SELFTEST_HELP = [
  'usage: npm run selftest -- [options]',
  '',
  'Plants each known decode defect (--list) in turn, traces E1 at every layer and',
  'point, and checks that the first mismatch is exactly where the fault was planted,',
  'and that the run without a fault is bit-identical. One row per case.',
  '',
  'options (flag beats the environment variable in brackets):',
  ...optionLines(SELFTEST_OPTIONS),
  '  --help                 this text',
  '',
  'Exit codes: 0 every case passed, 1 a case failed or the run failed, 2 bad input.',
].join('\n');

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, ''));
  }
}

function parseSpecs(argv: string[], specs: Record<string, OptionSpec>) {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const o of Object.values(specs)) options[o.flag] = { type: o.type };
  return parse(argv, options);
}

function traceCommand(argv: string[]): void {
  const { values, positionals } = parseSpecs(argv, TRACE_OPTIONS);
  if (values.help) {
    console.log(TRACE_HELP);
    return;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' (see --help)`);
  const opts = resolveTraceOptions(values as Record<string, string | boolean | undefined>, process.env);
  const plan = planTrace(opts, { prompt: values.prompt !== undefined });
  const log = (l: string) => console.error(l);
  const t0 = performance.now();
  const out = runTrace(plan, log);
  log(`trace: ${out.out} (${(performance.now() - t0).toFixed(0)} ms)`);
  for (const r of out.results) log(`${r.prompt} ${r.exp} generated: ${JSON.stringify(r.generated_text)}`);
  const runs = loadTraceFile(out.out).filter((r) => r.header.run_id === out.runId || r.header.options.oracle_for === out.runId);
  const rows = analyzeRuns(runs);
  const kv = runs.flatMap((r) => r.kvChecks);
  const oracle = oracleVerdicts(runs, rows, opts.oracleTol);
  if (opts.json) console.log(JSON.stringify({ ...toJson(rows), kv_checks: kv, oracle }, null, 2));
  else console.log([formatTable(rows), ...kv.map((c) => formatKvCheck(c.prompt, c.exp, c)), ...(oracle.length ? [formatOracle(oracle)] : [])].join('\n'));
}

function analyzeCommand(argv: string[]): void {
  const { values, positionals } = parse(argv, {
    json: { type: 'boolean' },
    tol: { type: 'string' },
    help: { type: 'boolean' },
  });
  if (values.help) {
    console.log(ANALYZE_HELP);
    return;
  }
  if (positionals.length === 0) throw new UsageError('analyze: give at least one trace .jsonl file (see --help)');
  const tol = values.tol === undefined ? 0 : Number(values.tol);
  if (!Number.isFinite(tol) || tol < 0) throw new UsageError(`--tol: '${values.tol}' is not a number >= 0`);
  const runs = positionals.flatMap((p) => loadTraceFile(String(p)));
  const rows = analyzeRuns(runs, { tol });
  if (rows.length === 0) throw new UsageError(`analyze: no stage records in ${positionals.join(', ')}`);
  console.log(values.json ? JSON.stringify(toJson(rows), null, 2) : formatTable(rows));
}

/** Returns the exit code: 1 when a case missed. */
function selftestCommand(argv: string[]): number {
  const { values, positionals } = parseSpecs(argv, SELFTEST_OPTIONS);
  if (values.help) {
    console.log(SELFTEST_HELP);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' (see --help)`);
  const opts = resolveSelftestOptions(values as Record<string, string | boolean | undefined>, process.env);
  if (opts.list) {
    console.log(listFaults());
    return 0;
  }
  const r = runSelftest(opts, (l) => console.error(l));
  console.log(opts.json ? JSON.stringify(r, null, 2) : formatSelftest(r));
  return r.failed > 0 ? 1 : 0;
}

const COMMANDS = ['trace', 'analyze', 'selftest'];

function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === 'trace') traceCommand(rest);
    else if (cmd === 'analyze') analyzeCommand(rest);
    else if (cmd === 'selftest') return selftestCommand(rest);
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

process.exitCode = main(process.argv.slice(2));
