// The step never breaks the build: whatever fails, the job goes on pulling directly, the daemon's config is
// as it was, and nothing of ours is left running. fail-on-error turns the warning into a failed step.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeLayer, pushImage } from '../helpers/images.js';
import { assertLeftAsItWas } from '../helpers/assertions.js';
import { freePort } from '../helpers/process.js';
import { startWorld, type Runner, type World } from '../helpers/world.js';
import { REGISTRY_UNDER_TEST } from '../helpers/registry-under-test.js';
import { releaseFile } from '../helpers/release-server.js';

const DAEMON_JSON = '{ "debug": true }\n';

describe('failing open', { timeout: 300_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('pull-cache-fail-open');
    await pushImage(world.upstream.url, 'library/alpha', '1', [makeLayer('alpha', [{ path: 'opt/alpha.bin', bytes: 1024 * 1024 }])]);
  });
  after(() => world?.stop());

  /** The daemon is as the user left it while the job runs: same file, no mirror live. */
  const assertDaemonUntouched = async (runner: Runner) => {
    assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), DAEMON_JSON);
    assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors ?? [], []);
  };

  test('an unreachable upstream at start and nothing cached: a warning, no mirror, the daemon untouched', async () => {
    const runner = await world.runner('no-upstream', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ upstream: `http://127.0.0.1:${await freePort()}` }), async (main) => {
      assert.equal(main.exitCode, 0);
      await assertDaemonUntouched(runner);
    });
    assert.equal(main.warnings.length, 1, main.stdout);
    assert.match(
      main.warnings[0],
      /http:\/\/127\.0\.0\.1:\d+ cannot be reached and the cache holds nothing to serve\. The job goes on pulling directly/,
    );
    assert.equal(main.outputs.mirror, '');
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('fail-on-error: true fails the step with the same message', async () => {
    const runner = await world.runner('fail-on-error', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ upstream: `http://127.0.0.1:${await freePort()}`, 'fail-on-error': 'true' }));
    assert.equal(main.exitCode, 1);
    assert.match(main.errors.join('\n'), /could not set up the cache: http:\/\/127\.0\.0\.1:\d+ cannot be reached/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('a daemon.json that is not JSON is left exactly as it is', async () => {
    const runner = await world.runner('broken-daemon-json', DAEMON_JSON);
    // Edited after the daemon started: dockerd would refuse it at its next start, and so do we.
    const broken = '{ "debug": true, // a comment dockerd would refuse\n';
    await writeFile(runner.dockerd.configFile, broken);
    const { main, post } = await runner.job(runner.inputs());
    assert.match(main.warnings.join('\n'), /daemon\.json is not valid JSON .* it was left as it is and the mirror was not set/);
    await assertLeftAsItWas(runner, broken, main, post);
  });

  test('a registry download with the wrong checksum is never run', async () => {
    const runner = await world.runner('bad-checksum', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ 'registry-sha256': '0'.repeat(64) }), undefined, {
      RUNNER_TOOL_CACHE: await mkdtemp(join(world.dir, 'empty-tool-cache-')),
    });
    assert.ok(
      main.warnings
        .join('\n')
        .includes(`checksum mismatch for ${world.release.baseUrl}/v${world.release.version}/${releaseFile(world.release.version)}`),
      main.warnings.join('\n'),
    );
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('a cache service that is down: the job still pulls through the mirror, and post only warns', async () => {
    const runner = await world.runner('no-cache-service', DAEMON_JSON);
    const deadService = `http://127.0.0.1:${await freePort()}/`;
    const { main, post } = await runner.job(
      runner.inputs({ 'registry-path': REGISTRY_UNDER_TEST.binary() }),
      async (main) => {
        assert.equal(main.exitCode, 0);
        assert.match(main.outputs.mirror, /^http:\/\/127\.0\.0\.1:\d+$/);
        await runner.pull('alpha:1');
      },
      { ACTIONS_RESULTS_URL: deadService },
    );
    assert.equal(post.exitCode, 0, post.stdout);
    assert.match(post.summary, /\| alpha:1 \| – \| 2 blobs/);
    assert.match(post.summary, /Saved: nothing\.\n- Not saved this run: 3 blobs \(the cache service did not take pull-cache-/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('an unreachable upstream at start with a warm cache: the cached images still pull, offline', async () => {
    const warm = await world.runner('offline-warm-up', DAEMON_JSON);
    await warm.job(warm.inputs(), () => warm.pull('alpha:1'));
    const runner = await world.runner('offline', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ upstream: `http://127.0.0.1:${await freePort()}` }), async (main) => {
      assert.equal(main.exitCode, 0, main.stdout);
      assert.match(main.outputs.mirror, /^http:\/\/127\.0\.0\.1:\d+$/);
      await runner.pull('alpha:1');
    });
    assert.match(main.warnings.join('\n'), /cannot be reached: the mirror serves what the cache holds \(1 image\), offline/);
    assert.match(post.summary, /\| alpha:1 \| 2 blobs, [\d.]+ MiB \| – \|/);
    assert.match(post.summary, /could not be reached when the job started: the cache served what it holds, offline/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });
});
