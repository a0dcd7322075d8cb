// Reads trace JSONL files (and their sidecar rows) into runs. Every line is
// validated against the schema; a bad line is an error naming file and line.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import {
  fromJsonNumber,
  TraceRecordSchema,
  type EndRecord,
  type HeaderRecord,
  type InputRecord,
  type KvCheckRecord,
  type StageRecord,
} from '../trace/schema.js';

export interface TraceRun {
  header: HeaderRecord;
  file: string;
  stages: StageRecord[];
  inputs: InputRecord[];
  kvChecks: KvCheckRecord[];
  end?: EndRecord;
}

export function loadTraceFile(path: string): TraceRun[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read trace '${path}' (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  const runs = new Map<string, TraceRun>();
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new UsageError(`${path}:${i + 1}: not a JSON line`);
    }
    const parsed = TraceRecordSchema.safeParse(json);
    if (!parsed.success) {
      const iss = parsed.error.issues[0]!;
      throw new UsageError(`${path}:${i + 1}: not a trace record (${iss.path.join('.') || 'record'}: ${iss.message})`);
    }
    const rec = parsed.data;
    if (rec.type === 'header') {
      if (runs.has(rec.run_id)) throw new UsageError(`${path}:${i + 1}: second header for run ${rec.run_id}`);
      runs.set(rec.run_id, { header: rec, file: path, stages: [], inputs: [], kvChecks: [] });
      return;
    }
    const run = runs.get(rec.run_id);
    if (!run) throw new UsageError(`${path}:${i + 1}: record of run ${rec.run_id} before its header`);
    if (rec.type === 'stage') run.stages.push(rec);
    else if (rec.type === 'input') run.inputs.push(rec);
    else if (rec.type === 'kv_check') run.kvChecks.push(rec);
    else run.end = rec;
  });
  return [...runs.values()];
}

/** The full row of a stage record, from the sidecar next to the JSONL file. */
export function readRow(run: TraceRun, rec: StageRecord): Float64Array {
  const path = join(dirname(run.file), rec.row.file);
  const width = rec.shape.reduce((a, b) => a * b, 1);
  const elem = rec.dtype === 'f64' ? 8 : 4;
  if (rec.row.bytes !== width * elem) {
    throw new UsageError(`${path}: row of ${rec.point} has ${rec.row.bytes} bytes, expected ${width * elem}`);
  }
  const buf = Buffer.alloc(rec.row.bytes);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new UsageError(`cannot read trace rows '${path}' (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  try {
    const got = readSync(fd, buf, 0, buf.length, rec.row.offset);
    if (got !== buf.length) throw new UsageError(`${path}: row of ${rec.point} at offset ${rec.row.offset} is cut short`);
  } finally {
    closeSync(fd);
  }
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  const row = Float64Array.from(rec.dtype === 'f64' ? new Float64Array(ab) : new Float32Array(ab));
  // The sample in the record must match the row: catches a sidecar from another run.
  rec.sample.indices.forEach((idx, j) => {
    const want = fromJsonNumber(rec.sample.values[j]!);
    const have = row[idx]!;
    const same = want === have || (Number.isNaN(want) && Number.isNaN(have));
    if (!same) throw new UsageError(`${path}: row of ${rec.phase} ${rec.point} does not match its record's sample`);
  });
  return row;
}
