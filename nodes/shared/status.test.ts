import { describe, expect, it } from 'vitest';
import { registryStatus, type RegistryStatus } from './status';

const t = (key: string, params?: Record<string, string | number>) => `${key}${params ? JSON.stringify(params) : ''}`;

describe('registryStatus', () => {
  it('gives every node the same fill, shape and text pattern for each registry state', () => {
    const states: RegistryStatus[] = ['connected', 'connecting', 'disconnected', 'waiting', 'error', 'no-registry'];
    const of = (node: string) => states.map((s) => registryStatus(node, s, t, 'boom'));
    expect(of('remote-tool')).toEqual([
      { fill: 'green', shape: 'dot', text: 'node-red:common.status.connected' },
      { fill: 'yellow', shape: 'ring', text: 'node-red:common.status.connecting' },
      { fill: 'yellow', shape: 'ring', text: 'remote-tool.status.reconnecting' },
      { fill: 'yellow', shape: 'ring', text: 'remote-tool.status.waiting' },
      { fill: 'red', shape: 'ring', text: 'remote-tool.status.registry-error{"detail":"boom"}' },
      { fill: 'red', shape: 'ring', text: 'remote-tool.status.no-registry' },
    ]);
    const shapes = (node: string) => of(node).map(({ fill, shape }) => `${fill}/${shape}`);
    expect(shapes('llm-agent')).toEqual(shapes('remote-tool'));
    expect(shapes('tool-in')).toEqual(shapes('remote-tool'));
  });
});
