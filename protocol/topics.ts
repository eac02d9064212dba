/**
 * Topic builders for wire protocol v1 (docs/protocol.md). Topics are built only here.
 *
 * | topic                                        | from → to        |
 * | `{root}/agents/{agentId}/status`             | agent → all      |
 * | `{root}/agents/{agentId}/catalog`            | agent → all      |
 * | `{root}/agents/{agentId}/rpc/{callerId}/req` | caller → agent   |
 * | `{root}/agents/{agentId}/rpc/{callerId}/res` | agent → caller   |
 * | `{root}/callers/{callerId}/status`           | caller → all     |
 */

/** Default topic root. */
export const DEFAULT_ROOT = 'toolmesh/v1';

/** Agent and caller ids: 1–64 characters of letters, digits, `_` and `-`. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** True when `id` is a valid agent or caller id. */
export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

/**
 * Throws an Error naming `field` when `id` does not match {@link ID_PATTERN}.
 * @throws Error `<field> must match ^[A-Za-z0-9_-]{1,64}$, got "<id>"`
 */
export function assertValidId(id: unknown, field: string): asserts id is string {
  if (!isValidId(id)) {
    throw new Error(`${field} must match ^[A-Za-z0-9_-]{1,64}$ (letters, digits, _ and -), got ${JSON.stringify(id)}`);
  }
}

/** A topic parsed back into its parts; `null` from {@link Topics.parse} when it is not a v1 topic. */
export type ParsedTopic =
  | { kind: 'agentStatus' | 'agentCatalog'; agentId: string }
  | { kind: 'req' | 'res'; agentId: string; callerId: string }
  | { kind: 'callerStatus'; callerId: string };

/** Topic builders bound to one root. */
export interface Topics {
  readonly root: string;
  agentStatus(agentId: string): string;
  agentCatalog(agentId: string): string;
  req(agentId: string, callerId: string): string;
  res(agentId: string, callerId: string): string;
  callerStatus(callerId: string): string;
  /** `{root}/agents/+/status` */
  readonly anyAgentStatus: string;
  /** `{root}/agents/+/catalog` */
  readonly anyAgentCatalog: string;
  /** `{root}/callers/+/status` */
  readonly anyCallerStatus: string;
  /** `{root}/agents/{agentId}/rpc/+/req`: every request to one agent. */
  requestsTo(agentId: string): string;
  /** `{root}/agents/+/rpc/{callerId}/res`: every response to one caller. */
  responsesTo(callerId: string): string;
  /** Parses a topic of this root; `null` for anything else (including invalid ids). */
  parse(topic: string): ParsedTopic | null;
}

/**
 * Returns topic builders for `root` (default `toolmesh/v1`).
 * @throws Error when root is empty, ends with `/`, or holds an MQTT wildcard.
 */
export function topics(root: string = DEFAULT_ROOT): Topics {
  if (!root || root.endsWith('/') || /[+#]/.test(root)) {
    throw new Error(`topic root must be a non-empty topic without wildcards or trailing "/", got ${JSON.stringify(root)}`);
  }
  const prefix = root + '/';
  const depth = root.split('/').length;
  return {
    root,
    agentStatus: (a) => `${root}/agents/${a}/status`,
    agentCatalog: (a) => `${root}/agents/${a}/catalog`,
    req: (a, c) => `${root}/agents/${a}/rpc/${c}/req`,
    res: (a, c) => `${root}/agents/${a}/rpc/${c}/res`,
    callerStatus: (c) => `${root}/callers/${c}/status`,
    anyAgentStatus: `${root}/agents/+/status`,
    anyAgentCatalog: `${root}/agents/+/catalog`,
    anyCallerStatus: `${root}/callers/+/status`,
    requestsTo: (a) => `${root}/agents/${a}/rpc/+/req`,
    responsesTo: (c) => `${root}/agents/+/rpc/${c}/res`,
    parse(topic) {
      if (!topic.startsWith(prefix)) return null;
      const p = topic.split('/').slice(depth);
      if (p[0] === 'agents' && isValidId(p[1])) {
        if (p.length === 3 && p[2] === 'status') return { kind: 'agentStatus', agentId: p[1] };
        if (p.length === 3 && p[2] === 'catalog') return { kind: 'agentCatalog', agentId: p[1] };
        if (p.length === 5 && p[2] === 'rpc' && isValidId(p[3]) && (p[4] === 'req' || p[4] === 'res')) {
          return { kind: p[4], agentId: p[1], callerId: p[3] };
        }
      }
      if (p[0] === 'callers' && p.length === 3 && p[2] === 'status' && isValidId(p[1])) {
        return { kind: 'callerStatus', callerId: p[1] };
      }
      return null;
    },
  };
}
