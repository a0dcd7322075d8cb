// The trace writer's queue: writes land in call order from a thread of its
// own, a failed write surfaces as one error naming the file, and close()
// returns once everything is written.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileQueue } from '../src/native.js';
import { sidecarPath, TraceWriter } from '../src/trace/writer.js';

const dir = mkdtempSync(join(tmpdir(), 'greta-writer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('trace writer queue', () => {
  it('keeps the order of thousands of writes, and the bytes of each as queued', () => {
    const path = join(dir, 'order.bin');
    const fd = openSync(path, 'a');
    const q = fileQueue();
    const expected: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const chunk = Uint8Array.from({ length: 1 + (i % 97) }, (_, j) => (i + j) & 0xff);
      expected.push(...chunk);
      q.write(fd, chunk, path);
    }
    q.close();
    closeSync(fd);
    expect(Buffer.from(readFileSync(path)).equals(Buffer.from(expected))).toBe(true);
  });

  it('a failed write is one EIO error naming the file, at the next wait', () => {
    const fd = openSync('/dev/full', 'a');
    const q = fileQueue();
    const t = q.write(fd, new Uint8Array(4096), '/dev/full');
    let err: unknown;
    try {
      q.wait(t);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('EIO');
    expect((err as Error).message).toBe('writing /dev/full: No space left on device');
    expect(() => q.close()).toThrow(/writing \/dev\/full: No space left on device/);
    expect(() => q.write(fd, new Uint8Array(1), 'x')).toThrow(/file queue was already closed/);
    closeSync(fd);
  });

  it('TraceWriter: rows before the lines that point at them, all there after close', () => {
    const path = join(dir, 't.jsonl');
    const w = new TraceWriter(path);
    const a = w.writeRow(Float32Array.of(1, 2, 3));
    w.write({ type: 'end', run_id: 'r', status: 'ok', elapsed_ms: 1, results: [] });
    const b = w.writeRow(Float32Array.of(4));
    w.waitFor(b.ticket);
    expect([a.offset, a.bytes, b.offset, b.bytes]).toEqual([0, 12, 12, 4]);
    w.close();
    expect(existsSync(sidecarPath(path))).toBe(true);
    expect([...new Float32Array(Uint8Array.from(readFileSync(sidecarPath(path))).buffer)]).toEqual([1, 2, 3, 4]);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ type: 'end', run_id: 'r' });
  });
});
