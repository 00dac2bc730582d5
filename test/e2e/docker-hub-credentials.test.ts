// Against a Docker Hub stand-in (token auth, private repositories, rate limits): credentials reach the
// proxy, a refused token is one clear warning, private images stay out of the saved cache unless opted in,
// the report shows the pull quota, a warm cache makes the rate limit go away, and the token is nowhere.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertSecretNowhere } from '../helpers/assertions.js';
import { cacheHolds } from '../helpers/cache-entries.js';
import { makeLayer, type PushedImage } from '../helpers/images.js';
import { startWorld, type World } from '../helpers/world.js';

const KiB = 1024;
const USER = 'ci-bot';
const TOKEN = 'dckr_pat_AUDIT-7Qx9-recognisable';

describe('Docker Hub as it really behaves', { timeout: 300_000 }, () => {
  let world: World;
  let alpha: PushedImage;
  let secret: PushedImage;
  const limited: PushedImage[] = [];

  before(async () => {
    world = await startWorld('pull-cache-hub', {
      hub: { users: { [USER]: TOKEN }, privateRepositories: [`${USER}/secret`], anonymousBudget: 1000, authenticatedBudget: 2000 },
    });
    const hub = world.hub!;
    const base = makeLayer('hub-base', [{ path: 'usr/lib/base.bin', bytes: 1200 * KiB }]);
    alpha = await hub.pushImage('library/alpha', '1', [base, makeLayer('hub-alpha', [{ path: 'opt/alpha.bin', bytes: 1100 * KiB }])]);
    secret = await hub.pushImage(`${USER}/secret`, '1', [base, makeLayer('hub-secret', [{ path: 'opt/secret.bin', bytes: 1100 * KiB }])]);
    for (const n of [1, 2, 3])
      limited.push(await hub.pushImage(`library/r${n}`, '1', [makeLayer(`hub-r${n}`, [{ path: `opt/r${n}.bin`, bytes: 200 * KiB }])]));
  });
  after(() => world?.stop());

  const credentials = { 'dockerhub-username': USER, 'dockerhub-token': TOKEN };

  test('with credentials, a private image pulls through the cache but is not saved; the quota is reported', async () => {
    const runner = await world.runner('private-default');
    const { main, post } = await runner.job(runner.inputs({ ...credentials, 'cache-key': 'private-default' }), async () => {
      await runner.pull('alpha:1');
      await runner.pull(`${USER}/secret:1`);
    });
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.match(
      post.summary,
      new RegExp(`\\| ${USER}/secret:1 \\| – \\| 3 blobs`),
      'served through the cache (its base layer, fetched with alpha:1, counts for it too)',
    );
    const saved = (digest: string) => cacheHolds(world.cache, 'private-default', digest);
    assert.ok(await saved(alpha.layers[1].digest), 'the public image is saved');
    assert.ok(await saved(alpha.layers[0].digest), 'with the base it shares with the private one');
    assert.ok(!(await saved(secret.layers[1].digest)), 'the private layer is not saved');
    assert.ok(!(await saved(secret.configDigest)), 'nor its config');
    assert.match(post.summary, new RegExp(`Not saved: 1 image anonymous users cannot pull \\(${USER}/secret:1\\)`));
    assert.match(post.summary, new RegExp(`Docker Hub|pull quota: \\d+ of 2000 pulls left for ${USER} \\(per 6 hours\\)`));
  });

  test('cache-private: true saves the private image too', async () => {
    const runner = await world.runner('private-opt-in');
    const { post } = await runner.job(
      runner.inputs({ ...credentials, 'cache-key': 'private-opt-in', 'cache-private': 'true' }),
      async () => {
        await runner.pull('alpha:1');
        await runner.pull(`${USER}/secret:1`);
      },
    );
    assert.ok(await cacheHolds(world.cache, 'private-opt-in', secret.layers[1].digest));
    assert.doesNotMatch(post.summary, /Not saved: .* anonymous users cannot pull/);
  });

  test('a refused token is one warning naming the inputs; public images still come through the cache', async () => {
    const runner = await world.runner('wrong-token');
    const { main, post } = await runner.job(
      runner.inputs({ 'dockerhub-username': USER, 'dockerhub-token': 'dckr_pat_wrong', 'cache-key': 'wrong-token' }),
      async () => {
        await runner.pull('alpha:1');
      },
    );
    assert.equal(main.warnings.length, 1, main.stdout);
    assert.match(main.warnings[0], new RegExp(`refused dockerhub-username "${USER}" with the given dockerhub-token: check both inputs`));
    assert.match(post.summary, /\| alpha:1 \| – \| 3 blobs/);
    assert.match(post.summary, /pull quota: \d+ of 1000 pulls left for anonymous pulls from this runner/);
  });

  test('a job that pulls more images than the rate limit allows fails without the cache and succeeds on a warm one', async () => {
    const hub = world.hub!;
    const refs = limited.map((i) => `${i.repository.replace(/^library\//, '')}:1`);
    const warm = await world.runner('limit-warm-up');
    await warm.job(warm.inputs({ 'cache-key': 'limits' }), async () => {
      for (const ref of refs) await warm.pull(ref);
    });

    hub.resetCounts();
    hub.setBudget('anonymous', 2);
    const direct = await world.runner('limit-direct');
    const outcomes = [];
    for (const image of limited) outcomes.push(await direct.dockerd.docker(['pull', `${hub.host}/${image.repository}:1`]));
    assert.deepEqual(
      outcomes.map((o) => o.code),
      [0, 0, 1],
      'without the cache the third pull is refused',
    );
    assert.match(outcomes[2].stderr, /toomanyrequests/);

    hub.resetCounts();
    const cached = await world.runner('limit-cached');
    const { post } = await cached.job(cached.inputs({ 'cache-key': 'limits' }), async () => {
      for (const ref of refs) await cached.pull(ref);
    });
    assert.equal(hub.manifestGets(), 0, 'a warm job spends no pull: tags are checked with HEAD');
    assert.match(post.summary, /Hit rate: 100%/);
    hub.setBudget('anonymous', 1000);
  });

  test('the token appears nowhere the job leaves behind, in plain or base64 form', async () => {
    const runner = await world.runner('audit');
    await assertSecretNowhere(world, runner, { user: USER, token: TOKEN }, runner.inputs({ ...credentials, 'cache-key': 'audit' }), () =>
      runner.pull('alpha:1'),
    );
  });
});
