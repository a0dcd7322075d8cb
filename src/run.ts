// The trace run: validate everything, build the model, then for each prompt
// and experiment run prefill and decode with the StageTracer attached.
//
// E1 (aligned): prefill_last is row N-1 of a prefill over all N prompt
// tokens; decode0 replays token N-1 at position N-1 on a KV cache built by a
// prefill over the first N-1. A correct engine gives identical bits.
// E0 (natural): decode0 feeds prefill's top-1 at position N.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from './errors.js';
import { Engine } from './model/engine.js';
import { openModel, type ModelSource } from './model/source.js';
import { checkFault, faultLabel, plantFault } from './faults.js';
import { peakRssBytes } from './rss.js';
import { availableBackends, createBackend, packageRoot, trimHostHeap, resolveBackendKind, type Backend, type BackendKind } from './native.js';
import type { TraceOptions } from './options.js';
import { checkKvCache } from './trace/kvcheck.js';
import { TRACE_FORMAT_VERSION, type KvCheck, type RunResult } from './trace/schema.js';
import { StageTracer } from './trace/tracer.js';
import { sidecarPath, TraceWriter } from './trace/writer.js';

export interface PromptInput {
  name: string;
  ids: number[];
}

export interface TracePlan {
  opts: TraceOptions;
  model: ModelSource;
  layers: number[];
  prompts: PromptInput[];
  out: string;
  runId: string;
}

function toolVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: packageRoot(), stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return null;
  }
}

export function newRunId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

/** Checks that `path` can be appended to, creating its directory; touches no file. */
function checkWritable(path: string, what: string): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new UsageError(`${what}: cannot write to directory '${dir}' (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  for (const p of [path, sidecarPath(path)]) {
    if (!existsSync(p)) continue;
    if (!statSync(p).isFile()) throw new UsageError(`${what}: '${p}' exists and is not a regular file`);
    try {
      accessSync(p, constants.W_OK);
    } catch {
      throw new UsageError(`${what}: '${p}' exists and is not writable`);
    }
  }
}

/** Weights, the two KV caches an E1 run holds, and one call's activations, in bytes. */
export function runBytes(model: ModelSource, tokens: number, actBytes: number): number {
  const c = model.config;
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const caches = 2 * 2 * c.num_hidden_layers * tokens * kv * actBytes;
  const acts = tokens * (4 * c.hidden_size + 2 * q + 2 * kv + 2 * c.intermediate_size) * actBytes + c.vocab_size * actBytes;
  return model.weightBytes + caches + acts;
}

/** A load progress bar on stderr when it is a terminal. */
function progressBar(enabled: boolean): ((done: number, total: number) => void) | undefined {
  if (!enabled || !process.stderr.isTTY) return undefined;
  let last = -1;
  return (done, total) => {
    const pct = Math.floor((100 * done) / Math.max(total, 1));
    if (pct === last) return;
    last = pct;
    const width = 30;
    const fill = Math.round((width * pct) / 100);
    process.stderr.write(`\rloading [${'#'.repeat(fill)}${' '.repeat(width - fill)}] ${pct}% ${(done / 1e9).toFixed(2)}/${(total / 1e9).toFixed(2)} GB`);
    if (done >= total) process.stderr.write('\n');
  };
}

/** Resolves and validates everything a run needs before any output is created. */
export function planTrace(opts: TraceOptions): TracePlan {
  // Checks the backend before reading any model file.
  if (opts.backend === 'hip' && !availableBackends().includes('hip')) {
    throw new UsageError(`--backend: 'hip' is not in this build (this build has: ${availableBackends().join(', ')}; build it with npm run build:hip)`);
  }
  const model = openModel(opts.model);
  if (!model) throw new UsageError(`--model: '${opts.model}' is neither a built-in model, a model directory nor a .gguf file`);
  const nLayers = model.config.num_hidden_layers;
  let layers: number[];
  if (opts.layers === 'all') {
    layers = Array.from({ length: nLayers }, (_, i) => i);
  } else {
    const bad = opts.layers.find((l) => l >= nLayers);
    if (bad !== undefined) {
      throw new UsageError(`--layers: layer ${bad} is out of range for ${model.name} (allowed: 0-${nLayers - 1})`);
    }
    layers = opts.layers;
  }

  let prompts: PromptInput[];
  if (opts.promptText !== undefined || opts.promptFile !== undefined) {
    let text: string;
    let name: string;
    if (opts.promptFile !== undefined) {
      try {
        text = readFileSync(opts.promptFile, 'utf8');
      } catch (e) {
        throw new UsageError(`--prompt-file: cannot read '${opts.promptFile}' (${(e as NodeJS.ErrnoException).code ?? e})`);
      }
      if (text.trim().length === 0) throw new UsageError(`--prompt-file: '${opts.promptFile}' is empty`);
      name = basename(opts.promptFile).replace(/\.[^.]*$/, '') || 'file';
    } else {
      text = opts.promptText!;
      name = 'text';
    }
    prompts = [{ name, ids: model.tokenizer.text(text) }];
  } else {
    prompts = opts.prompt.map((name) => ({ name, ids: model.tokenizer.prompt(name) }));
  }
  for (const p of prompts) {
    if (p.ids.length < 2) {
      throw new UsageError(`prompt '${p.name}': ${p.ids.length} token(s); E1 needs at least 2 (BOS and one more)`);
    }
    const need = p.ids.length + opts.steps;
    if (need > model.config.max_position_embeddings) {
      throw new UsageError(
        `prompt '${p.name}': ${p.ids.length} tokens + ${opts.steps} steps exceed ${model.name}'s ${model.config.max_position_embeddings} positions`,
      );
    }
  }

  const lastDecode = Math.max(-1, ...opts.phases.filter((ph) => ph.startsWith('decode')).map((ph) => Number(ph.slice(6))));
  if (lastDecode >= opts.steps) {
    throw new UsageError(`--phases: decode${lastDecode} needs --steps ${lastDecode + 1} or more (got --steps ${opts.steps})`);
  }

  if (opts.fault) checkFault(opts.fault, { cfg: model.config }, model.name);
  const nHeads = model.config.num_attention_heads;
  const badHead = opts.heads === 'all' ? undefined : opts.heads.find((h) => h >= nHeads);
  if (badHead !== undefined) {
    throw new UsageError(`--heads: head ${badHead} is out of range for ${model.name} (allowed: 0-${nHeads - 1})`);
  }

  const runId = newRunId();
  const day = new Date().toISOString().slice(0, 10);
  const out = resolve(opts.out ?? join('artifacts', 'alignment', day, `trace_${runId}.jsonl`));
  checkWritable(out, opts.out !== undefined ? '--out' : 'output');
  return { opts, model, layers, prompts, out, runId };
}

export interface TraceRunOutput {
  /** The JSONL file written (rows beside it in `.rows.bin`). */
  out: string;
  runId: string;
  /** Top-1s, generated text and timings of each prompt and experiment. */
  results: RunResult[];
}


/** A model loaded on a backend, shared by every run of a process; close() frees its device memory. */
export interface Session {
  backend: Backend;
  model: ModelSource;
  engine: Engine;
  /** Seconds from backend creation to weights on the device. */
  loadS: number;
  close(): void;
}

/** Creates the backend, checks its free memory for `maxTokens` and loads the weights. */
export function openSession(model: ModelSource, kind: BackendKind | 'auto', maxTokens: number, log: (line: string) => void = () => {}): Session {
  const t0 = performance.now();
  const backend = createBackend(resolveBackendKind(kind));
  const need = runBytes(model, maxTokens, backend.actDtype === 'f64' ? 8 : 4);
  const mem = backend.memInfo();
  if (need > mem.free) {
    const gib = (b: number) => (b / 2 ** 30).toFixed(1) + ' GiB';
    throw Object.assign(
      new Error(`${model.name} on ${backend.name} needs about ${gib(need)}; ${gib(mem.free)} of ${gib(mem.total)} is free on ${backend.device}`),
      { code: 'ENOMEM' },
    );
  }
  const weights = model.load(backend, progressBar(model.kind !== 'synthetic'));
  const engine = new Engine(backend, model.config, weights, model.invFreq);
  const loadS = (performance.now() - t0) / 1e3;
  log(
    `model ${model.name} (${model.kind}, ${model.weightDtype}, ${(model.weightBytes / 1e9).toFixed(2)} GB) ` +
      `on ${backend.name} (${backend.device}) loaded in ${loadS.toFixed(2)} s` +
      (model.kind === 'synthetic' ? '' : ` (${(model.weightBytes / 1e9 / Math.max(loadS, 1e-9)).toFixed(2)} GB/s)`) +
      // Host memory high-water mark: on a GPU, proof that loading never held the model in RAM.
      `, peak RSS ${(peakRssBytes() / 1e9).toFixed(2)} GB`,
  );
  let closed = false;
  return {
    backend,
    model,
    engine,
    loadS,
    close() {
      if (closed) return;
      closed = true;
      engine.fault = undefined;
      engine.close();
      engine.invFreq.free();
      const w = weights;
      for (const t of [w.embed, w.finalNorm, w.lmHead, ...w.layers.flatMap((l) => Object.values(l))]) t.free();
      trimHostHeap();
    },
  };
}

/** What one run traces: its id, options (fault included), layers and prompts. */
export interface RunSpec {
  runId: string;
  /** The run this one is the oracle of (--oracle). */
  oracleFor?: string;
  opts: TraceOptions;
  layers: number[];
  prompts: PromptInput[];
  out: string;
}

/**
 * Traces one run into `writer`: header, stage records of every prompt and
 * experiment, end record. A fault in opts is planted for the run and removed after.
 */
export function traceRun(session: Session, writer: TraceWriter, spec: RunSpec, log: (line: string) => void = () => {}): RunResult[] {
  const { backend, model, engine } = session;
  const { opts, prompts } = spec;
  const t0 = performance.now();
  writer.write({
    type: 'header',
    format: TRACE_FORMAT_VERSION,
    run_id: spec.runId,
    created_at: new Date().toISOString(),
    tool: { name: 'gretacore', version: toolVersion() },
    model: {
      name: model.name,
      weight_dtype: model.weightDtype,
      ...(model.seed !== undefined ? { seed: '0x' + model.seed.toString(16) } : {}),
    },
    config: model.config as Record<string, unknown>,
    backend: backend.name,
    device: backend.device,
    git_commit: gitCommit(),
    options: {
      ...opts,
      layers: spec.layers,
      out: spec.out,
      fault: opts.fault ? faultLabel(opts.fault) : undefined,
      ...(spec.oracleFor ? { oracle_for: spec.oracleFor } : {}),
    },
    prompts: prompts.map((p) => ({ name: p.name, n_tokens: p.ids.length, ids: p.ids })),
  });
  const tracer = new StageTracer(backend, writer, spec.runId, {
    layers: new Set(spec.layers),
    points: new Set(opts.points),
    phases: new Set(opts.phases),
    debugInput: opts.debugInput,
    topk: opts.topk,
    heads: opts.heads === 'all' ? null : opts.heads,
  });
  const planted = opts.fault ? plantFault(engine, opts.fault) : undefined;
  const results: RunResult[] = [];
  try {
    for (const p of prompts) {
      for (const exp of opts.exp) {
        const kvCheck = opts.kvCheck
          ? (c: KvCheck) => writer.write({ type: 'kv_check', run_id: spec.runId, prompt: p.name, exp, phase: 'decode0', ...c })
          : undefined;
        const r = runExperiment(engine, tracer, p, exp, opts.steps, (ids) => model.tokenizer.decode(ids), kvCheck);
        results.push(r);
        log(
          `${p.name} ${exp}: ${p.ids.length} tokens, prefill ${r.prefill_ms.toFixed(1)} ms, ` +
            `decode ${r.decode_ms.map((d) => d.toFixed(1)).join('/')} ms, top-1 ${r.prefill_last_top1} -> ${r.decode_top1[0]}`,
        );
      }
    }
  } catch (e) {
    // What was traced before the failure is still written; a failure to write it does not hide the first.
    try {
      tracer.close();
    } catch {}
    throw e;
  } finally {
    planted?.release();
  }
  tracer.close();
  writer.write({ type: 'end', run_id: spec.runId, status: 'ok', elapsed_ms: performance.now() - t0, results });
  return results;
}

/** Runs the plan, writing header, stage records and an end record to plan.out. */
export function runTrace(plan: TracePlan, log: (line: string) => void = () => {}): TraceRunOutput {
  // E0's KV check prefills the decode token too.
  const maxTokens = Math.max(...plan.prompts.map((p) => p.ids.length)) + plan.opts.steps + 1;
  // The backend and model first: when no GPU answers, its error is the only line and no file is made.
  const session = openSession(plan.model, plan.opts.backend, maxTokens, log);
  let writer: TraceWriter | undefined;
  try {
    log(`run ${plan.runId}: ${plan.prompts.map((p) => `${p.name} (${p.ids.length} tokens)`).join(', ')} x ${plan.opts.exp.join(',')}`);
    writer = new TraceWriter(plan.out);
    const results = traceRun(session, writer, plan, log);
    session.close();
    if (plan.opts.oracle) {
      // The third opinion: the same phases and points on the oracle backend, same weights, no fault.
      const oracle = openSession(plan.model, plan.opts.oracle, maxTokens, (l) => log(`oracle: ${l}`));
      try {
        const opts = { ...plan.opts, fault: undefined, oracle: undefined, kvCheck: false, backend: plan.opts.oracle };
        traceRun(oracle, writer, { ...plan, runId: `${plan.runId}-${plan.opts.oracle}`, oracleFor: plan.runId, opts }, (l) => log(`oracle: ${l}`));
      } finally {
        oracle.close();
      }
    }
    return { out: plan.out, runId: plan.runId, results };
  } finally {
    session.close();
    writer?.close();
  }
}

function runExperiment(
  engine: Engine,
  tracer: StageTracer,
  p: PromptInput,
  exp: 'E0' | 'E1',
  steps: number,
  detokenize: (ids: readonly number[]) => string,
  kvCheck?: (c: KvCheck) => void,
): RunResult {
  const n = p.ids.length;
  const capacity = n + steps;
  const time = <T>(f: () => T): [T, number] => {
    const s = performance.now();
    const r = f();
    return [r, performance.now() - s];
  };

  // prefill_last: the last row of a prefill over the whole prompt.
  const full = engine.newCache(capacity);
  const [pre, prefillMs] = time(() => engine.forward(p.ids, 0, full, tracer.phase(p.name, exp, 'prefill_last')));

  let cache = full;
  let token: number;
  let pos: number;
  if (exp === 'E1') {
    cache = engine.newCache(capacity);
    engine.forward(p.ids.slice(0, n - 1), 0, cache);
    token = p.ids[n - 1]!;
    pos = n - 1;
  } else {
    token = pre.top1;
    pos = n;
  }

  const decodeTop1: number[] = [];
  const decodeMs: number[] = [];
  for (let k = 0; k < steps; k++) {
    const [r, ms] = time(() => engine.forward([token], pos, cache, tracer.phase(p.name, exp, `decode${k}`)));
    if (k === 0 && kvCheck) {
      // The rows a prefill over the same tokens writes: E1's full prefill, or for E0 one that includes the decode token.
      let ref = full;
      if (exp === 'E0') {
        ref = engine.newCache(capacity);
        engine.forward([...p.ids, token], 0, ref).logits.free();
      }
      kvCheck(checkKvCache(engine.backend, engine.cfg, cache, ref, pos + 1));
      if (ref !== full) engine.freeCache(ref);
    }
    decodeTop1.push(r.top1);
    decodeMs.push(ms);
    r.logits.free();
    token = r.top1;
    pos++;
  }
  pre.logits.free();
  engine.freeCache(full);
  if (cache !== full) engine.freeCache(cache);

  // E1's decode0 predicts the same next token as prefill; E0's continues after it.
  const generated = exp === 'E1' ? decodeTop1 : [pre.top1, ...decodeTop1];
  return {
    prompt: p.name,
    exp,
    n_tokens: n,
    prefill_last_top1: pre.top1,
    decode_top1: decodeTop1,
    generated_text: detokenize(generated),
    prefill_ms: prefillMs,
    decode_ms: decodeMs,
  };
}
