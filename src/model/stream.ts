/**
 * Streams weight tensors from their files to the backend through a few fixed
 * staging buffers: loading holds at most a chunk of any tensor in host memory,
 * never the model, and on hip the buffers are page-locked so each chunk goes
 * to the device in one DMA.
 */
import type { Backend, DType, Tensor } from '../native.js';
import { LoaderError } from '../loaders/errors.js';
import { closeQuietly, openRegular, readFully } from '../loaders/io.js';

/** Bytes per staging buffer: large enough that per-copy overhead vanishes, small enough to be no memory cost. */
export const STAGING_BYTES = 64 << 20;

/** Where a tensor's rows lie in a file. */
export interface RowSpan {
  file: string;
  /** Tensor name, for errors. */
  where: string;
  offset: number;
  rows: number;
  rowBytes: number;
}

/** A whole row-major tensor at `offset`: its first dimension counts the rows (a 1-D tensor is one row). */
export function tensorSpan(file: string, where: string, offset: number, shape: number[], bytes: number): RowSpan {
  const rows = shape.length > 1 ? shape[0]! : 1;
  return { file, where, offset, rows, rowBytes: bytes / rows };
}

/** A conversion of whole rows on their way to the device (dequantization, row reordering). */
export interface RowStage {
  /** Bytes of one output row. */
  rowBytes: number;
  /** Rows that must arrive together (one head for a reordering within heads). */
  groupRows: number;
  /** Writes `rows` converted rows from src into dst. */
  apply(src: Buffer, dst: Buffer, rows: number): void;
}

export class WeightStreamer {
  private readonly files = new Map<string, { fd: number; size: number }>();
  /** [0] receives file bytes, [i] the output of stage i-1. */
  private readonly staging: Buffer[] = [];

  constructor(
    private readonly backend: Backend,
    /** Called with the device bytes of each chunk as it lands. */
    private readonly onBytes: (bytes: number) => void = () => {},
    /** Target bytes per chunk (the widest row form counts); a chunk is never less than one row group. */
    private readonly chunkBytes = STAGING_BYTES,
  ) {}

  /** A new tensor of dtype/shape (a matmul weight where `matmul`) filled from `span`, passed through `stages` in order. */
  tensor(dtype: DType, shape: number[], span: RowSpan, stages: RowStage[] = [], matmul = false): Tensor {
    const t = this.backend.alloc(dtype, shape, { matmul });
    this.fill(t, 0, span, stages);
    return t;
  }

  /** Fills `t` from byte `at` on with the rows of `span`, passed through `stages` in order. */
  fill(t: Tensor, at: number, span: RowSpan, stages: RowStage[] = []): void {
    const { fd, size } = this.open(span.file);
    const end = span.offset + span.rows * span.rowBytes;
    if (end > size) {
      throw new LoaderError(span.file, span.where, `data [${span.offset}, ${end}) extends past the end of the file (${size} bytes)`);
    }
    const rowBytes = [span.rowBytes, ...stages.map((s) => s.rowBytes)];
    const group = stages.reduce((g, s) => lcm(g, s.groupRows), 1);
    const widest = Math.max(...rowBytes);
    const chunkRows = Math.min(span.rows, Math.max(group, Math.floor(this.chunkBytes / widest / group) * group));
    let dst = at;
    for (let row = 0; row < span.rows; row += chunkRows) {
      const rows = Math.min(chunkRows, span.rows - row);
      let buf = this.buffer(0, rows * span.rowBytes);
      readFully(fd, span.file, span.where, buf, rows * span.rowBytes, span.offset + row * span.rowBytes);
      stages.forEach((stage, i) => {
        const out = this.buffer(i + 1, rows * stage.rowBytes);
        stage.apply(buf, out, rows);
        buf = out;
      });
      const n = rows * rowBytes[rowBytes.length - 1]!;
      this.backend.upload(t, new Uint8Array(buf.buffer, buf.byteOffset, n), dst);
      dst += n;
      this.onBytes(n);
    }
  }

  /** Closes the files; the staging buffers go with the garbage collector. */
  close(): void {
    for (const { fd } of this.files.values()) closeQuietly(fd);
    this.files.clear();
  }

  private open(file: string): { fd: number; size: number } {
    let f = this.files.get(file);
    if (!f) {
      f = openRegular(file);
      this.files.set(file, f);
    }
    return f;
  }

  /** Staging buffer i with at least `bytes` bytes, (re)allocated from the backend's fast host memory. */
  private buffer(i: number, bytes: number): Buffer {
    const have = this.staging[i];
    if (have && have.length >= bytes) return have;
    const b = Buffer.from(this.backend.hostBuffer(Math.max(bytes, this.chunkBytes)));
    this.staging[i] = b;
    return b;
  }
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
const lcm = (a: number, b: number) => (a / gcd(a, b)) * b;
