// A self-hosted runner's life: many main/post cycles on one machine, one daemon, one RUNNER_TEMP. Nothing
// accumulates: no process, no listening port, no file in RUNNER_TEMP, no growth of the daemon's config.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { hubMirror } from '../helpers/runner.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import { isRunning } from '../helpers/process.js';
import { startWorld, type World } from '../helpers/world.js';

const CYCLES = Number(process.env.SOAK_CYCLES ?? 50);
const DAEMON_JSON = '{\n  "labels": ["runner=self-hosted"]\n}\n';
let world: World;

before(async () => {
  world = await startWorld('pull-cache-soak');
  await pushImage(world.upstream.url, 'library/soak', '1', [makeLayer('soak', [{ path: 'opt/soak.bin', bytes: 256 * 1024 }])]);
});
after(() => world?.stop());

async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

test(`${CYCLES} main/post cycles on one self-hosted runner leave nothing behind`, { timeout: 900_000 }, async (t) => {
  const runner = await world.runner('self-hosted', DAEMON_JSON);
  const started = Date.now();
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const { main, post } = await runner.job(runner.inputs({ 'cache-key': 'soak' }), async () => {
      if (cycle % 10 === 0) await runner.dockerd.docker(['rmi', '-f', 'soak:1']); // now and then a real pull again
      await runner.pull('soak:1');
    });
    assert.equal(main.exitCode, 0);
    assert.equal(post.exitCode, 0);
    assert.deepEqual([...main.warnings, ...post.warnings], [], `cycle ${cycle}`);
    const registry = hubMirror(main);
    assert.ok(!isRunning(registry.pid), `cycle ${cycle}: registry stopped`);
    assert.ok(await portIsFree(registry.port), `cycle ${cycle}: port ${registry.port} released`);
    assert.deepEqual(await readdir(runner.runnerTemp), [], `cycle ${cycle}: RUNNER_TEMP empty`);
    assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), DAEMON_JSON, `cycle ${cycle}: daemon.json as it was`);
  }
  const ours = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  const leftovers = [];
  for (const pid of ours) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(runner.runnerTemp)) leftovers.push(cmdline.replace(/\0/g, ' '));
  }
  assert.deepEqual(leftovers, [], 'no process of ours is left');
  t.diagnostic(`${CYCLES} cycles in ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
