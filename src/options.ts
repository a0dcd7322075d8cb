// Options of `trace` and `selftest`: CLI flags, then GRETA_TRACE_* / GRETA_*
// environment variables, then defaults (a flag beats its variable). Each raw
// string goes through one zod schema; the first problem becomes a UsageError
// naming the flag or variable, the bad value and what is allowed. The resolver
// and the options of the commands that load no model are in spec.ts.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { allowed, UsageError } from './errors.js';
import { splitList } from './lists.js';
import { boolFlag, positiveNumber, resolveWith, type Flags, type OptionSpec } from './spec.js';
import { BACKEND_KINDS, type BackendKind } from './native.js';
import { MODEL_NAMES } from './model/models.js';
import { ATTN_PIPE_POINTS, DEFAULT_PHASES, inForwardOrder, PHASE_RE, POINT_ALIASES, POINTS, STAGE_POINTS, type Point } from './trace/points.js';

/** The points of a post-WO trace: everything between WO and the logits. */
export const POST_WO_POINTS: readonly Point[] = ['ffn_norm', 'mlp_out', 'x_out', 'final_norm', 'lm_head_in', 'logits'];
import { PROMPT_NAMES } from './prompts.js';
import { FAULT_NAMES, parseFaultSpec, type FaultName, type FaultSpec } from './faults.js';
import { ExpSchema } from './trace/schema.js';

export const TRACE_OPTIONS = {
  prompt: { flag: 'prompt', type: 'string', def: 'p4_sys', help: `built-in prompt(s), comma-separated (${PROMPT_NAMES.join(', ')})` },
  promptText: { flag: 'prompt-text', type: 'string', help: 'trace this text instead (Llama 3 special tokens allowed)' },
  promptFile: { flag: 'prompt-file', type: 'string', help: 'trace the text of this file instead' },
  exp: { flag: 'exp', env: 'GRETA_TRACE_EXP', type: 'string', def: 'E1', help: 'experiments, comma-separated: E1 aligned, E0 natural' },
  model: { flag: 'model', env: 'GRETA_MODEL', type: 'string', def: 'synthetic:tiny', help: `model: ${MODEL_NAMES.join(', ')}, a Hugging Face Llama directory, or a .gguf file` },
  backend: { flag: 'backend', env: 'GRETA_BACKEND', type: 'string', def: 'auto', help: `backend: auto (hip when built and a GPU answers, else cpu), ${BACKEND_KINDS.join(', ')}` },
  steps: { flag: 'steps', env: 'GRETA_TRACE_STEPS', type: 'string', def: '1', help: 'decode steps after prefill (phases decode0..decodeK-1)' },
  out: { flag: 'out', env: 'GRETA_TRACE_STAGE_OUT', type: 'string', help: 'JSONL path, appended to (default artifacts/alignment/<date>/trace_<run_id>.jsonl)' },
  layers: { flag: 'layers', env: 'GRETA_TRACE_STAGE_LAYERS', type: 'string', def: 'all', help: 'layers to trace: all, or a list like 0,1,2,15,31 or 0-3,31' },
  points: { flag: 'points', env: 'GRETA_TRACE_STAGE_POINTS', type: 'string', def: STAGE_POINTS.join(','), help: `points to trace (${POINTS.join(', ')}; aliases x_after_mlp, final_rms)` },
  attnPipe: { flag: 'attn-pipe', env: 'GRETA_TRACE_ATTN_PIPE', type: 'boolean', def: '0', help: `also trace the attention pipe: ${ATTN_PIPE_POINTS.join(', ')}` },
  heads: { flag: 'heads', env: 'GRETA_TRACE_ATTN_HEADS', type: 'string', def: 'all', help: 'attention heads recorded of scores, probs and pv: all, or a list like 0,5 or 0-3' },
  phases: { flag: 'phases', env: 'GRETA_TRACE_STAGE_PHASES', type: 'string', def: DEFAULT_PHASES.join(','), help: 'phases to trace: prefill_last, decode0, decode1, ...' },
  oracle: { flag: 'oracle', env: 'GRETA_TRACE_ORACLE', type: 'string', help: 'also trace the same phases on this backend as a third opinion: cpu-fp64' },
  oracleTol: { flag: 'oracle-tol', env: 'GRETA_TRACE_ORACLE_TOL', type: 'string', def: '1e-4', help: 'relative L2 to the oracle beyond which a phase has departed from it' },
  kvCheck: { flag: 'kv-check', env: 'GRETA_TRACE_KV_CHECK', type: 'boolean', def: '0', help: "after decode0, compare every layer's K/V cache rows with those a prefill over the same tokens wrote" },
  postWo: { flag: 'post-wo', env: 'GRETA_TRACE_POST_WO', type: 'boolean', def: '0', help: `shorthand for --points ${POST_WO_POINTS.join(',')} (the points after WO)` },
  debugInput: { flag: 'debug-input', env: 'GRETA_TRACE_STAGE_DEBUG_INPUT', type: 'boolean', def: '0', help: 'also record token id, positions and embedding-row hash per phase' },
  topk: { flag: 'topk', env: 'GRETA_TRACE_TOPK', type: 'string', def: '5', help: 'top-k ids and values recorded with logits' },
  fault: { flag: 'fault', env: 'GRETA_FAULT', type: 'string', help: `plant a known defect in decode calls: NAME or NAME@LAYER (${FAULT_NAMES.join(', ')}; npm run selftest -- --list)` },
  json: { flag: 'json', type: 'boolean', def: '0', help: 'print the analysis as JSON instead of a table' },
} as const satisfies Record<string, OptionSpec>;

export type OptionKey = keyof typeof TRACE_OPTIONS;

/** A directory holding config.json, or an existing .gguf file. */
function isModelPath(m: string): boolean {
  if (!existsSync(m)) return false;
  const st = statSync(m);
  return st.isDirectory() ? existsSync(join(m, 'config.json')) : st.isFile() && m.endsWith('.gguf');
}

const nonEmptyList = (what: string, allowedText: string, check: (x: string) => string | undefined) =>
  z.string().transform((s, ctx) => {
    const l = splitList(s, allowedText);
    if ('error' in l) {
      ctx.addIssue({ code: 'custom', message: l.error });
      return z.NEVER;
    }
    const items = l.items;
    if (items.length === 0) {
      ctx.addIssue({ code: 'custom', message: `empty ${what} list (${allowedText})` });
      return z.NEVER;
    }
    for (const x of items) {
      const err = check(x);
      if (err) {
        ctx.addIssue({ code: 'custom', message: err });
        return z.NEVER;
      }
    }
    return [...new Set(items)];
  });

/** --model: a built-in model, a Hugging Face Llama directory or a .gguf file. */
export const modelChoice = z.string().refine((m) => MODEL_NAMES.includes(m) || isModelPath(m), {
  error: (iss) =>
    `unknown model '${String(iss.input)}' (allowed: ${MODEL_NAMES.join(', ')}, a Hugging Face Llama directory, or a .gguf file)`,
});

/** --backend: auto or a backend kind. */
export const backendChoice = z
  .string()
  .refine((b) => b === 'auto' || (BACKEND_KINDS as readonly string[]).includes(b), {
    error: (iss) => `unknown backend '${String(iss.input)}' (${allowed(['auto', ...BACKEND_KINDS])})`,
  })
  .transform((b) => b as BackendKind | 'auto');

const intIn = (lo: number, hi: number) =>
  z.string().transform((s, ctx) => {
    const v = Number(s);
    if (!/^\s*\d+\s*$/.test(s) || v < lo || v > hi) {
      ctx.addIssue({ code: 'custom', message: `'${s}' is not an integer in [${lo}, ${hi}]` });
      return z.NEVER;
    }
    return v;
  });

/** Layer list syntax: "all", or integers and ranges "a-b"; checked against the model later. */
export type LayerSpec = 'all' | number[];

const LAYERS_ALLOWED = 'allowed: all, or e.g. 0,1,2,15,31 or 0-3,31';

const layerSpec = z.string().transform((s, ctx): LayerSpec => {
  if (s.trim() === 'all') return 'all';
  const parsed = splitList(s, LAYERS_ALLOWED);
  if ('error' in parsed) {
    ctx.addIssue({ code: 'custom', message: parsed.error });
    return z.NEVER;
  }
  const out: number[] = [];
  for (const item of parsed.items) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(item);
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `'${item}' is not a layer number or range (allowed: all, or e.g. 0,1,2,15,31 or 0-3)` });
      return z.NEVER;
    }
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) {
      ctx.addIssue({ code: 'custom', message: `layer range '${item}' runs backwards` });
      return z.NEVER;
    }
    for (let l = a; l <= b; l++) out.push(l);
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: `empty layer list (${LAYERS_ALLOWED})` });
    return z.NEVER;
  }
  return [...new Set(out)].sort((x, y) => x - y);
});

const faultSpec = z.string().transform((s, ctx): FaultSpec => {
  const r = parseFaultSpec(s);
  if (typeof r === 'string') {
    ctx.addIssue({ code: 'custom', message: r });
    return z.NEVER;
  }
  return r;
});

const resolvePoint = (x: string): Point | undefined =>
  (POINTS as readonly string[]).includes(x) ? (x as Point) : POINT_ALIASES[x];

export const TraceOptionsSchema = z.object({
  prompt: nonEmptyList('prompt', allowed(PROMPT_NAMES), (x) =>
    PROMPT_NAMES.includes(x) ? undefined : `unknown prompt '${x}' (${allowed(PROMPT_NAMES)})`,
  ),
  promptText: z.string().min(1, 'prompt text is empty').optional(),
  promptFile: z.string().min(1).optional(),
  exp: nonEmptyList('experiment', allowed(ExpSchema.options), (x) =>
    ExpSchema.safeParse(x).success ? undefined : `unknown experiment '${x}' (${allowed(ExpSchema.options)})`,
  ).transform((xs) => xs as ('E0' | 'E1')[]),
  model: modelChoice,
  backend: backendChoice,
  steps: intIn(1, 4096),
  out: z.string().min(1).optional(),
  layers: layerSpec,
  points: nonEmptyList('point', allowed([...POINTS, ...Object.keys(POINT_ALIASES)]), (x) =>
    resolvePoint(x) ? undefined : `unknown point '${x}' (${allowed([...POINTS, ...Object.keys(POINT_ALIASES)])})`,
  ).transform((xs) => [...new Set(xs.map((x) => resolvePoint(x)!))]),
  phases: nonEmptyList('phase', 'allowed: prefill_last, decode0, decode1, ...', (x) =>
    PHASE_RE.test(x) ? undefined : `unknown phase '${x}' (allowed: prefill_last, decode0, decode1, ...)`,
  ),
  attnPipe: boolFlag,
  oracle: z.enum(['cpu-fp64'], { error: (iss) => `unknown oracle '${String(iss.input)}' (allowed: cpu-fp64)` }).optional(),
  oracleTol: positiveNumber,
  kvCheck: boolFlag,
  heads: z.string().transform((s, ctx): 'all' | number[] => {
    if (s.trim() === 'all') return 'all';
    const r = layerSpec.safeParse(s);
    if (!r.success || r.data === 'all') {
      ctx.addIssue({ code: 'custom', message: `'${s}' is not a head list (allowed: all, or e.g. 0,5 or 0-3)` });
      return z.NEVER;
    }
    return r.data;
  }),
  postWo: boolFlag,
  debugInput: boolFlag,
  topk: intIn(1, 1000),
  fault: faultSpec.optional(),
  json: boolFlag,
});

export type TraceOptions = z.infer<typeof TraceOptionsSchema> & { backend: (typeof BACKEND_KINDS)[number] | 'auto' };

/** Trace options from flags, GRETA_TRACE_* variables and defaults. */
export function resolveTraceOptions(
  flags: Flags,
  env: NodeJS.ProcessEnv,
): TraceOptions {
  const pointsGiven = flags.points !== undefined || env.GRETA_TRACE_STAGE_POINTS !== undefined;
  const { opts, source } = resolveWith(TRACE_OPTIONS, TraceOptionsSchema, flags, env, (fromFlag) => {
    if (env.GRETA_TRACE_STAGE !== undefined && !['1', 'true', 'on', 'yes'].includes(env.GRETA_TRACE_STAGE.toLowerCase())) {
      throw new UsageError(
        `GRETA_TRACE_STAGE: '${env.GRETA_TRACE_STAGE}' would turn tracing off, but the trace command always traces (allowed: 1, or unset)`,
      );
    }
    if (fromFlag.promptText && fromFlag.promptFile) {
      throw new UsageError('--prompt-text and --prompt-file: give one of them, not both');
    }
    if (fromFlag.prompt && (fromFlag.promptText || fromFlag.promptFile)) {
      throw new UsageError('--prompt and --prompt-text/--prompt-file: give one of them, not both');
    }
  });
  const trace = opts as TraceOptions;
  if (trace.postWo) {
    if (pointsGiven) {
      throw new UsageError(`${source('postWo')}: selects the points itself; give it or --points/GRETA_TRACE_STAGE_POINTS, not both`);
    }
    trace.points = [...POST_WO_POINTS];
  }
  if (trace.attnPipe) trace.points = inForwardOrder([...trace.points, ...ATTN_PIPE_POINTS]);
  return trace;
}

export const SELFTEST_OPTIONS = {
  faults: { flag: 'faults', type: 'string', def: 'all', help: `faults to plant: all, or a list of ${FAULT_NAMES.join(', ')}` },
  faultLayers: { flag: 'fault-layers', type: 'string', def: 'default', help: 'layers to plant each layered fault at: default (first, middle, last), or a list like 0,15,31' },
  prompt: TRACE_OPTIONS.prompt,
  model: TRACE_OPTIONS.model,
  backend: TRACE_OPTIONS.backend,
  points: { flag: 'points', type: 'string', def: POINTS.join(','), help: 'points traced (default every point, sub-stages included: each fault is expected at the finest)' },
  out: { flag: 'out', type: 'string', help: 'keep the selftest trace at this JSONL path (default: a temporary file, kept only when a case fails)' },
  list: { flag: 'list', type: 'boolean', def: '0', help: 'list the faults with what each plants and where it must be found, and exit' },
  json: TRACE_OPTIONS.json,
} as const satisfies Record<string, OptionSpec>;

export const SelftestOptionsSchema = z.object({
  faults: z.string().transform((s, ctx): FaultName[] => {
    if (s.trim() === 'all') return [...FAULT_NAMES];
    const l = splitList(s, `allowed: all, ${FAULT_NAMES.join(', ')}`);
    if ('error' in l) {
      ctx.addIssue({ code: 'custom', message: l.error });
      return z.NEVER;
    }
    const items = l.items;
    const bad = items.find((x) => !(FAULT_NAMES as string[]).includes(x));
    if (items.length === 0 || bad !== undefined) {
      ctx.addIssue({ code: 'custom', message: `${bad === undefined ? 'empty fault list' : `unknown fault '${bad}'`} (allowed: all, ${FAULT_NAMES.join(', ')})` });
      return z.NEVER;
    }
    return [...new Set(items)] as FaultName[];
  }),
  faultLayers: z.string().transform((s, ctx): LayerSpec | 'default' => {
    if (s.trim() === 'default') return 'default';
    const items = splitList(s, 'allowed: default, or e.g. 0,15,31');
    if ('error' in items) {
      ctx.addIssue({ code: 'custom', message: items.error });
      return z.NEVER;
    }
    const r = layerSpec.safeParse(s);
    if (!r.success || r.data === 'all') {
      ctx.addIssue({ code: 'custom', message: r.success ? `'all' is not allowed here (allowed: default, or e.g. 0,15,31)` : r.error.issues[0]!.message });
      return z.NEVER;
    }
    return r.data;
  }),
  prompt: TraceOptionsSchema.shape.prompt,
  points: TraceOptionsSchema.shape.points,
  model: TraceOptionsSchema.shape.model,
  backend: TraceOptionsSchema.shape.backend,
  out: z.string().min(1).optional(),
  list: boolFlag,
  json: boolFlag,
});

export type SelftestOptions = z.infer<typeof SelftestOptionsSchema> & { backend: (typeof BACKEND_KINDS)[number] | 'auto' };

/** Selftest options: flags, GRETA_MODEL / GRETA_BACKEND as in trace, defaults. */
export function resolveSelftestOptions(
  flags: Flags,
  env: NodeJS.ProcessEnv,
): SelftestOptions {
  return resolveWith(SELFTEST_OPTIONS, SelftestOptionsSchema, flags, env).opts as SelftestOptions;
}
