/**
 * Two rules that keep log lines honest, shared by the agent, the MCP bridge and the tool-registry:
 *
 * 1. A broker URL never carries credentials. `mqtt://user:password@host` is refused (the password
 *    would end up in every log line, status text and error message that names the broker); the
 *    username and password go in their own fields, which each program names in the error.
 * 2. Names chosen by others (agent, caller and MQTT client ids, tool names, MCP client names,
 *    topics and messages from the wire) pass through {@link printable} before they reach a log
 *    line, so they cannot forge lines, move the cursor or reorder text.
 */

/** Where a program takes the broker's username and password instead, as its error names them. */
export interface CredentialFields {
  /** E.g. `broker.username` or `--username`. */
  username: string;
  /** E.g. `broker.passwordFile` or `--password-file`. */
  password: string;
}

/**
 * The rule: true when a broker URL holds user info, that is any `@` after `scheme://` (anywhere
 * when there is no `scheme://`). A broker URL has no other use for `@` (a path that needs one
 * writes `%40`). Found by text, not by `new URL()`, so a password with `/`, `?`, `#` or a space
 * (which ends the authority early, or makes the URL unparseable) is still found. The agent and
 * the bridge ask through {@link userInfoProblem}; the tool-registry asks directly and words the
 * refusal in the editor's language.
 */
export function hasUserInfo(url: string): boolean {
  const at = url.indexOf('://');
  return url.indexOf('@', at < 0 ? 0 : at + 3) >= 0;
}

/**
 * The problem with a broker URL that carries user info (`user:password@`), or `undefined` when it
 * carries none; the caller puts its field's name in front (`broker.url: ...`). The message never
 * repeats the URL (it holds the secret); it names the fields to use instead:
 * `must not hold a username or password (user:password@host): put them in broker.username and broker.passwordFile (...)`.
 */
export function userInfoProblem(url: unknown, fields: CredentialFields): string | undefined {
  if (typeof url !== 'string' || !hasUserInfo(url)) return undefined;
  return `must not hold a username or password (user:password@host): put them in ${fields.username} and ${fields.password} `
    + '(the URL is not shown here: it holds a secret)';
}

/**
 * The URL without user info, for log lines written before (or instead of) {@link userInfoProblem}
 * refuses it: everything from `scheme://` to the last `@` goes. Control characters are escaped
 * ({@link printable}).
 */
export function urlForLog(url: string): string {
  const start = url.indexOf('://');
  const at = url.lastIndexOf('@');
  const bare = start >= 0 && at > start ? url.slice(0, start + 3) + url.slice(at + 1) : url;
  return printable(bare);
}

/**
 * Characters that must not reach a log line: C0 controls (U+0000–001F, tab and newline too), DEL
 * (U+007F), C1 controls (U+0080–009F), the line and paragraph separators (U+2028, U+2029) and the
 * bidirectional embeddings, overrides and isolates (U+202A–202E, U+2066–2069; "Trojan Source",
 * CVE-2021-42574).
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `value` as text fit for one log line: each character of {@link UNPRINTABLE} becomes its escape
 * `\uXXXX` (so `a\nb` is logged as `a\u000ab`, on one line, and the difference stays visible).
 * Non-strings are turned into text first (`String(value)`). Linear in the length; no recursion.
 */
export function printable(value: unknown): string {
  const s = typeof value === 'string' ? value : String(value);
  return s.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
