/**
 * A one-line, human-readable description of a tool call for the person asked to approve it,
 * derived from the tool name and its arguments: `docker_restart_container {container:
 * "homeassistant"}` on `pi` reads "Restart container homeassistant on pi". No Node-RED imports.
 */

/** Words that start the action in a tool name (`docker_restart_container` → "restart"). */
const VERBS = new Set([
  'add', 'apply', 'clear', 'create', 'delete', 'deploy', 'disable', 'drive', 'enable', 'erase', 'format', 'install',
  'kill', 'load', 'move', 'open', 'pause', 'play', 'prune', 'pull', 'push', 'reboot', 'remove', 'rename', 'reset',
  'restart', 'restore', 'resume', 'run', 'save', 'send', 'set', 'show', 'shutdown', 'start', 'stop', 'take',
  'uninstall', 'update', 'upgrade', 'wipe', 'write',
]);

/** Arguments that name what the action is done to, in order of preference after the tool's own noun. */
const KEY_ARGUMENTS = ['name', 'id', 'path', 'target', 'url', 'image', 'service', 'app', 'file', 'device'];

/** Longest rendered argument value, characters. */
const MAX_VALUE_CHARS = 80;
/** Longest summary, characters. */
export const MAX_SUMMARY_CHARS = 300;

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** An argument value as a person reads it: plain words and paths bare, everything else as JSON. */
function show(value: unknown): string {
  const text = typeof value === 'string' && /^[\w./:@~-]+$/.test(value) ? value : JSON.stringify(value) ?? String(value);
  return cut(text, MAX_VALUE_CHARS);
}

function withArguments(args: Record<string, unknown>): string {
  const entries = Object.entries(args).filter(([, v]) => v !== undefined);
  return entries.length ? ` with ${entries.map(([k, v]) => `${k}: ${show(v)}`).join(', ')}` : '';
}

const isScalar = (v: unknown) => typeof v === 'string' ? v !== '' : typeof v === 'number';

/**
 * Summarises a call. When the tool name contains a known verb (`restart`, `delete`, `run` ...),
 * the summary is that verb, the words after it, the value of the argument they name (or of a
 * common naming argument: `name`, `id`, `path` ...), `on <agent>`, and the other arguments:
 * "Remove container web on pi with force: true". Otherwise: "Run <tool> on <agent> with <args>".
 * @returns at most {@link MAX_SUMMARY_CHARS} characters.
 */
export function summarizeCall(agent: string, tool: string, args: Record<string, unknown>): string {
  const words = tool.split(/[_\-.\s]+/).filter(Boolean);
  const v = words.findIndex((w) => VERBS.has(w.toLowerCase()));
  if (v < 0) return cut(`Run ${tool} on ${agent}${withArguments(args)}`, MAX_SUMMARY_CHARS);
  const verb = words[v].toLowerCase();
  const object = words.slice(v + 1);
  const noun = object.at(-1)?.toLowerCase();
  const keyName = [noun, ...KEY_ARGUMENTS].find((k): k is string => k !== undefined && isScalar(args[k]));
  const head = [verb[0].toUpperCase() + verb.slice(1), ...object, ...(keyName ? [show(args[keyName])] : [])].join(' ');
  const rest = Object.fromEntries(Object.entries(args).filter(([k]) => k !== keyName));
  return cut(`${head} on ${agent}${withArguments(rest)}`, MAX_SUMMARY_CHARS);
}
