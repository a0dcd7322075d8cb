import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { LoaderError } from '../../src/loaders/errors.js';

export function tmp(prefix = 'greta-loaders-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Rewrites a file in place through fn. */
export function patch(path: string, fn: (b: Buffer) => Buffer | void): void {
  const b = readFileSync(path);
  writeFileSync(path, fn(b) ?? b);
}

/** fn must throw exactly one LoaderError naming file and where, whose message matches what. */
export function expectLoaderError(fn: () => unknown, file: string, where: string | null, what: RegExp): LoaderError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected a LoaderError').toBeInstanceOf(LoaderError);
  const e = thrown as LoaderError;
  expect(e.name).toBe('LoaderError');
  expect(e.code).toBe('EBADFILE');
  expect(e.file).toBe(file);
  expect(e.where).toBe(where);
  expect(e.what).toMatch(what);
  expect(e.message).toBe(`${file}${where ? `: ${where}` : ''}: ${e.what}`);
  return e;
}

export function f32(xs: number[]): Uint8Array {
  const b = Buffer.alloc(xs.length * 4);
  xs.forEach((x, i) => b.writeFloatLE(x, i * 4));
  return b;
}

export function u16(xs: number[]): Uint8Array {
  const b = Buffer.alloc(xs.length * 2);
  xs.forEach((x, i) => b.writeUInt16LE(x, i * 2));
  return b;
}
