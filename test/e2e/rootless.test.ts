// Rootless Docker: the runner user's own dockerd, with its daemon.json under ~/.config/docker and no --config-file.
// The action runs as that user (no sudo on this machine's nobody) with daemon-config naming that file: it finds the
// daemon by its rootless default, writes the file as the user, reloads the daemon with SIGHUP, which the user may
// send to its own process, and puts the file back; its registries.conf drop-in goes in the user's
// ~/.config/containers. Nothing it leaves belongs to root. See helpers/rootless.ts for what differs from RootlessKit.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeLayer, pushImage } from '../helpers/images.js';
import { hubMirror, runStep, type StepOptions } from '../helpers/runner.js';
import { NOBODY, rootlessUser, startRootlessDockerd, type RootlessDockerd, type RootlessUser } from '../helpers/rootless.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

describe("rootless Docker: the action as the runner user, with the user's own dockerd", { timeout: 300_000 }, () => {
  let world: World;
  const users: { user: RootlessUser; dockerd: RootlessDockerd }[] = [];

  before(async () => {
    world = await startWorld('pull-cache-rootless');
    await pushImage(world.upstream.url, 'library/alpine', '1', [makeLayer('rootless-alpine', [{ path: 'bin/sh', bytes: 512 * 1024 }])]);
  });
  after(async () => {
    for (const { user, dockerd } of users) {
      await dockerd.stop().catch(() => {});
      if (!process.env.KEEP_TEST_DIRS) await user.remove();
    }
    await world?.stop();
  });

  /** A fresh user with a fresh rootless daemon, and the step options that run the action as that user. */
  async function rootlessRunner(name: string, ownNetwork = false) {
    const user = await rootlessUser();
    const dockerd = await startRootlessDockerd(user, { ownNetwork });
    users.push({ user, dockerd });
    const steps = join(user.base, 'steps');
    await user.stepFiles(steps);
    const options: StepOptions = {
      inputs: {
        upstream: world.upstream.url,
        'daemon-config': dockerd.configFile,
        'registry-download-url': world.release.baseUrl,
        'registry-sha256': world.release.sha256,
        prefetch: 'false',
        'cache-key': 'rootless',
      },
      dir: steps,
      wrap: user.as,
      env: {
        ...world.cache.env,
        DOCKER_HOST: dockerd.host,
        HOME: user.home,
        XDG_RUNTIME_DIR: user.runtimeDir,
        RUNNER_TEMP: user.runnerTemp,
        RUNNER_TOOL_CACHE: user.toolCache,
        GITHUB_WORKSPACE: user.home,
        GITHUB_RUN_ID: name,
        GITHUB_RUN_ATTEMPT: '1',
      },
    };
    return { user, dockerd, options };
  }

  /** A job pulling alpine:1 on a fresh rootless runner; the action's steps run as its user. */
  async function job(name: string) {
    const { user, dockerd, options } = await rootlessRunner(name);
    const { runnerTemp } = user;
    const main = await runStep('main', options, {});
    assert.deepEqual(main.warnings, [], main.stdout);
    const mirror = hubMirror(main).url;
    assert.equal((await stat(dockerd.configFile)).uid, NOBODY, "daemon.json is the user's");
    assert.deepEqual(JSON.parse(await readFile(dockerd.configFile, 'utf8'))['registry-mirrors'], [mirror]);
    assert.deepEqual(await dockerd.mirrors(), [`${mirror}/`], "reloaded by the user's SIGHUP");
    assert.equal(
      main.outputs['registries-conf'],
      join(user.home, '.config', 'containers', 'registries.conf.d', `${(await readdir(runnerTemp))[0]}.conf`),
      "the drop-in in the user's config",
    );
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      const pulled = await dockerd.docker(['pull', 'alpine:1']);
      assert.equal(pulled.code, 0, pulled.stderr);
    });
    const post = await runStep('post', options, main.state);
    assert.equal(post.exitCode, 0);
    assert.deepEqual(post.warnings, [], post.stdout);
    assert.ok(!existsSync(dockerd.configFile), 'there was no daemon.json: there is none again');
    assert.deepEqual(await dockerd.mirrors(), [], 'no mirror live');
    assert.deepEqual(await readdir(runnerTemp), []);
    assert.ok(!existsSync(join(user.home, '.config', 'containers')), 'the drop-in and the directories made for it are gone');
    assert.deepEqual(await user.notOwned(), [], "nothing of the user's belongs to anyone else");
    return { post, fetched: fetched.length };
  }

  test("cold: mirror in the user's daemon.json, live after the user's reload, the pull through it; all put back", async () => {
    const { post, fetched } = await job('rootless-cold');
    assert.ok(fetched > 0);
    assert.match(post.summary, /\| alpine:1 \| – \| 2 blobs, /);
    assert.match(post.summary, /Saved: \d+ new entr/);
  });

  test('a rootless daemon in a network namespace of its own (slirp4netns) cannot reach the mirror: its config is left alone, with a warning', async () => {
    const { user, dockerd, options } = await rootlessRunner('rootless-own-network', true);
    const main = await runStep('main', options, {});
    assert.equal(main.warnings.length, 1, main.stdout);
    assert.match(
      main.warnings[0],
      new RegExp(
        `dockerd \\(pid ${dockerd.pid}\\) runs in a network namespace of its own, as rootless Docker's RootlessKit makes with slirp4netns: http://127\\.0\\.0\\.1:\\d+ is out of its reach, so its config was left alone`,
      ),
    );
    assert.ok(!existsSync(dockerd.configFile));
    assert.deepEqual(await dockerd.mirrors(), []);
    const post = await runStep('post', options, main.state);
    assert.equal(post.exitCode, 0);
    assert.deepEqual(await readdir(user.runnerTemp), []);
    assert.deepEqual(await user.notOwned(), []);
  });

  test("warm: another user's fresh rootless daemon gets every blob from the cache", async () => {
    const { post, fetched } = await job('rootless-warm');
    assert.equal(fetched, 0);
    assert.match(post.summary, /Hit rate: 100% of bytes served/);
  });
});
