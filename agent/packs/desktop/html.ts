/**
 * HTML to readable text for `desktop_fetch_webpage`: one forward scan (linear in the input, no
 * backtracking regular expressions over the page), no DOM. Scripts, styles and other
 * non-content elements are dropped, block elements become line breaks, list items `- `,
 * character references are decoded, and runs of blank space collapse.
 */

/** Elements whose content is not page text (skipped up to their end tag). */
const SKIPPED = new Set(['script', 'style', 'noscript', 'template', 'svg', 'math', 'iframe', 'object', 'canvas']);
/** Elements that start a new line. */
const BLOCK = new Set([
  'address', 'article', 'aside', 'blockquote', 'br', 'dd', 'details', 'div', 'dl', 'dt', 'figcaption', 'figure',
  'footer', 'form', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'hr', 'li', 'main', 'nav', 'ol', 'p', 'pre',
  'section', 'summary', 'table', 'tbody', 'tfoot', 'thead', 'tr', 'ul',
]);

/** The named character references pages use most; others stay as written. */
const NAMED: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', copy: '©', reg: '®', trade: '™',
  hellip: '…', mdash: '—', ndash: '–', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', laquo: '«',
  raquo: '»', bull: '•', middot: '·', deg: '°', euro: '€', pound: '£', times: '×', shy: '',
};

/** Decodes character references (`&amp;`, `&#233;`, `&#xE9;`); invalid code points become U+FFFD. */
export function decodeEntities(text: string): string {
  return text.replace(/&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});/g, (whole, ref: string) => {
    if (ref[0] !== '#') return NAMED[ref] ?? whole;
    const cp = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : '\uFFFD';
  });
}

/** Lower-cases ASCII only, so indexes stay the same as in the original. */
function lowerAscii(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** Index just past the `>` ending the tag that starts at `from`, honouring quoted attribute values; `text.length` when unclosed. */
function tagEnd(text: string, from: number): number {
  let quote = '';
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '>') {
      return i + 1;
    }
  }
  return text.length;
}

/** Collapses blank space: one space within lines, no blank-only lines beyond one in a row. */
export function tidyText(text: string): string {
  return text
    .replace(/[^\S\n]+/g, ' ')
    .split('\n').map((l) => l.trim()).join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/** A page as text: its `<title>` (empty when none) and its readable text. */
export function htmlToText(html: string): { title: string; text: string } {
  const lower = lowerAscii(html);
  const out: string[] = [];
  let title = '';
  const tag = /<(\/?)([a-zA-Z][a-zA-Z0-9:-]*)/y;
  let i = 0;
  while (i < html.length) {
    const lt = html.indexOf('<', i);
    if (lt < 0) {
      out.push(html.slice(i));
      break;
    }
    out.push(html.slice(i, lt));
    if (html.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4);
      i = end < 0 ? html.length : end + 3;
      continue;
    }
    if (html[lt + 1] === '!' || html[lt + 1] === '?') {
      i = tagEnd(html, lt + 1);
      continue;
    }
    tag.lastIndex = lt;
    const m = tag.exec(html);
    if (!m) {
      out.push('<');
      i = lt + 1;
      continue;
    }
    const name = m[2].toLowerCase();
    i = tagEnd(html, tag.lastIndex);
    if (m[1] === '' && (SKIPPED.has(name) || name === 'title')) {
      const close = lower.indexOf(`</${name}`, i);
      if (name === 'title' && !title) title = tidyText(decodeEntities(html.slice(i, close < 0 ? html.length : close)));
      i = close < 0 ? html.length : tagEnd(html, close + 2);
      continue;
    }
    if (name === 'li') out.push(m[1] === '' ? '\n- ' : '');
    else if (BLOCK.has(name)) out.push('\n');
    else if (name === 'td' || name === 'th') out.push(' ');
  }
  return { title, text: tidyText(decodeEntities(out.join(''))) };
}
