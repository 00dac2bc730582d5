// What must hold after every post step, whatever went wrong in the job.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { isRunning } from './process.js';
import { mirrorsOf, type StepResult } from './runner.js';
import type { Runner } from './world.js';

/** The daemon's config byte for byte, no mirror live, every mirror stopped, nothing left in RUNNER_TEMP. */
export async function assertLeftAsItWas(runner: Runner, daemonJson: string, main: StepResult, post: StepResult, runnerTemp = runner.runnerTemp): Promise<void> {
  assert.equal(post.exitCode, 0, post.stdout);
  assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), daemonJson, 'daemon.json byte for byte');
  assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors ?? [], [], 'no mirror left live');
  for (const mirror of mirrorsOf(main)) assert.ok(!isRunning(mirror.pid), `the ${mirror.registry} mirror is stopped`);
  assert.deepEqual(await readdir(runnerTemp), [], 'nothing left in RUNNER_TEMP');
}
