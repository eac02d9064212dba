/**
 * Polls `check` every 10 ms until it returns a truthy value (awaiting it when it is a promise).
 * @param what names the condition in the error.
 * @param ms how long to wait, ms (default 10 000).
 * @throws Error `timed out waiting for <what>` after `ms`.
 */
export async function until<T>(check: () => T | Promise<T>, what: string, ms = 10_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
