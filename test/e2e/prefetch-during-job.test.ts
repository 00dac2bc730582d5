// Prefetch: on a warm runner, what the last run pulled is pulled in the background right after main, so the
// job finds it present. The report tells prefetched-and-used from prefetched-for-nothing, and a prefetch
// killed half-way breaks nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { formatBytes } from '../../src/report.js';
import { assertLeftAsItWas } from '../helpers/assertions.js';
import { makeConfig, makeLayer, pushImage } from '../helpers/images.js';
import { waitFor } from '../helpers/process.js';
import { startWorld, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{}\n';

const present = async (runner: Awaited<ReturnType<World['runner']>>, image: string) =>
  (await runner.dockerd.docker(['image', 'inspect', image])).code === 0;

describe('prefetch', { timeout: 300_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('pull-cache-prefetch');
    const base = makeLayer('pf-base', [{ path: 'usr/base.bin', bytes: 4 * MiB }]);
    await pushImage(world.upstream.url, 'library/alpha', '1', [base, makeLayer('pf-alpha', [{ path: 'opt/alpha.bin', bytes: 3 * MiB }])]);
    await pushImage(world.upstream.url, 'library/beta', '1', [base, makeLayer('pf-beta', [{ path: 'opt/beta.bin', bytes: 3 * MiB }])]);
    const cold = await world.runner('cold', DAEMON_JSON);
    await cold.job(cold.inputs(), async () => {
      await cold.pull('alpha:1');
      await cold.pull('beta:1');
    });
  });
  after(() => world?.stop());

  test('a warm job finds what the last run pulled already present; the report tells used from unused', async () => {
    const runner = await world.runner('warm', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs(), async (main) => {
      assert.match(main.stdout, /Prefetching in the background what the last run pulled: alpha:1, beta:1/);
      // The job's own first steps (checkout, npm ci, ...) run meanwhile.
      await waitFor(
        'the prefetch to bring alpha:1 and beta:1',
        async () => (await present(runner, 'alpha:1')) && (await present(runner, 'beta:1')),
        60_000,
        200,
      );
      await runner.pull('alpha:1');
    });
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.match(post.summary, /Prefetched in the background: 2 images; used by the job: alpha:1\./);
    assert.match(post.summary, /\| beta:1 \| \d+ blobs, [\d.]+ MiB \| – \| [\d.]+ s \|/);
    assert.match(post.summary, /Hit rate: 100%/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('a container the job runs counts as using the prefetched image', async () => {
    const runner = await world.runner('warm-run', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs(), async () => {
      await waitFor('the prefetch', async () => (await present(runner, 'alpha:1')) && (await present(runner, 'beta:1')), 60_000, 200);
      const created = await runner.dockerd.docker(['create', 'beta:1', 'true']);
      assert.equal(created.code, 0, created.stderr);
    });
    assert.match(post.summary, /used by the job: beta:1\./);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('a pull the job starts while the prefetch is still at it joins it, and counts as used', async () => {
    const runner = await world.runner('joins', DAEMON_JSON);
    const { post } = await runner.job(runner.inputs(), async () => {
      await runner.pull('beta:1');
    });
    assert.match(post.summary, /used by the job: beta:1\./);
  });

  test('a prefetch killed half-way breaks nothing', async () => {
    const runner = await world.runner('killed', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs(), async (main) => {
      process.kill(-(JSON.parse(main.state.prefetch) as { pid: number }).pid, 'SIGKILL');
      await runner.pull('alpha:1');
    });
    assert.deepEqual(post.warnings, []);
    assert.match(post.summary, /\| alpha:1 \| \d+ blobs?, [\d.]+ MiB \| – \|/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('prefetch: false prefetches nothing', async () => {
    const runner = await world.runner('off', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ prefetch: 'false' }), async () => {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(await present(runner, 'alpha:1'), false);
    });
    assert.equal(main.state.prefetch, undefined);
    assert.doesNotMatch(post.summary, /Prefetched/);
  });
});

describe("the report tells the job's images from the prefetch's", { timeout: 300_000 }, () => {
  let world: World;
  const layer = (name: string, bytes: number) => makeLayer(`report-${name}`, [{ path: `opt/${name}.bin`, bytes }]);
  const [base, dep, app2, app3, tool] = [
    layer('base', 2 * MiB),
    layer('dep', 2 * MiB),
    layer('app2', 2 * MiB),
    layer('app3', MiB),
    layer('tool', MiB / 2),
  ];

  before(async () => {
    world = await startWorld('pull-cache-prefetch-report');
    await pushImage(world.upstream.url, 'library/base', '1', [base]);
    await pushImage(world.upstream.url, 'library/app', '2', [base, dep, app2]);
    await pushImage(world.upstream.url, 'library/app', '3', [base, dep, app2, app3]);
    await pushImage(world.upstream.url, 'someuser/tool', 'latest', [tool]);
    const lastRun = await world.runner('last-run', DAEMON_JSON);
    await lastRun.job(lastRun.inputs(), async () => {
      for (const image of ['base:1', 'app:2', 'someuser/tool:latest']) await lastRun.pull(image);
    });
  });
  after(() => world?.stop());

  test('a job that pulls only app:3 finds app:3 alone in its figures, 3 of its 5 blobs from the cache; the prefetch apart', async () => {
    const runner = await world.runner('app3', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs(), async () => {
      const all = ['base:1', 'app:2', 'someuser/tool:latest'];
      await waitFor(
        'the prefetch of what the last run pulled',
        async () => (await Promise.all(all.map((i) => present(runner, i)))).every(Boolean),
        60_000,
        200,
      );
      await runner.pull('app:3');
    });
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    const fromCache = formatBytes(base.size + dep.size + app2.size);
    const fromHub = formatBytes(makeConfig([base, dep, app2, app3]).length + app3.size);
    const jobTable = post.summary.slice(0, post.summary.indexOf('Hit rate:'));
    assert.ok(jobTable.includes(`| app:3 | 3 blobs, ${fromCache} | 2 blobs, ${fromHub} |`), post.summary);
    assert.equal(jobTable.match(/^\| (?!Image|---|\*\*Total)/gm)?.length, 1, post.summary);
    assert.match(post.summary, /Hit rate: 86% of bytes served \(3 of 5 blobs\)\./);
    assert.match(post.summary, /Prefetched and not used by the job \(not in the figures above\):/);
    for (const image of ['base:1', 'app:2', 'someuser/tool:latest'])
      assert.match(post.summary, new RegExp(`\\| ${image} \\| \\d+ blobs?, [\\d.]+ [KM]iB \\| – \\| [\\d.]+ s \\|`));
    assert.match(post.summary, /Prefetched in the background: 3 images; used by the job: none\./);
    assert.doesNotMatch(post.summary, /turns it off/);
  });
});
