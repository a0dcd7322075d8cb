// Reads trace JSONL files into an index of records per run, line by line: the
// file is never held whole, and rows stay in the sidecar until a comparison
// asks for one (one descriptor per sidecar, kept open while it is used).
// Every line is validated against the schema; a bad line is an error naming
// file and line, except the file's last line when a killed writer cut it
// short: that marks its run as not finished instead.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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
  /** Line number of the header: runs of a file are listed in this order. */
  headerLine: number;
  stages: StageRecord[];
  inputs: InputRecord[];
  /** KV cache verdicts (--kv-check). */
  kvChecks: KvCheckRecord[];
  end?: EndRecord;
  /** Line number of the file's last line when it was cut short mid-write and belongs to this run. */
  cutLine?: number;
  /** The sidecars of this run's file; rows are read from them on demand. */
  rows: RowFiles;
}

export interface TraceFile extends TraceFileInfo {
  runs: TraceRun[];
}

/** The attention head of a per-head record (scores, probs, pv), or null for a whole row. */
export function headOf(r: StageRecord): number | null {
  return r.head ?? null;
}

/**
 * The lines of a file, read in chunks: each with its 1-based number and
 * whether it ended with a newline (a last line without one may be cut short).
 */
export function* readLines(path: string, chunkBytes = 1 << 20): Generator<{ text: string; n: number; newline: boolean }> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new UsageError(`cannot read trace '${path}' (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    // Bytes of a line that spans chunks; decoded once whole, so a character split between chunks survives.
    let pending: Buffer[] = [];
    let n = 0;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        throw new UsageError(`cannot read trace '${path}' (${(e as NodeJS.ErrnoException).code ?? e})`);
      }
      if (got === 0) break;
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(10, start);
        if (nl < 0 || nl >= got) {
          if (start < got) pending.push(Buffer.from(buf.subarray(start, got)));
          break;
        }
        const piece = buf.subarray(start, nl);
        const text = pending.length ? Buffer.concat([...pending, piece]).toString('utf8') : piece.toString('utf8');
        pending = [];
        yield { text, n: ++n, newline: true };
        start = nl + 1;
      }
    }
    if (pending.length) yield { text: Buffer.concat(pending).toString('utf8'), n: ++n, newline: false };
  } finally {
    closeSync(fd);
  }
}

/** The run id a fragment of a record names, if it got that far. */
function runIdOfFragment(text: string): string | undefined {
  const m = /"run_id":"((?:[^"\\]|\\.)*)"/.exec(text);
  if (!m) return undefined;
  try {
    return JSON.parse(`"${m[1]}"`) as string;
  } catch {
    return undefined;
  }
}

function stageKey(r: StageRecord): string {
  return `${r.prompt}\u0000${r.exp}\u0000${r.phase}\u0000${r.layer ?? 'final'}\u0000${r.point}\u0000${headOf(r) ?? ''}`;
}

export interface TraceFileInfo {
  path: string;
  /** Size of the JSONL file and the number of lines read. */
  bytes: number;
  lines: number;
  /** A last line cut short that belongs to no run read (a header cut short): its line number. */
  orphanCutLine?: number;
  /** Every run of the file, kept or not, in header order. */
  runIds: string[];
}

/**
 * Streams one trace file: each run is handed to `onRun` as soon as its end
 * record is read, then forgotten, so memory holds the index of the runs still
 * open, not of the file; runs without an end record follow at the end of the file.
 */
export function streamTraceFile(
  path: string,
  onRun: (run: TraceRun) => void,
  keep: (header: HeaderRecord) => boolean = () => true,
): TraceFileInfo {
  // Runs not kept are still validated line by line; their records are not stored.
  const skipped = new Set<string>();
  const runIds: string[] = [];
  const runs = new Map<string, TraceRun>();
  const keys = new Map<string, Map<string, number>>();
  const ended = new Set<string>();
  const rows = new RowFiles(dirname(path));
  let bytes = 0;
  try {
    const fd = openSync(path, 'r');
    bytes = fstatSync(fd).size;
    closeSync(fd);
  } catch {
    // readLines names the file
  }
  let lastRunId: string | undefined;
  let lines = 0;
  let orphanCutLine: number | undefined;
  for (const { text, n, newline } of readLines(path)) {
    lines = n;
    if (text.trim() === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      if (!newline) {
        // The writer puts each line down in one write; only a kill mid-write leaves a
        // last line without its newline. Its run did not finish: say so, don't abort.
        const id = runIdOfFragment(text) ?? lastRunId;
        const run = id === undefined ? undefined : runs.get(id);
        if (run) run.cutLine = n;
        else orphanCutLine = n;
        continue;
      }
      throw new UsageError(`${path}:${n}: not a JSON line`);
    }
    const parsed = TraceRecordSchema.safeParse(json);
    if (!parsed.success) {
      const iss = parsed.error.issues[0]!;
      throw new UsageError(`${path}:${n}: not a trace record (${iss.path.join('.') || 'record'}: ${iss.message})`);
    }
    const rec = parsed.data;
    lastRunId = rec.run_id;
    if (ended.has(rec.run_id)) throw new UsageError(`${path}:${n}: record of run ${rec.run_id} after its end record`);
    if (rec.type === 'header') {
      if (runs.has(rec.run_id)) throw new UsageError(`${path}:${n}: second header for run ${rec.run_id}`);
      runs.set(rec.run_id, { header: rec, file: path, headerLine: n, stages: [], inputs: [], kvChecks: [], rows });
      runIds.push(rec.run_id);
      if (!keep(rec)) skipped.add(rec.run_id);
      keys.set(rec.run_id, new Map());
      continue;
    }
    const run = runs.get(rec.run_id);
    if (!run) throw new UsageError(`${path}:${n}: record of run ${rec.run_id} before its header`);
    if (rec.type === 'stage') {
      if (basename(rec.row.file) !== rec.row.file) {
        throw new UsageError(`${path}:${n}: row file '${rec.row.file}' is not a file name beside the trace`);
      }
      const k = stageKey(rec);
      const seen = keys.get(rec.run_id)!;
      const first = seen.get(k);
      if (first !== undefined) {
        const where = `${rec.prompt} ${rec.exp} ${rec.phase} ${rec.layer === null ? '' : `layer ${rec.layer} `}${rec.point}`;
        throw new UsageError(`${path}:${n}: second record of ${where}${headOf(rec) === null ? '' : ` head ${headOf(rec)}`} in run ${rec.run_id} (first at line ${first})`);
      }
      seen.set(k, n);
      if (!skipped.has(rec.run_id)) run.stages.push(rec);
    } else if (rec.type === 'input') {
      if (!skipped.has(rec.run_id)) run.inputs.push(rec);
    } else if (rec.type === 'kv_check') {
      if (!skipped.has(rec.run_id)) run.kvChecks.push(rec);
    } else {
      run.end = rec;
      runs.delete(rec.run_id);
      keys.delete(rec.run_id);
      ended.add(rec.run_id);
      if (!skipped.has(rec.run_id)) onRun(run);
    }
  }
  for (const run of runs.values()) if (!skipped.has(run.header.run_id)) onRun(run);
  return { path, bytes, lines, orphanCutLine, runIds };
}

/**
 * Reads one trace file: every run in it (those `keep` accepts), in the order
 * of their headers, with the index of its records.
 */
export function readTraceFile(path: string, keep?: (header: HeaderRecord) => boolean): TraceFile {
  const runs: TraceRun[] = [];
  const info = streamTraceFile(path, (r) => runs.push(r), keep);
  return { ...info, runs: runs.sort((x, y) => x.headerLine - y.headerLine) };
}

/** Every run of a trace file (see readTraceFile). */
export function loadTraceFile(path: string): TraceRun[] {
  return readTraceFile(path).runs;
}

/** Closes the sidecars of these runs; a later readRow opens them again. */
export function closeRuns(runs: Iterable<TraceRun>): void {
  for (const r of runs) r.rows.close();
}

// A backstop for callers that read rows and never close: descriptors go with the object.
const openRowFiles = new FinalizationRegistry<Map<string, number>>((fds) => {
  for (const fd of fds.values()) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
});

/** The sidecars of one JSONL file: each opened once, on first use, and read at record offsets. */
export class RowFiles {
  private readonly fds = new Map<string, number>();
  private scratch = new Uint8Array(0);
  /** Rows and bytes read so far, for --stats. */
  rowsRead = 0;
  bytesRead = 0;

  constructor(readonly dir: string) {
    openRowFiles.register(this, this.fds, this);
  }

  private fd(path: string): number {
    let fd = this.fds.get(path);
    if (fd === undefined) {
      try {
        fd = openSync(path, 'r');
      } catch (e) {
        throw new UsageError(`cannot read trace rows '${path}' (${(e as NodeJS.ErrnoException).code ?? e})`);
      }
      this.fds.set(path, fd);
    }
    return fd;
  }

  /** The full row of a stage record, as float64 (f32 rows widened exactly), in a new array. */
  read(rec: StageRecord): Float64Array {
    return this.readInto(rec, new RowBuffer());
  }

  /**
   * The row of a stage record in `into`'s memory: a view valid until `into`
   * is used again. Comparing millions of rows allocates nothing per row
   * (a new array per logits row would pile up megabytes outside the heap).
   */
  readInto(rec: StageRecord, into: RowBuffer): Float64Array {
    const path = join(this.dir, rec.row.file);
    const width = rec.shape.reduce((a, b) => a * b, 1);
    const elem = rec.dtype === 'f64' ? 8 : 4;
    if (rec.row.bytes !== width * elem) {
      throw new UsageError(`${path}: row of ${rec.point} has ${rec.row.bytes} bytes, expected ${width * elem} for shape [${rec.shape.join(', ')}] ${rec.dtype}`);
    }
    if (this.scratch.length < rec.row.bytes) this.scratch = new Uint8Array(Math.max(rec.row.bytes, 2 * this.scratch.length));
    const fd = this.fd(path);
    let done = 0;
    while (done < rec.row.bytes) {
      const got = readSync(fd, this.scratch, done, rec.row.bytes - done, rec.row.offset + done);
      if (got === 0) throw new UsageError(`${path}: row of ${rec.phase} ${rec.point} at offset ${rec.row.offset} is cut short`);
      done += got;
    }
    this.rowsRead++;
    this.bytesRead += done;
    const row = into.view(width);
    // The scratch buffer starts at offset 0 of its own ArrayBuffer, so both views are aligned.
    row.set(rec.dtype === 'f64' ? new Float64Array(this.scratch.buffer, 0, width) : new Float32Array(this.scratch.buffer, 0, width));
    // The sample in the record must match the row: catches a sidecar from another run.
    rec.sample.indices.forEach((idx, j) => {
      const want = fromJsonNumber(rec.sample.values[j]!);
      const have = row[idx];
      const same = want === have || (Number.isNaN(want) && have !== undefined && Number.isNaN(have));
      if (!same) throw new UsageError(`${path}: row of ${rec.phase} ${rec.point} does not match its record's sample`);
    });
    return row;
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

/** Reusable memory for rows: grows to the widest row read through it. */
export class RowBuffer {
  private data = new Float64Array(0);

  view(width: number): Float64Array {
    if (this.data.length < width) this.data = new Float64Array(width);
    return this.data.subarray(0, width);
  }
}

/** The full row of a stage record, from the sidecar next to the JSONL file. */
export function readRow(run: TraceRun, rec: StageRecord): Float64Array {
  return run.rows.read(rec);
}
