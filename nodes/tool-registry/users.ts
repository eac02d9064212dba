/**
 * The user list of the embedded broker, as typed in the tool-registry's `users` credential:
 * one user a line, `role id password`, where role is `agent`, `caller` or `admin`, id is the
 * agent or caller id (the MQTT username) and password is the rest of the line (trimmed). A
 * password starting with `$scrypt$` is taken as a hash from `hashPassword` (and refused when it is
 * not a well-formed one). Blank lines
 * and lines starting with `#` are ignored. Example:
 *
 * ```
 * # role   id         password
 * agent    pi         correct-horse-battery
 * caller   dashboard  another-long-secret
 * admin    ops        $scrypt$ln=14,r=8,p=1$c2FsdHNhbHQ$...
 * ```
 */
import { isValidId } from '@toolmesh/agent/protocol';
import { isPasswordHash, type BrokerRole, type BrokerUser } from '@toolmesh/agent/protocol/broker-auth';

/** Why a line of the list is unusable; `id` never holds a password. */
export type UserLineProblem =
  | { line: number; problem: 'role'; role: string }
  | { line: number; problem: 'id'; id: string }
  | { line: number; problem: 'password' }
  | { line: number; problem: 'hash' }
  | { line: number; problem: 'duplicate'; id: string };

const ROLES: readonly string[] = ['agent', 'caller', 'admin'];

/**
 * Parses the list. Never throws; on the first unusable line it returns the users before it and
 * the problem (1-based line number), without echoing any password.
 */
export function parseUserList(text: string | undefined): { users: BrokerUser[]; problem?: UserLineProblem } {
  const users: BrokerUser[] = [];
  const lines = (text ?? '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    const [, role, id = '', rest = ''] = /^(\S+)(?:\s+(\S+))?(?:\s+(.*))?$/.exec(line)!;
    const password = rest.trim();
    const at = i + 1;
    if (!ROLES.includes(role)) return { users, problem: { line: at, problem: 'role', role } };
    if (!isValidId(id)) return { users, problem: { line: at, problem: 'id', id } };
    if (!password) return { users, problem: { line: at, problem: 'password' } };
    if (password.startsWith('$scrypt$') && !isPasswordHash(password)) return { users, problem: { line: at, problem: 'hash' } };
    if (users.some((u) => u.username === id)) return { users, problem: { line: at, problem: 'duplicate', id } };
    const user: BrokerUser = { username: id, role: role as BrokerRole };
    if (password.startsWith('$scrypt$')) user.passwordHash = password;
    else user.password = password;
    users.push(user);
  }
  return { users };
}
