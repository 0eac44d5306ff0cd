/**
 * The end-to-end scenarios (test/scenarios) against the real blksnap module,
 * either flavour, through the built CLI run as separate processes.
 *
 *   npm run test:e2e                        loop devices over temp files
 *   BLKSNAP_E2E_DEVICES=/dev/vdb,/dev/vdc,/dev/vdd npm run test:e2e
 *                                           scratch devices (contents destroyed)
 *
 * Without a module there is nothing to test: the file prints one line saying
 * so and registers a single skipped test, so jest reports "1 skipped" and
 * exits 0 (it does not pass anything it did not run). With a module every
 * scenario runs; nothing is skipped silently (not root, no CLI build, bad
 * BLKSNAP_E2E_DEVICES: every scenario fails with the reason).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { notRootReason } from '../helpers/root';
import { assertCliBuilt } from '../scenarios/common-env';
import { RealEnvironment } from '../scenarios/real-env';
import { registerScenarios } from '../scenarios/register';
import { scenarios } from '../scenarios/scenarios';
import { DevicePool, openDevicePool } from './devices';

const UPSTREAM_CONTROL = '/dev/blksnap-control';
const STANDALONE_CONTROL = '/dev/veeamblksnap';
export const SKIP_LINE = `blksnap e2e: skipped — no ${UPSTREAM_CONTROL} or ${STANDALONE_CONTROL}`;

/** The flavour the CLI's auto-detection must find (blksnap-abi.md §1), or null without a module. */
function presentFlavour(): 'upstream' | 'standalone' | null {
  if (fs.existsSync(UPSTREAM_CONTROL)) return 'upstream';
  if (fs.existsSync(STANDALONE_CONTROL)) return 'standalone';
  return null;
}

const flavour = presentFlavour();

if (flavour === null) {
  process.stdout.write(`${SKIP_LINE}\n`);
  test.skip('end-to-end scenarios on the real blksnap module', () => undefined);
} else {
  describe(`blksnap e2e on the real ${flavour} module`, () => {
    let pool: DevicePool | null = null;
    let setupError: Error | null = null;
    let runDir = '';

    beforeAll(() => {
      try {
        const notRoot = notRootReason();
        if (notRoot) throw new Error(`a blksnap module is present but the e2e suite ${notRoot}`);
        assertCliBuilt();
        runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-e2e-run-'));
        pool = openDevicePool();
        process.stdout.write(`blksnap e2e: ${flavour} module, ${pool.source}\n`);
      } catch (err) {
        setupError = err as Error;
      }
    }, 120_000);

    afterAll(() => {
      pool?.release();
      if (runDir) fs.rmSync(runDir, { recursive: true, force: true });
    });

    registerScenarios(scenarios, async () => {
      // Every scenario fails with the setup problem rather than being skipped.
      if (setupError) throw setupError;
      const env = new RealEnvironment(pool as DevicePool, flavour, runDir);
      await env.begin();
      return env;
    }, 300_000);
  });
}
