// Options of every command: a spec per option (flag, environment variable,
// default, help) and one resolver that merges flags, the environment and
// defaults and validates the text with zod. The library's typed options are
// written as the flags they stand for (inputFlags) and take the same path, so
// a bad value is the same UsageError from the CLI and from the library.
//
// This module and the options of the commands that read traces (analyze,
// compare, report) load no model code; options.ts adds those of trace and
// selftest, which name prompts, models and backends.
import { z } from 'zod';
import { UsageError } from './errors.js';
import { splitList } from './lists.js';
import { DEFAULT_ORACLE_BOUND } from './analyze/oracle.js';
import { POINT_ALIASES, POINTS, type Point } from './trace/points.js';

/** One option: its flag, its environment variable, its default and its help line. */
export interface OptionSpec {
  flag: string;
  env?: string;
  type: 'string' | 'boolean';
  /** The flag may be repeated; its values come as a list. */
  multiple?: boolean;
  def?: string;
  help: string;
}

/** Flags as node:util parseArgs hands them over. */
export type Flags = Record<string, string | boolean | string[] | undefined>;

/** The --help lines of `specs`: flag, help, default and variable. */
export function optionLines(specs: Record<string, OptionSpec>): string[] {
  return Object.values(specs).map((o) => {
    const flag = `--${o.flag}${o.type === 'string' ? ' <v>' : ''}`;
    const env = o.env ? ` [${o.env}]` : '';
    const def = o.def !== undefined && o.type === 'string' ? ` (default ${o.def})` : '';
    return `  ${flag.padEnd(22)} ${o.help}${def}${env}`;
  });
}

/**
 * A library input (typed, keyed by option name) as the flags it stands for:
 * lists joined by commas, POINT=BOUND maps as `p=x,..`, numbers as text,
 * booleans as they are. Options outside `specs` are a TypeError.
 */
export function inputFlags(input: object, specs: Record<string, OptionSpec>): Flags {
  const out: Flags = {};
  for (const [key, value] of Object.entries(input) as [string, unknown][]) {
    if (value === undefined) continue;
    const spec = specs[key];
    if (spec === undefined) throw new TypeError(`unknown option '${key}' (allowed: ${Object.keys(specs).join(', ')})`);
    out[spec.flag] =
      typeof value === 'boolean' ? value
      : Array.isArray(value) ? (spec.multiple ? value.map(String) : value.join(','))
      : value !== null && typeof value === 'object' ? Object.entries(value).map(([k, v]) => `${k}=${v}`).join(',')
      : String(value);
  }
  return out;
}

/** `specs` without the options that only choose how the CLI prints (--json, --stats, --list). */
export function inputSpecs<S extends Record<string, OptionSpec>, K extends keyof S>(specs: S, ...printOnly: K[]): Omit<S, K> {
  return Object.fromEntries(Object.entries(specs).filter(([k]) => !printOnly.includes(k as K))) as Omit<S, K>;
}

/**
 * Merges flags (already parsed by node:util parseArgs) with the environment
 * and defaults, then validates with `schema`. Throws UsageError on the first
 * bad value, naming the flag or variable it came from (and the item, for an
 * issue raised at an item of a list: `--tol-point logits: ...`).
 */
export function resolveWith<T>(
  specs: Record<string, OptionSpec>,
  schema: z.ZodType<T>,
  flags: Flags,
  env: NodeJS.ProcessEnv,
  before?: (fromFlag: Record<string, boolean>) => void,
): { opts: T; source: (key: string) => string } {
  const raw: Record<string, string | string[]> = {};
  const fromFlag: Record<string, boolean> = {};
  for (const [key, spec] of Object.entries(specs)) {
    const f = flags[spec.flag];
    if (f !== undefined) {
      raw[key] = typeof f === 'boolean' ? (f ? '1' : '0') : f;
      fromFlag[key] = true;
    } else if (spec.env && env[spec.env] !== undefined) {
      raw[key] = env[spec.env]!;
    } else if (spec.def !== undefined) {
      raw[key] = spec.def;
    }
  }
  const source = (key: string) => {
    const spec = specs[key]!;
    return fromFlag[key] ? `--${spec.flag}` : (spec.env ?? `--${spec.flag}`);
  };
  before?.(fromFlag);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const item = issue.path.slice(1).join(' ');
    throw new UsageError(`${source(String(issue.path[0]))}${item ? ` ${item}` : ''}: ${issue.message}`);
  }
  return { opts: parsed.data, source };
}

export const boolFlag = z
  .string()
  .transform((s, ctx) => {
    const v = s.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on', ''].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    ctx.addIssue({ code: 'custom', message: `'${s}' is not a boolean (allowed: 1, 0, true, false)` });
    return z.NEVER;
  });

/** A number within `ok`, from text; `what` names the range in the message. */
const numberWhere = (ok: (v: number) => boolean, what: string) =>
  z.string().transform((s, ctx) => {
    const v = Number(s);
    if (s.trim() === '' || !Number.isFinite(v) || !ok(v)) {
      ctx.addIssue({ code: 'custom', message: `'${s}' is not a number ${what}` });
      return z.NEVER;
    }
    return v;
  });

export const positiveNumber = numberWhere((v) => v > 0, '> 0');

/** A whole number of at least `min`, from text. */
export const intAtLeast = (min: number) =>
  z.string().transform((s, ctx) => {
    if (!/^\d+$/.test(s) || Number(s) < min) {
      ctx.addIssue({ code: 'custom', message: `'${s}' is not an integer >= ${min}` });
      return z.NEVER;
    }
    return Number(s);
  });
export const nonNegativeNumber = numberWhere((v) => v >= 0, '>= 0');

const resolvePoint = (x: string): Point | undefined =>
  (POINTS as readonly string[]).includes(x) ? (x as Point) : POINT_ALIASES[x];

const TOL_POINT_NAMES = [...POINTS, ...Object.keys(POINT_ALIASES)];
const TOL_POINT_ALLOWED = `allowed: POINT=BOUND items, comma-separated, POINT one of ${TOL_POINT_NAMES.join(', ')}`;

/** POINT=BOUND items: bounds for single points; a bad bound is an issue at its point. */
const tolPoint = z.string().transform((s, ctx): Partial<Record<Point, number>> => {
  const fail = (message: string, path: string[] = []) => {
    ctx.addIssue({ code: 'custom', message, path });
    return z.NEVER;
  };
  const l = splitList(s, TOL_POINT_ALLOWED);
  if ('error' in l) return fail(l.error);
  if (l.items.length === 0) return fail(`empty list (${TOL_POINT_ALLOWED})`);
  const out: Partial<Record<Point, number>> = {};
  for (const item of l.items) {
    const m = /^([a-z_0-9]+)=(.+)$/.exec(item);
    if (!m) return fail(`'${item}' is not POINT=BOUND (${TOL_POINT_ALLOWED})`);
    const p = resolvePoint(m[1]!);
    if (!p) return fail(`unknown point '${m[1]}' (allowed: ${TOL_POINT_NAMES.join(', ')})`);
    const b = nonNegativeNumber.safeParse(m[2]!);
    if (!b.success) return fail(b.error.issues[0]!.message, [m[1]!]);
    out[p] = b.data;
  }
  return out;
});

/** Options of the commands that read no environment variables: flags and defaults. */
function resolveFlags<T>(specs: Record<string, OptionSpec>, schema: z.ZodType<T>, flags: Flags): T {
  return resolveWith(specs, schema, flags, {}).opts;
}

// --json and --stats choose how the CLI prints, not what a call returns.
const STATS = { flag: 'stats', type: 'boolean', help: 'print time, bytes read and peak RSS to stderr' } as const satisfies OptionSpec;
const PRINTING = { json: boolFlag.optional(), stats: boolFlag.optional() };

export const ANALYZE_OPTIONS = {
  tol: { flag: 'tol', type: 'string', def: '0', help: 'count a pair as a mismatch only when its MAE exceeds x (default 0: any bit)' },
  oracleTol: { flag: 'oracle-tol', type: 'string', def: String(DEFAULT_ORACLE_BOUND), help: 'relative L2 to the oracle run (--oracle) beyond which a phase departed (default 1e-4)' },
  json: { flag: 'json', type: 'boolean', help: 'print the analysis as JSON on stdout' },
  stats: STATS,
} as const satisfies Record<string, OptionSpec>;

export const AnalyzeOptionsSchema = z.object({ tol: nonNegativeNumber, oracleTol: nonNegativeNumber, ...PRINTING });
export type AnalyzeCommandOptions = z.infer<typeof AnalyzeOptionsSchema>;
export const resolveAnalyzeOptions = (flags: Flags) => resolveFlags(ANALYZE_OPTIONS, AnalyzeOptionsSchema, flags);

export const COMPARE_OPTIONS = {
  tol: { flag: 'tol', type: 'string', help: 'relative-L2 bound for every point; 0 means bits equal' },
  tolPoint: { flag: 'tol-point', type: 'string', help: 'bounds for single points, over the default or --tol (e.g. logits=1e-4,attn_out=2e-5)' },
  runs: {
    flag: 'run',
    type: 'string',
    multiple: true,
    help: 'the run to take from a file holding several; repeat for the other file,\nor give two for two runs of one file (BASE first)',
  },
  json: { flag: 'json', type: 'boolean', help: 'print the comparison as JSON on stdout (every pair)' },
  stats: STATS,
} as const satisfies Record<string, OptionSpec>;

// No defaults: without --tol the tolerance follows the runs (exact, or the fp32 bounds).
export const CompareOptionsSchema = z.object({
  tol: nonNegativeNumber.optional(),
  tolPoint: tolPoint.optional(),
  runs: z.array(z.string()).optional(),
  ...PRINTING,
});
export type CompareCommandOptions = z.infer<typeof CompareOptionsSchema>;
export const resolveCompareOptions = (flags: Flags) => resolveFlags(COMPARE_OPTIONS, CompareOptionsSchema, flags);

export const REPORT_OPTIONS = {
  out: { flag: 'out', type: 'string', def: 'report.html', help: 'the HTML file to write (.html or .htm), replaced if it exists' },
  compare: { flag: 'compare', type: 'string', help: 'also compare every trace with this BASE trace, as greta compare BASE.jsonl TRACE does' },
  tol: { flag: 'tol', type: 'string', def: '0', help: "count a pair as a mismatch only when its MAE exceeds x, as analyze's --tol (0: any bit)" },
  oracleTol: { flag: 'oracle-tol', type: 'string', def: '1e-4', help: 'relative L2 to the oracle run (--oracle) beyond which a phase departed' },
} as const satisfies Record<string, OptionSpec>;

export const ReportOptionsSchema = z.object({
  // An .html name: a slip of argument order must not overwrite a trace.
  out: z.string().refine((s) => /\.html?$/i.test(s), { error: (iss) => `'${String(iss.input)}' is not an .html or .htm file name` }),
  compare: z.string().min(1, 'empty BASE trace name').optional(),
  tol: nonNegativeNumber,
  oracleTol: positiveNumber,
});
export type ReportOptions = z.infer<typeof ReportOptionsSchema>;
export const resolveReportOptions = (flags: Flags) => resolveFlags(REPORT_OPTIONS, ReportOptionsSchema, flags);

/** One value or several: a library input's lists (an array, or one value; text lists may be comma-separated). */
export type List<T extends string | number = string> = T | readonly T[];

/** The files of a List, as an array. */
export function fileList(files: List): string[] {
  return typeof files === 'string' ? [files] : [...files];
}

/** true when A and B are the same set of keys: a library input names exactly its command's options. */
export type SameKeys<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
