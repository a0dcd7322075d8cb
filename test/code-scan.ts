// Reading hip/ sources as the compiler does, for the tests that scan them.

/** The source with comments, string and character literals blanked; newlines kept, so line numbers hold. */
export function stripCode(src: string): string {
  let out = '';
  let i = 0;
  const blank = (s: string) => s.replace(/[^\n]/g, ' ');
  while (i < src.length) {
    const c = src[i]!;
    const d = src[i + 1];
    if (c === '/' && d === '/') {
      let j = src.indexOf('\n', i);
      // A line comment ending in a backslash continues on the next line.
      while (j > 0 && src[j - 1] === '\\') j = src.indexOf('\n', j + 1);
      if (j < 0) j = src.length;
      out += blank(src.slice(i, j));
      i = j;
    } else if (c === '/' && d === '*') {
      const j = src.indexOf('*/', i + 2);
      const end = j < 0 ? src.length : j + 2;
      out += blank(src.slice(i, end));
      i = end;
    } else if (c === '"' || (c === "'" && !/^\.?\d/.test(/[\w.']*$/.exec(src.slice(Math.max(0, i - 64), i))![0]))) {
      // A quote inside a number is a digit separator (6'4), not a character literal.
      let j = i + 1;
      while (j < src.length && src[j] !== c && src[j] !== '\n') j += src[j] === '\\' ? 2 : 1;
      out += c + blank(src.slice(i + 1, j)) + (j < src.length ? src[j] : '');
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

