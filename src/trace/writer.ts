// Appends trace records to a JSONL file and full rows to its sidecar. Each row
// is written before the line that points at it, and lines go out whole (one
// record, or the records of one forward call, per write), so an interrupted
// run leaves whole lines whose rows are on disk, and at worst a last line cut
// short, which the reader reports.
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { TraceRecord } from './schema.js';

/** foo.jsonl -> foo.rows.bin; rows of every run appended to foo.jsonl go there. */
export function sidecarPath(jsonlPath: string): string {
  return (jsonlPath.endsWith('.jsonl') ? jsonlPath.slice(0, -'.jsonl'.length) : jsonlPath) + '.rows.bin';
}

function writeAll(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
}

export class TraceWriter {
  private readonly fd: number;
  private readonly rowFd: number;
  private rowOffset: number;
  private readonly rowFile: string;
  /** Runs before a single record is written: lets a tracer write the stage records it holds first. */
  beforeWrite: (() => void) | undefined;

  constructor(readonly path: string) {
    const rows = sidecarPath(path);
    this.rowFd = openSync(rows, 'a');
    this.fd = openSync(path, 'a');
    this.rowOffset = fstatSync(this.rowFd).size;
    this.rowFile = basename(rows);
  }

  writeRow(data: Float32Array | Float64Array): { file: string; offset: number; bytes: number } {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const ref = { file: this.rowFile, offset: this.rowOffset, bytes: bytes.length };
    writeAll(this.rowFd, bytes);
    this.rowOffset += bytes.length;
    return ref;
  }

  write(record: TraceRecord): void {
    this.beforeWrite?.();
    writeAll(this.fd, Buffer.from(JSON.stringify(record) + '\n', 'utf8'));
  }

  /** Several records in one write (a forward call's): the lines are whole, and their rows were written before. */
  writeLines(records: readonly TraceRecord[]): void {
    if (records.length) writeAll(this.fd, Buffer.from(records.map((r) => JSON.stringify(r) + '\n').join(''), 'utf8'));
  }

  close(): void {
    closeSync(this.fd);
    closeSync(this.rowFd);
  }
}
