// What must hold after every post step, whatever went wrong in the job.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { isRunning } from './process.js';
import type { StepResult } from './runner.js';
import type { Runner } from './world.js';

/** The daemon's config byte for byte, no mirror live, the registry stopped, nothing left in RUNNER_TEMP. */
export async function assertLeftAsItWas(runner: Runner, daemonJson: string, main: StepResult, post: StepResult, runnerTemp = runner.runnerTemp): Promise<void> {
  assert.equal(post.exitCode, 0, post.stdout);
  assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), daemonJson, 'daemon.json byte for byte');
  assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors ?? [], [], 'no mirror left live');
  const registry = main.state.registry ? (JSON.parse(main.state.registry) as { pid: number }) : undefined;
  if (registry) assert.ok(!isRunning(registry.pid), 'the registry is stopped');
  assert.deepEqual(await readdir(runnerTemp), [], 'nothing left in RUNNER_TEMP');
}
