// Comma-separated option values, shared by every command. Kept apart from
// options.ts so that commands which load no model (analyze, compare) need not
// load the tokenizer and the addon that the trace options name.

/**
 * The items of a comma-separated list, trimmed. An empty item (`0,,1`, a
 * trailing comma) is an error, not dropped: it is most often a value lost
 * from a script. `allowedText` says what the items may be.
 */
export function splitList(s: string, allowedText: string): { items: string[] } | { error: string } {
  if (s.trim() === '') return { items: [] };
  const items = s.split(',').map((x) => x.trim());
  if (items.some((x) => x.length === 0)) return { error: `'${s}' has an empty item (${allowedText})` };
  return { items };
}
