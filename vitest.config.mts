import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  // Sources that import the agent package by name (@toolmesh/agent/protocol/...) get its sources,
  // as the tests' relative imports do: one copy of each protocol module (module-level state).
  resolve: { alias: [{ find: /^@toolmesh\/agent\/(protocol|agent)(?=\/|$)/, replacement: `${root}$1` }] },
  test: {
    include: ['protocol/**/*.test.ts', 'mcp/**/*.test.ts', 'agent/**/*.test.ts', 'nodes/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2 } },
  },
});
