/**
 * Name globs as used by the agent policy and the registry policy (e.g. `docker_*`): `*` matches
 * any run of characters and `?` one character; every other character is literal. With
 * `separator`, `*` and `?` do not match it, so with "/" the glob "pi/ *" (no space) matches
 * "pi/x" but not "pi/x/y".
 */
export function globToRegExp(glob: string, separator?: string): RegExp {
  const any = separator ? `[^${separator.replace(/[\]\\^-]/g, '\\$&')}]` : '.';
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, `${any}*`).replace(/\?/g, any);
  return new RegExp(`^${body}$`);
}
