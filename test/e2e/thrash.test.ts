// Thrash (issue 23): a repository's Actions cache over its size limit evicts the least recently used entries, so an
// entry a job saved minutes ago can be gone by the next job. Uploading it again would only push out another entry
// and be evicted in turn. The next job says so, with the figures and the max-size to set, and does not upload what
// was evicted in the last day; the jobs after it that day leave it out too. The images still work: what the cache
// lacks comes from the upstream. Entries are deleted behind the action's back in the stand-in cache service, as
// GitHub's eviction would.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { entryHolding, entryMembers } from '../helpers/cache-entries.js';
import { makeLayer, pushImage, type PushedImage } from '../helpers/images.js';
import type { StepResult } from '../helpers/runner.js';
import { startWorld, upstreamBlobFetches, type Runner, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{\n  "debug": false\n}\n';
const KEY = 'thrash';

describe('entries evicted behind the action’s back, days before GitHub would for age', { timeout: 600_000 }, () => {
  let world: World;
  let alpha: PushedImage;

  before(async () => {
    world = await startWorld('pull-cache-thrash');
    // Two images on one base: the base is an entry, alpha's own layer (with its manifest and config) another.
    const base = makeLayer('thrash-base', [{ path: 'usr/lib/base.bin', bytes: 3 * MiB }]);
    alpha = await pushImage(world.upstream.url, 'library/alpha', '1', [
      base,
      makeLayer('thrash-own', [{ path: 'opt/alpha.bin', bytes: 2 * MiB }]),
    ]);
    await pushImage(world.upstream.url, 'library/beta', '1', [base, makeLayer('thrash-beta', [{ path: 'opt/beta.txt', bytes: 1024 }])]);
  });
  after(() => world?.stop());

  /** A job that pulls alpha:1 and beta:1; the entries it asked the service to create, and the blobs the upstream served. */
  async function job(runner: Runner) {
    const from = world.cache.calls.length;
    let result!: { main: StepResult; post: StepResult };
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      result = await runner.job(runner.inputs({ 'cache-key': KEY }), async () => {
        await runner.pull('alpha:1');
        await runner.pull('beta:1');
      });
    });
    const creates = world.cache.calls.slice(from).filter((c) => c.call === 'CreateCacheEntry');
    return { ...result, creates: creates.map((c) => c.key), fetched: fetched.map((l) => l.path.split('/blobs/')[1]) };
  }

  test('the next job reports the thrash with its figures and uploads none of it again; nor does the one after', async () => {
    const cold = await job(await world.runner('cold', DAEMON_JSON));
    assert.deepEqual(cold.post.warnings, []);
    const ownKey = await entryHolding(world.cache, KEY, alpha.layers[1].digest);
    assert.ok(cold.creates.includes(ownKey), `the cold job saved ${ownKey}: ${cold.creates.join(', ')}`);
    const evictedBlobs = (await entryMembers(world.cache, ownKey)).map((m) => `sha256:${m.split('/').at(-2)}`);

    // The repository's cache, over its size limit, evicts the entry of alpha's own layer.
    world.cache.deleteEntry(ownKey);

    const next = await job(await world.runner('next', DAEMON_JSON));
    assert.ok(next.fetched.includes(alpha.layers[1].digest), 'the evicted layer came from the upstream');
    for (const d of next.fetched) assert.ok(evictedBlobs.includes(d), `${d}: only what the evicted entry held came from the upstream`);
    assert.match(
      next.post.summary,
      /- ⚠️ Evicted early: 1 entry \(2\.0 MiB\) this cache saved or restored in the last day was gone: the repository's Actions cache is over its size limit, and GitHub evicts the least recently used entries first \(unused ones only after 7 days\)\. Their blobs are not saved again until \d{4}-\d\d-\d\d \d\d:\d\d UTC\. Set `max-size: 3MiB` or less \(what of this cache survived, 3\.0 MiB; it is 2\.00 GiB now\), or make room in the repository's Actions cache\./,
    );
    assert.match(
      next.post.summary,
      /- Not saved again until \d{4}-\d\d-\d\d \d\d:\d\d UTC: \d blobs? \(2\.0 MiB\) of entries evicted early;/,
    );
    assert.deepEqual(
      next.creates.filter((key) => !key.startsWith(`${KEY}-index-`)),
      [],
      'no entry created: the evicted one is not uploaded again',
    );
    assert.equal(next.creates.length, 1, 'one index, which records the eviction');
    assert.ok(!world.cache.entries().some((e) => e.key === ownKey));

    // Later the same day: the index says what was evicted; the layer is still not uploaded, and said so. Alpha,
    // its manifest withheld, is not in the index that day: it comes from the upstream whole, as the report says,
    // and beta still comes from the cache.
    const later = await job(await world.runner('later', DAEMON_JSON));
    assert.ok(later.fetched.includes(alpha.layers[1].digest));
    const alphaBlobs = [alpha.configDigest, ...alpha.layers.map((l) => l.digest)];
    for (const d of later.fetched) assert.ok(alphaBlobs.includes(d), `${d}: only alpha's blobs came from the upstream`);
    assert.match(later.post.summary, /\| alpha:1 \| – \| 3 blobs, 5\.0 MiB \|/);
    assert.doesNotMatch(later.post.summary, /Evicted early/);
    assert.match(
      later.post.summary,
      /- Not saved again until \d{4}-\d\d-\d\d \d\d:\d\d UTC: \d blobs? \(2\.0 MiB\) of entries evicted early;/,
    );
    assert.deepEqual(
      later.creates.filter((key) => !key.startsWith(`${KEY}-index-`)),
      [],
      'no entry created: nothing new but the withheld layer',
    );
    assert.deepEqual([...next.post.warnings, ...later.post.warnings], []);
  });
});
