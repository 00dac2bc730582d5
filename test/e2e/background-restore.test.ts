// The cache restores behind the mirrors while the job runs. A job whose first step pulls right after the action
// waits for the image it asks for and gets it from the cache; a job that ends before the restore saves nothing and
// leaves the cache as it was; an entry that fails its check while others are still coming leaves its image to the
// upstream and the rest to the cache. The cache service stalls entry lookups (never the index's) to make the
// restore slow enough to race.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertLeftAsItWas, workersOf } from '../helpers/assertions.js';
import { entryHolding, withBlobReplaced } from '../helpers/cache-entries.js';
import { makeLayer, pushImage, type PushedImage } from '../helpers/images.js';
import { isRunning } from '../helpers/process.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{\n  "debug": false\n}\n';
/** Every entry's lookup, not the index's. */
const ENTRY_LOOKUPS = { methods: ['GetCacheEntryDownloadURL'], keys: /^pull-cache-(?!index-)/ };

describe('the cache restores in the background', { timeout: 300_000 }, () => {
  let world: World;
  let beta: PushedImage;

  before(async () => {
    world = await startWorld('pull-cache-background');
    const base = makeLayer('bg-base', [{ path: 'usr/lib/base.bin', bytes: 3 * MiB }]);
    await pushImage(world.upstream.url, 'library/alpha', '1', [base, makeLayer('bg-alpha', [{ path: 'opt/alpha.bin', bytes: 2 * MiB }])]);
    beta = await pushImage(world.upstream.url, 'library/beta', '1', [
      base,
      makeLayer('bg-beta', [{ path: 'opt/beta.bin', bytes: 2 * MiB }]),
    ]);
    const runner = await world.runner('fill', DAEMON_JSON);
    const { post } = await runner.job(runner.inputs(), async () => {
      await runner.pull('alpha:1');
      await runner.pull('beta:1');
    });
    assert.match(post.summary, /Saved: \d+ new entr(y|ies)/);
  });
  after(() => world?.stop());

  test('a pull right after the main step waits for its image and is served from the cache', async () => {
    const stall = 5_000;
    world.cache.setFault({ ...ENTRY_LOOKUPS, hangMs: stall });
    const runner = await world.runner('race', DAEMON_JSON);
    let result!: Awaited<ReturnType<typeof runner.job>>;
    try {
      const fetched = await upstreamBlobFetches(world.upstream, async () => {
        result = await runner.job(runner.inputs({ prefetch: 'false' }), async (main) => {
          assert.equal(main.exitCode, 0, main.stdout);
          assert.ok(main.ms < stall, `main returned in ${main.ms} ms, before the entries (stalled ${stall} ms) came in`);
          assert.match(main.stdout, /Restoring 2 images \(.+ in \d+ cache entries\) in the background/);
          await runner.pull('alpha:1');
        });
      });
      assert.deepEqual(fetched, [], 'the upstream served no blob: the pull waited for the restore');
    } finally {
      world.cache.setFault(null);
    }
    const { main, post } = result;
    assert.deepEqual(post.warnings, []);
    assert.match(post.summary, /\| alpha:1 \| 3 blobs, 5\.0 MiB \| – \|/);
    assert.match(post.summary, /Hit rate: 100% of bytes served/);
    assert.match(post.summary, /Restored in the background: 2 images in [\d.]+ s after the main step\./);
    assert.match(
      post.summary,
      /Asked for before the restore had them in place .*: 1 image:\n {2}- alpha:1: asked at [\d.]+ s, in place at [\d.]+ s; \d+% of the restore was done when asked\./,
    );
    assert.match(post.summary, /Saved: nothing new/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('a job that ends before the restore does saves nothing, and the next job restores the cache as it was', async () => {
    const indexesBefore = world.cache.entries().filter((e) => e.key.includes('-index-')).length;
    world.cache.setFault({ ...ENTRY_LOOKUPS, hangMs: 60_000 });
    const runner = await world.runner('cut-short', DAEMON_JSON);
    let workers: Record<string, number> = {};
    try {
      const { main, post } = await runner.job(runner.inputs({ 'cache-timeout': '3', prefetch: 'false' }), async (main) => {
        workers = workersOf(main);
        assert.ok(
          isRunning(workers['restore worker']) && isRunning(workers["mirrors' front"]),
          'the restore is under way when the job ends',
        );
        await runner.pull('beta:1'); // waits for the restore until cache-timeout, then goes upstream
      });
      assert.match(post.summary, /The background restore did not finish within cache-timeout: nothing was saved/);
      assert.doesNotMatch(post.summary, /- Saved:/);
      assert.equal(world.cache.entries().filter((e) => e.key.includes('-index-')).length, indexesBefore, 'no new index');
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      world.cache.setFault(null);
    }

    const next = await world.runner('after-cut-short', DAEMON_JSON);
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      const { post } = await next.job(next.inputs({ prefetch: 'false' }), async () => {
        await next.pull('alpha:1');
        await next.pull('beta:1');
      });
      assert.match(post.summary, /Hit rate: 100% of bytes served \(5 of 5 blobs\)/);
    });
    assert.deepEqual(fetched, []);
  });

  test("an entry that fails its check mid-restore: its image's other blobs still come from the cache, the bad one from the upstream", async () => {
    // beta's own entry (its layer, config and manifest) holds other bytes for its layer: the restore drops that blob
    // while the rest comes in.
    const betaLayer = await entryHolding(world.cache, 'pull-cache', beta.layers[1].digest);
    const original = await world.cache.entryContent(betaLayer);
    await world.cache.replaceEntryContent(
      betaLayer,
      await withBlobReplaced(world.cache, betaLayer, beta.layers[1].digest, Buffer.from('not the layer'), join(world.dir, 'damaged')),
    );
    world.cache.setFault({ ...ENTRY_LOOKUPS, hangMs: 1_500 });
    const runner = await world.runner('damaged', DAEMON_JSON);
    try {
      const fetched = await upstreamBlobFetches(world.upstream, async () => {
        const { main, post } = await runner.job(runner.inputs({ prefetch: 'false' }), async () => {
          await runner.pull('beta:1');
          await runner.pull('alpha:1');
        });
        assert.match(post.summary, /\| beta:1 \| 2 blobs, 3\.0 MiB \| 1 blob, 2\.0 MiB \|/);
        assert.match(post.summary, /\| alpha:1 \| 3 blobs, 5\.0 MiB \| – \|/);
        assert.match(post.summary, /1 blob failed the digest check and dropped: fetched again on demand/);
        await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
      });
      assert.deepEqual(
        fetched.map((f) => f.path.split('/').pop()),
        [beta.layers[1].digest],
        'only the bad blob came from the upstream',
      );
    } finally {
      world.cache.setFault(null);
      await world.cache.replaceEntryContent(betaLayer, original);
    }
  });
});
