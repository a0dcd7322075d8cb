// Appends trace records to a JSONL file and full rows to its sidecar, through
// a queue that writes on a thread of its own (the host goes on with the next
// step meanwhile). The queue keeps the order of the calls: each row is
// written before the line that points at it, and lines go out whole (one
// record, or the records of one forward call, per write), so an interrupted
// run leaves whole lines whose rows are on disk, and at worst a last line cut
// short, which the reader reports. close() returns once all is written.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { basename } from 'node:path';
import { fileQueue, type FileQueue } from '../native.js';
import type { TraceRecord } from './schema.js';

/** foo.jsonl -> foo.rows.bin; rows of every run appended to foo.jsonl go there. */
export function sidecarPath(jsonlPath: string): string {
  return (jsonlPath.endsWith('.jsonl') ? jsonlPath.slice(0, -'.jsonl'.length) : jsonlPath) + '.rows.bin';
}

export class TraceWriter {
  private readonly fd: number;
  private readonly rowFd: number;
  private rowOffset: number;
  private readonly rowFile: string;
  private readonly queue: FileQueue;
  /** Runs before a single record is written: lets a tracer write the stage records it holds first. */
  beforeWrite: (() => void) | undefined;

  constructor(readonly path: string) {
    const rows = sidecarPath(path);
    this.rowFd = openSync(rows, 'a');
    this.fd = openSync(path, 'a');
    this.rowOffset = fstatSync(this.rowFd).size;
    this.rowFile = basename(rows);
    this.queue = fileQueue();
  }

  /** Queues a row block; its bytes must stay unchanged until waitFor(ticket) returns. */
  writeRow(data: Float32Array | Float64Array): { file: string; offset: number; bytes: number; ticket: number } {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const ref = { file: this.rowFile, offset: this.rowOffset, bytes: bytes.length };
    this.rowOffset += bytes.length;
    return { ...ref, ticket: this.queue.write(this.rowFd, bytes, this.rowFile) };
  }

  write(record: TraceRecord): void {
    this.beforeWrite?.();
    this.queue.write(this.fd, Buffer.from(JSON.stringify(record) + '\n', 'utf8'), this.path);
  }

  /**
   * A forward call's stage records in one write, their numbers formatted on the queue's thread
   * (FileQueue.writeStageLines): the lines are whole, and their rows (`rows`, from writeRow) were queued before.
   */
  writeStageLines(
    heads: string[],
    tails: string[],
    host: ArrayBuffer,
    statsAt: number,
    spans: Int32Array,
    elemBytes: 4 | 8,
    rows: { file: string; offset: number },
  ): void {
    if (heads.length) this.queue.writeStageLines(this.fd, this.path, heads, tails, host, statsAt, spans, elemBytes, JSON.stringify(rows.file), rows.offset);
  }

  /** Returns once the writes up to ticket are done (the bytes they read may change). */
  waitFor(ticket: number): void {
    this.queue.wait(ticket);
  }

  /** Finishes every queued write, then closes the files; a failed write is thrown here if not before. */
  close(): void {
    try {
      this.queue.close();
    } finally {
      closeSync(this.fd);
      closeSync(this.rowFd);
    }
  }
}
