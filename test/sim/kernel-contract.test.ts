/**
 * The kernel client contract (./kernel-contract.suite.ts) on the simulated
 * kernel, as each flavour. test/e2e runs the same suite on the real module.
 */
import { kernelContract } from './kernel-contract.suite';
import { simFixture } from './kernel-fixture';

jest.setTimeout(60_000);

kernelContract('kernel contract on the simulated kernel (upstream)', () => simFixture('upstream'));
kernelContract('kernel contract on the simulated kernel (standalone)', () => simFixture('standalone'));
