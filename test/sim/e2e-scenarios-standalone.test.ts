/**
 * The end-to-end scenarios on the simulated kernel behaving as the
 * standalone module (/dev/veeamblksnap + /dev/bdevfilter, image names
 * `veeamblksnapimg_MAJ:MIN`, IOCTL_BLKSNAP_MOD): the flavour differences the
 * real suite meets on a stock kernel with the out-of-tree module.
 */
import { assertCliBuilt } from '../scenarios/common-env';
import { registerScenarios } from '../scenarios/register';
import { scenarios } from '../scenarios/scenarios';
import { SimEnvironment } from '../scenarios/sim-env';

describe('e2e scenarios on the simulated kernel (standalone flavour)', () => {
  beforeAll(() => assertCliBuilt());
  registerScenarios(scenarios, async () => new SimEnvironment('standalone'), 120_000);
});
