/**
 * node-red-node-test-helper's `RED._` returns message keys as they are. `withCatalog` wraps a
 * node's registration function so its `RED._` looks keys up in the given en-US catalogs (as
 * Node-RED's i18n does, filling `__name__` parameters) and throws on a key missing from them, so
 * tests see real wording and fail on a missing translation. Keys of other namespaces (core
 * nodes' `node-red:...`) are returned as they are.
 */
export function withCatalog<F extends (RED: any) => unknown>(register: F, ...catalogs: Record<string, unknown>[]): F {
  const translate = translator(...catalogs);
  return ((RED: { _: unknown }) => {
    RED._ = translate;
    return register(RED);
  }) as F;
}

/** The `RED._` {@link withCatalog} installs, for tests that build expected texts. */
export function translator(...catalogs: Record<string, unknown>[]): (key: string, params?: Record<string, unknown>) => string {
  const catalog: Record<string, unknown> = Object.assign({}, ...catalogs);
  return (key, params = {}) => {
    if (!(key.split('.')[0] in catalog)) return key;
    const text = key.split('.').reduce<any>((o, k) => o?.[k], catalog);
    if (typeof text !== 'string') throw new Error(`missing i18n key ${key}`);
    return text.replace(/__(\w+)__/g, (_m, name: string) => String(params[name]));
  };
}
