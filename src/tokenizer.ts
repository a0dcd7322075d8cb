// Tokenizers behind one interface: the bundled Llama 3 tokenizer (synthetic
// models, and real ones without a tokenizer.json), and a model directory's
// tokenizer.json with its tokenizer_config.json chat template.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { detokenize, PROMPT_PARTS, PROMPTS, tokenize } from './prompts.js';
import { LoaderError } from './loaders/errors.js';

export interface PromptTokenizer {
  readonly name: string;
  /** Ids of a built-in prompt (chat prompts through the model's chat template). */
  prompt(name: string): number[];
  /** Ids of user text, with the model's BOS. */
  text(text: string): number[];
  decode(ids: readonly number[]): string;
}

export const LLAMA3_TOKENIZER: PromptTokenizer = {
  name: 'llama3 (bundled)',
  prompt: (name) => tokenize(PROMPTS[name]!),
  text: (text) => tokenize(text),
  decode: (ids) => detokenize(ids),
};

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new LoaderError(file, null, e instanceof SyntaxError ? `not JSON (${e.message})` : String((e as Error).message));
  }
}

/** tokenizer.json (+ tokenizer_config.json) of a Hugging Face model directory. */
export function hfTokenizer(dir: string): PromptTokenizer {
  const file = join(dir, 'tokenizer.json');
  const json = readJson(file);
  const cfgFile = join(dir, 'tokenizer_config.json');
  const cfg = existsSync(cfgFile) ? readJson(cfgFile) : {};
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, cfg);
  } catch (e) {
    throw new LoaderError(file, null, `not a tokenizer this loader understands (${(e as Error).message})`);
  }
  const tokenText = (v: unknown): string | undefined =>
    typeof v === 'string' ? v : v && typeof v === 'object' && 'content' in v ? String((v as { content: unknown }).content) : undefined;
  const bosToken = tokenText(cfg.bos_token) ?? '<|begin_of_text|>';
  const templateSrc = typeof cfg.chat_template === 'string' ? cfg.chat_template : undefined;
  const template = templateSrc ? new Template(templateSrc) : undefined;
  const encode = (text: string) => tok.encode(text, { add_special_tokens: false }).ids.map(Number);
  const bosIds = encode(bosToken);
  const withBos = (ids: number[]) =>
    bosIds.length === 1 && ids[0] !== bosIds[0] ? [bosIds[0]!, ...ids] : ids;
  return {
    name: 'tokenizer.json',
    prompt(name) {
      const p = PROMPT_PARTS[name]!;
      if ('text' in p) return withBos(encode(p.text));
      if (!template) throw new LoaderError(cfgFile, 'chat_template', `missing: prompt '${name}' is a chat turn`);
      const rendered = template.render({
        messages: [
          { role: 'system', content: p.system },
          { role: 'user', content: p.user },
        ],
        bos_token: bosToken,
        add_generation_prompt: true,
      });
      return withBos(encode(rendered));
    },
    text: (text) => withBos(encode(text)),
    decode: (ids) => tok.decode([...ids]),
  };
}
