/**
 * Registers the shared scenarios as jest tests for one environment. Each test
 * gets a fresh environment (its own transcript); on failure the message is the
 * assertion followed by every command run and what it answered.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ScenarioFailure } from './checks';
import type { Environment } from './env';
import type { Scenario } from './scenarios';

/** Builds the failure message a reader needs: what went wrong, then the whole transcript. */
export function withTranscript(err: unknown, env: Environment, scenario: Scenario): Error {
  // An assertion's message says it all; anything else (a bug in a helper, a
  // spawn failure) keeps its stack.
  const what = err instanceof ScenarioFailure ? err.message : err instanceof Error ? err.stack ?? err.message : String(err);
  const out = new Error(
    `scenario "${scenario.name}" failed on the ${env.name} kernel (${env.flavour}):\n${what}\n\n` +
    `commands run and the kernel's answers:\n${env.transcript.format()}`,
  );
  out.stack = out.message;
  return out;
}

/**
 * BLKSNAP_E2E_TRANSCRIPTS=DIR keeps every scenario's transcript (passed or
 * failed) as DIR/<environment>-<scenario>.txt, to compare kernels or attach
 * to a bug report.
 */
function saveTranscript(env: Environment, scenario: Scenario, outcome: string): void {
  const dir = process.env.BLKSNAP_E2E_TRANSCRIPTS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  const slug = scenario.name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);
  fs.writeFileSync(
    path.join(dir, `${env.name}-${env.flavour}-${slug}.txt`),
    `${scenario.name}\n${env.name} kernel, ${env.flavour}: ${outcome}\n\n${env.transcript.format()}\n`,
  );
}

export function registerScenarios(scenarios: Scenario[], makeEnv: () => Promise<Environment>, timeoutMs: number): void {
  for (const scenario of scenarios) {
    test(scenario.name, async () => {
      const env = await makeEnv();
      let failure: Error | null = null;
      try {
        await scenario.run(env);
        await env.afterScenario();
      } catch (err) {
        failure = withTranscript(err, env, scenario);
      }
      await env.cleanup();
      saveTranscript(env, scenario, failure ? `FAILED\n${failure.message.split('\n')[1] ?? ''}` : 'passed');
      if (failure) throw failure;
    }, timeoutMs);
  }
}
