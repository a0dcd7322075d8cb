// Token text for the report: traces hold ids only. A model directory's
// tokenizer.json when the header names one, else the bundled Llama 3
// tokenizer when the vocabulary is Llama 3's; otherwise no text.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LLAMA3_VOCAB } from '../model/models.js';
import { hfTokenizer, LLAMA3_TOKENIZER } from '../tokenizer.js';
import type { HeaderRecord } from '../trace/schema.js';

export type TokenText = (id: number) => string | null;

const cache = new Map<string, TokenText>();

export function tokenTextFor(h: HeaderRecord): TokenText {
  const key = `${h.model.name}\u0000${String(h.config.vocab_size)}`;
  let f = cache.get(key);
  if (f) return f;
  let decode: ((ids: number[]) => string) | null = null;
  if (existsSync(join(h.model.name, 'tokenizer.json'))) {
    try {
      const t = hfTokenizer(h.model.name);
      decode = (ids) => t.decode(ids);
    } catch {
      // A tokenizer this loader cannot read: ids without text.
    }
  } else if (Number(h.config.vocab_size) === LLAMA3_VOCAB) {
    decode = (ids) => LLAMA3_TOKENIZER.decode(ids);
  }
  f = (id) => (decode ? decode([id]) : null);
  cache.set(key, f);
  return f;
}
