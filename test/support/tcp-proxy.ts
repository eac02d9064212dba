/**
 * The partition proxy for tests: the module lives in scripts/faults/tcp-proxy.ts because the fault
 * suite (`npm run faults`, built into dist/) uses it too; tests import it from here.
 */
export { startTcpProxy, type TcpProxy, type TcpProxyOptions } from '../../scripts/faults/tcp-proxy';
