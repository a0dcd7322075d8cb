// The JSON Schema of one trace line, generated from the zod schema in schema.ts so that the two
// cannot drift apart: `npm run schema` writes docs/trace-format.schema.json, and
// test/trace-schema.test.ts fails when the checked-in file differs from what this generates.
// Structure and constraints come from zod; the description of every top-level field of every
// record comes from the table below (generation fails on a field without one), so a field added
// to the format is also documented. docs/trace-format.md is the full specification.
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { TRACE_FORMAT_VERSION, TraceRecordSchema } from './schema.js';

const POSITION: Record<string, string> = {
  run_id: 'The run this record belongs to: the run_id of a header earlier in the file.',
  prompt: 'Prompt name (header.prompts[].name).',
  exp: 'Experiment: E1 (aligned: decode0 replays token N-1 at position N-1 on the cache of a prefill over tokens 0..N-2) or E0 (natural: decode0 feeds prefill\'s top-1 at position N).',
  phase: 'prefill_last (row N-1 of a prefill over the whole prompt) or decodeK (the K-th single-token decode call).',
  token_id: 'Token id of the traced row.',
  token_index: 'Row of the traced token within its forward call (N-1 for prefill_last, 0 for a decode call).',
  pos_id: 'Position of the traced token in the sequence (RoPE position, KV cache row).',
  seq_len: 'Keys the traced row attends to: pos_id + 1.',
};

const DESCRIPTIONS: Record<string, Record<string, string>> = {
  header: {
    type: 'Record type.',
    format: `Trace format version (${TRACE_FORMAT_VERSION}).`,
    run_id: 'Identifies the run; every later record of the run carries it. Unique within a file.',
    created_at: 'ISO 8601 UTC time the run started.',
    tool: 'The program that wrote the trace: name and version.',
    model: 'Model name, weight dtype (bf16, f16, f32, ...) and, for synthetic models, the weight seed.',
    config: 'The model configuration with Hugging Face config.json names; num_hidden_layers is required by the analyzer to order final points after the last layer.',
    backend: 'What computed the activations (cpu, cpu-fp64, hip, transformers, ...).',
    device: 'The device, in words.',
    git_commit: 'Commit of the writing program, or null.',
    options: 'The resolved options of the run (exp, layers, points, phases, ...). options.oracle_for names the run_id of the run this one is a reference for; options.fault names a planted fault.',
    prompts: 'The prompts traced: name, number of tokens, token ids.',
  },
  stage: {
    type: 'Record type.',
    ...POSITION,
    layer: 'Decoder layer, or null for the final points (final_norm, lm_head_in, logits).',
    point: 'Trace point (docs/trace-format.md lists them in forward order).',
    head: 'Attention head of the per-head points scores, probs and pv; absent otherwise.',
    shape: 'Shape of the recorded row: [1, width].',
    dtype: 'Element type of the row in the sidecar: f32, or f64.',
    stats: 'mean, abs_mean, rms, min, max over the finite elements (0 when none), computed in float64; nan and inf count the non-finite elements. Informational: summation order may differ between writers.',
    hash: '16 lowercase hex digits: sum over i of mix64(bits_i + mix64(i)) mod 2^64, bits_i the IEEE bit pattern of element i (f32 zero-extended to 64 bits).',
    sample: 'The values at 16 evenly spaced indices floor(i * width / 16) (every index when width <= 16); NaN and infinities as strings.',
    topk: 'logits only: the k largest values and their ids, largest first, ties by lower id, NaN below every number.',
    row: 'Where the full row is: file (the sidecar, relative to the JSONL file\'s directory), byte offset and byte length (width * 4 for f32, * 8 for f64), raw little-endian.',
  },
  input: {
    type: 'Record type.',
    ...POSITION,
    embedding_hash: 'Row hash of the embedding row of the traced token (the input of layer 0).',
  },
  kv_check: {
    type: 'Record type.',
    run_id: POSITION.run_id!,
    prompt: POSITION.prompt!,
    exp: POSITION.exp!,
    phase: 'The decode phase after which the cache was checked.',
    positions: 'Cache positions compared (0..positions-1).',
    layers: 'Layers compared.',
    kv_heads: 'KV heads per layer.',
    equal: 'Every compared K and V row equals the prefill\'s, bit for bit.',
    first: 'The first differing (layer, position, kv head, k before v) row with its mean and max absolute error, or null.',
    differing: 'How many (layer, position, kv head, k/v) rows differ.',
    layers_differing: 'Layers with a differing row.',
  },
  end: {
    type: 'Record type.',
    run_id: 'The run that ended; a run without an end record was interrupted.',
    status: 'ok.',
    elapsed_ms: 'Wall time of the run, in milliseconds.',
    results: 'Per prompt and experiment: n_tokens, prefill_last_top1, decode_top1 (one per decode step), generated_text, prefill_ms, decode_ms.',
  },
};

type JsonObject = { [k: string]: unknown };

/** The JSON Schema (draft 2020-12) that every line of a trace file satisfies. */
export function traceJsonSchema(): JsonObject {
  // io 'input': what a reader accepts; like the zod schema it leaves unknown fields allowed.
  const schema = z.toJSONSchema(TraceRecordSchema, { io: 'input', target: 'draft-2020-12' }) as JsonObject;
  const branches = schema.oneOf as JsonObject[];
  for (const b of branches) {
    const props = b.properties as Record<string, JsonObject>;
    const type = (props.type as { const: string }).const;
    const desc = DESCRIPTIONS[type];
    if (!desc) throw new Error(`trace JSON Schema: record type '${type}' has no descriptions`);
    for (const [name, p] of Object.entries(props)) {
      const d = desc[name];
      if (!d) throw new Error(`trace JSON Schema: field '${type}.${name}' has no description in src/trace/jsonschema.ts`);
      p.description = d;
    }
    b.title = type;
  }
  return {
    $schema: schema.$schema,
    $id: 'gretacore-trace-line.schema.json',
    title: `gretacore trace line (format ${TRACE_FORMAT_VERSION})`,
    description:
      'One line of a gretacore trace file (JSONL); the full rows are in the sidecar file each stage record names. Specification: docs/trace-format.md.',
    ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== '$schema')),
  };
}

/** The checked-in file's text: two-space JSON and a final newline. */
export function traceJsonSchemaText(): string {
  return JSON.stringify(traceJsonSchema(), null, 2) + '\n';
}

/** docs/trace-format.schema.json of this checkout (from src/trace or dist/trace). */
export const SCHEMA_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'trace-format.schema.json');

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const out = process.argv[2] ?? SCHEMA_PATH;
  writeFileSync(out, traceJsonSchemaText());
  console.log(`wrote ${join(out)}`);
}
