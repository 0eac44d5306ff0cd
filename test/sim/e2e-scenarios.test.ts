/**
 * Every end-to-end scenario (test/scenarios) on the simulated kernel, through
 * the built CLI run as separate processes, so the scenarios that test/e2e
 * runs on the real module stay exercised in `npm test` (no root, no module).
 * Each scenario gets its own state directory, records directory and devices.
 */
import { assertCliBuilt } from '../scenarios/common-env';
import { registerScenarios } from '../scenarios/register';
import { scenarios } from '../scenarios/scenarios';
import { SimEnvironment } from '../scenarios/sim-env';

describe('e2e scenarios on the simulated kernel (upstream flavour)', () => {
  beforeAll(() => assertCliBuilt());
  registerScenarios(scenarios, async () => new SimEnvironment('upstream'), 120_000);
});
