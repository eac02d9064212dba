import { describe, expect, it } from 'vitest';
import { provideRegistry, registryOf, type ToolRegistryApi } from './registry-api';

describe('registryOf', () => {
  it('gives the registry a tool-registry node provided, and undefined for any other node, a missing one or no id', () => {
    const registryNode = { id: 'reg', type: 'toolmesh-tool-registry' };
    const otherNode = { id: 'tls', type: 'tls-config', call: () => undefined };
    const api = { callerId: 'c' } as unknown as ToolRegistryApi;
    provideRegistry(registryNode, api);
    const byId: Record<string, object> = { reg: registryNode, tls: otherNode };
    const RED = { nodes: { getNode: (id: string) => byId[id] ?? null } };
    expect(registryOf(RED, 'reg')).toBe(api);
    expect(registryOf(RED, 'tls')).toBeUndefined();
    expect(registryOf(RED, 'gone')).toBeUndefined();
    expect(registryOf(RED, '')).toBeUndefined();
    expect(registryOf(RED, undefined)).toBeUndefined();
  });
});
