// Bounded file access shared by the loaders: every failure of the OS (missing file, a directory,
// permissions, a file that shrank under us) becomes a LoaderError naming the file.
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { LoaderError } from './errors.js';

function osMessage(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err && typeof err === 'object' && typeof err.code === 'string' ? `${err.code}: ${err.message}` : String(e);
}

/** Opens a regular file for reading; returns its fd and size. */
export function openRegular(path: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY);
  } catch (e) {
    throw new LoaderError(path, null, `cannot open: ${osMessage(e)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new LoaderError(path, null, 'not a regular file');
    return { fd, size: st.size };
  } catch (e) {
    closeSync(fd);
    if (e instanceof LoaderError) throw e;
    throw new LoaderError(path, null, `cannot stat: ${osMessage(e)}`);
  }
}

export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing to do: the fd was only read
  }
}

/** Fills buf[0, length) from the file at position; a short read is a LoaderError. */
export function readFully(fd: number, file: string, where: string | null, buf: Buffer, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, buf, done, length - done, position + done);
    } catch (e) {
      throw new LoaderError(file, where, `read failed at byte ${position + done}: ${osMessage(e)}`);
    }
    if (n === 0) throw new LoaderError(file, where, `unexpected end of file at byte ${position + done} (wanted ${length} bytes at ${position})`);
    done += n;
  }
}

/**
 * Exactly `bytes` bytes of `file` at `offset`, checked again against the file's current size so a
 * file that changed since its header was read gives a LoaderError rather than a short buffer.
 */
export function readRange(file: string, where: string, offset: number, bytes: number): Buffer {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0) {
    throw new LoaderError(file, where, `invalid byte range: offset ${offset}, ${bytes} bytes`);
  }
  if (bytes > bufferConstants.MAX_LENGTH) {
    throw new LoaderError(file, where, `tensor is ${bytes} bytes, more than one buffer can hold (${bufferConstants.MAX_LENGTH})`);
  }
  const { fd, size } = openRegular(file);
  try {
    if (offset + bytes > size) {
      throw new LoaderError(file, where, `data [${offset}, ${offset + bytes}) extends past the end of the file (${size} bytes)`);
    }
    const buf = Buffer.allocUnsafe(bytes);
    readFully(fd, file, where, buf, bytes, offset);
    return buf;
  } finally {
    closeQuietly(fd);
  }
}

/** serde_json's recursion limit, which the reference safetensors parser runs under. */
export const MAX_JSON_DEPTH = 128;

/**
 * Scans JSON text (already accepted by JSON.parse) for a key repeated within one object, at any
 * depth, and for nesting deeper than MAX_JSON_DEPTH.
 */
export function scanJson(json: string): { path: string; key: string } | { tooDeep: true } | null {
  // The text has already been accepted by JSON.parse, so this scan only tracks strings, nesting
  // and which strings are keys. Iterative: no recursion on deeply nested input.
  type Frame = { obj: boolean; keys: Set<string> | null; expectKey: boolean; path: string; lastKey: string };
  const stack: Frame[] = [];
  let i = 0;
  const n = json.length;
  while (i < n) {
    const c = json.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < n) {
        const d = json.charCodeAt(j);
        if (d === 0x5c /* \ */) j += 2;
        else if (d === 0x22) break;
        else j++;
      }
      const top = stack[stack.length - 1];
      if (top && top.obj && top.expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        if (top.keys!.has(key)) return { path: top.path, key };
        top.keys!.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const parent = stack[stack.length - 1];
      const path = parent ? (parent.obj ? (parent.path ? `${parent.path}.${parent.lastKey}` : parent.lastKey) : `${parent.path}[]`) : '';
      if (stack.length >= MAX_JSON_DEPTH) return { tooDeep: true };
      stack.push({ obj: c === 0x7b, keys: c === 0x7b ? new Set() : null, expectKey: c === 0x7b, path, lastKey: '' });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top && top.obj) top.expectKey = true;
    }
    i++;
  }
  return null;
}
