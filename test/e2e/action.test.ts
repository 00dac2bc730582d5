// The scenario a user lives through: job 1 pulls through an empty cache and saves it layer by layer;
// job 2, on a fresh runner, is served everything from the restored cache; job 3 pulls one new image on
// the same base and uploads only what is new. After every job the daemon's config is as it was.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { blobMember, entryMembers } from '../helpers/cache-entries.js';
import { makeLayer, pushImage, type PushedImage } from '../helpers/images.js';
import { isRunning } from '../helpers/process.js';
import { hubMirror, type StepResult } from '../helpers/runner.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';
import { releaseFile } from '../helpers/release-server.js';

const MiB = 1024 * 1024;
const TOKEN = 'dckr_pat_TEST-token-7f3a9c';
// Formatted by hand, as a user's file is: it must come back byte for byte.
const USER_DAEMON_JSON =
  '{\n    "debug": false,\n    "labels": ["runner=ci"],\n    "registry-mirrors": ["https://mirror.example.invalid"]\n}\n';

describe('a cold job, a warm job and a job with a new image', { timeout: 300_000 }, () => {
  let world: World;
  let alpha: PushedImage;
  let beta: PushedImage;
  let gamma: PushedImage;

  before(async () => {
    world = await startWorld('pull-cache-e2e');
    const base = makeLayer('base', [
      { path: 'usr/lib/base.bin', bytes: 4 * MiB },
      { path: 'etc/os-release', bytes: 300 },
    ]);
    alpha = await pushImage(world.upstream.url, 'library/alpha', '1', [
      base,
      makeLayer('alpha', [{ path: 'opt/alpha.bin', bytes: 2 * MiB }]),
    ]);
    beta = await pushImage(world.upstream.url, 'someuser/beta', '1', [base, makeLayer('beta', [{ path: 'opt/beta.bin', bytes: 3 * MiB }])]);
    gamma = await pushImage(world.upstream.url, 'library/gamma', '1', [
      base,
      makeLayer('gamma', [{ path: 'opt/gamma.bin', bytes: 2 * MiB }]),
    ]);
  });
  after(() => world?.stop());

  const assertCleanPost = async (
    post: StepResult,
    runner: { dockerd: { configFile: string }; runnerTemp: string },
    registryPid: number,
  ) => {
    assert.equal(post.exitCode, 0, post.stdout);
    assert.deepEqual(post.warnings, []);
    assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), USER_DAEMON_JSON, 'daemon.json is byte-identical to the original');
    assert.ok(!isRunning(registryPid), 'the registry process is gone');
    assert.deepEqual(readdirSync(runner.runnerTemp), [], 'nothing is left in RUNNER_TEMP');
  };

  test('job 1: an empty cache pulls from upstream and saves one entry per layer, a pack and an index', async () => {
    const runner = await world.runner('job1', USER_DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ 'dockerhub-username': 'ci-bot', 'dockerhub-token': TOKEN }), async (main) => {
      assert.equal(main.exitCode, 0, main.stdout);
      assert.deepEqual(main.warnings, []);
      const info = await runner.dockerd.info();
      assert.deepEqual(
        info.RegistryConfig.Mirrors,
        [`${main.outputs.mirror}/`, 'https://mirror.example.invalid/'],
        "our mirror first, the user's kept",
      );
      await runner.pull('alpha:1');
      await runner.pull('someuser/beta:1');
    });
    assert.match(main.outputs.mirror, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(main.outputs.mirror, 'http://127.0.0.1:5000');
    assert.equal(main.outputs['restored-key'], '');
    assert.deepEqual(
      world.release.requests,
      [`/v${world.release.version}/${releaseFile(world.release.version)}`],
      'the binary came through the tool cache download',
    );
    await assertCleanPost(post, runner, hubMirror(main).pid);

    // The base layer is fetched once, for alpha, and counts for beta too (each image by its content); the total once.
    assert.match(post.summary, /\| alpha:1 \| – \| 3 blobs, 6\.0 MiB \|/);
    assert.match(post.summary, /\| someuser\/beta:1 \| – \| 3 blobs, 7\.0 MiB \|/);
    assert.match(post.summary, /\| \*\*Total\*\* \| \*\*–\*\* \| \*\*5 blobs, 9\.0 MiB\*\* \|/);
    assert.match(post.summary, /Hit rate: 0% of bytes served \(0 of 5 blobs\)/);
    // An entry per set of images that need its blobs: the shared base once, then each image with its manifest and config.
    const keys = world.cache.entries().map((e) => e.key);
    const entries = await Promise.all(keys.filter((k) => !k.includes('-index-')).map((k) => entryMembers(world.cache, k)));
    const own = (image: PushedImage) => [image.manifestDigest, image.configDigest, image.layers[1].digest].map(blobMember).sort();
    assert.deepEqual(entries.map((members) => members.sort()).sort(), [[blobMember(alpha.layers[0].digest)], own(alpha), own(beta)].sort());
    assert.equal(keys.filter((k) => k.includes('-index-')).length, 1);

    // The runner hides a masked value in everything it shows; the mask command itself is the only place it may stand.
    const mask = `::add-mask::${TOKEN}\n`;
    assert.ok(main.stdout.includes(mask) && post.stdout.includes(mask), 'the token is masked in both steps');
    const shown = [
      main.stdout.replace(mask, ''),
      main.stderr,
      post.stdout.replace(mask, ''),
      post.stderr,
      post.summary,
      JSON.stringify(main.outputs),
      JSON.stringify(main.state),
    ];
    for (const text of shown) assert.ok(!text.includes(TOKEN), `the token appears nowhere the job leaves behind: ${text}`);
  });

  test('job 2: a fresh runner restores the cache and is served every blob from it', async () => {
    const runner = await world.runner('job2', USER_DAEMON_JSON);
    const entriesBefore = world.cache.entries().length;
    let result!: { main: StepResult; post: StepResult };
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      result = await runner.job(runner.inputs(), async (main) => {
        assert.equal(main.exitCode, 0, main.stdout);
        await runner.pull('alpha:1');
        await runner.pull('someuser/beta:1');
      });
    });
    const { main, post } = result;
    assert.match(main.outputs['restored-key'], /^pull-cache-index-linux-/);
    assert.deepEqual(world.release.requests.length, 1, 'the registry binary came from the tool cache');
    assert.deepEqual(fetched, [], 'the upstream served no blob');
    assert.match(post.summary, /Hit rate: 100% of bytes served \(5 of 5 blobs\)/);
    assert.match(post.summary, /\| alpha:1 \| 3 blobs, 6\.0 MiB \| – \|/);
    assert.match(post.summary, /Saved: nothing new/);
    assert.equal(world.cache.entries().length, entriesBefore, 'nothing uploaded');
    await assertCleanPost(post, runner, hubMirror(main).pid);
  });

  test('job 3: a new image on the same base uploads only its new blobs', async () => {
    const runner = await world.runner('job3', USER_DAEMON_JSON);
    const before = new Set(world.cache.entries().map((e) => e.key));
    const { main, post } = await runner.job(runner.inputs(), async () => {
      await runner.pull('alpha:1');
      await runner.pull('gamma:1');
    });
    const added = world.cache
      .entries()
      .filter((e) => !before.has(e.key))
      .map((e) => e.key);
    const [entry, ...others] = added.filter((k) => !k.includes('-index-'));
    assert.deepEqual(others, [], 'one new entry');
    assert.deepEqual(
      (await entryMembers(world.cache, entry)).sort(),
      [gamma.manifestDigest, gamma.configDigest, gamma.layers[1].digest].map(blobMember).sort(),
      "gamma's new layer with its manifest and config",
    );
    assert.equal(added.filter((k) => k.includes('-index-')).length, 1, 'and a new index');
    assert.match(post.summary, /\| alpha:1 \| 3 blobs, 6\.0 MiB \| – \|/);
    // gamma's base layer came from the cache with alpha's pull: a hit for gamma too.
    assert.match(post.summary, /\| gamma:1 \| 1 blob, 4\.0 MiB \| 2 blobs, 2\.0 MiB \|/);
    await assertCleanPost(post, runner, hubMirror(main).pid);
  });
});
