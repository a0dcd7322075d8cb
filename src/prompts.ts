// Built-in prompts of the StageTrace reports, and the Llama 3 tokenizer that
// turns them into ids. p4_sys is a system + user turn in the Llama 3 chat
// template; the others are plain text after <|begin_of_text|>.
import llama3Tokenizer from 'llama3-tokenizer-js';

export const BOS = 128000;

export function chatTemplate(system: string, user: string): string {
  return (
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n' +
    system +
    '<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n' +
    user +
    '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'
  );
}

const LONG = [
  'The history of numerical computing is a history of trading exactness for speed and then spending decades',
  'learning which trades were safe. Early machines accumulated sums in whatever order the hardware found',
  'convenient, and programmers discovered that the same program could print different answers when the',
  'data arrived in a different order. Floating point addition is not associative: adding a small number to',
  'a large one loses the small number\'s low bits, and the bits lost depend on what was added before. Modern',
  'accelerators make this worse and better at once. They split long reductions across thousands of lanes',
  'and combine the partial sums in trees whose shape depends on the size of the problem, so a matrix',
  'product computed for one row can differ in its last bits from the same row computed inside a batch of',
  'two hundred. For training this rarely matters. For an inference engine that must explain why the first',
  'decoded token disagrees with the last prefill token, it matters a great deal, because a difference that',
  'comes from rounding looks exactly like a difference that comes from a bug in a kernel, a stride, a cache',
  'layout or a position index. The cure is to fix the order of every reduction so that the number of tokens',
  'in a launch never changes the arithmetic. Then a correct engine gives the same bits in prefill and in',
  'decode, and the first place where the bits differ is the place where the bug lives. Describe, step by',
  'step, how you would find that place in a thirty-two layer model.',
].join(' ');

/** The built-in prompts: plain text (after BOS), or a system + user chat turn. */
export type PromptParts = { text: string } | { system: string; user: string };

export const PROMPT_PARTS: Record<string, PromptParts> = {
  p0_short: { text: 'The capital of France is' },
  p4_sys: {
    system:
      'You are a careful assistant for GPU kernel engineers. Answer precisely, show the reasoning that matters, and say when you are unsure.',
    user: 'In one sentence, what is the difference between prefill and decode in a transformer inference engine?',
  },
  p5_ba: { text: 'Buenos Aires es la capital de Argentina. Su barrio más antiguo es' },
  p6_long: { text: LONG },
};

/** The built-in prompts as Llama 3 text, special tokens included. */
export const PROMPTS: Record<string, string> = Object.fromEntries(
  Object.entries(PROMPT_PARTS).map(([k, p]) => [k, 'text' in p ? '<|begin_of_text|>' + p.text : chatTemplate(p.system, p.user)]),
);

export const PROMPT_NAMES = Object.keys(PROMPTS);

/** Token ids of text; <|begin_of_text|> is added unless the text already starts with it. */
export function tokenize(text: string): number[] {
  const ids = llama3Tokenizer.encode(text, { bos: false, eos: false });
  return ids[0] === BOS ? ids : [BOS, ...ids];
}

export function detokenize(ids: readonly number[]): string {
  return llama3Tokenizer.decode([...ids]);
}
