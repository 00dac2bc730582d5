// The cache service's rate limits (issue 23): past a repository's budget GitHub answers 429 with Retry-After to
// entry creates and look-ups, and its storage answers 429 or 503 to signed-URL uploads and downloads. The action
// waits as told, never sooner, and loses nothing: what a rate-limited save or restore was given to do is done, or
// left as it was for the next run. And a matrix of jobs saving the same new layers uploads each of them once.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { CallRecord, RateLimitWindow } from '../helpers/cache-service.js';
import { MANIFEST_V2, makeLayer, pushImage, type PushedImage } from '../helpers/images.js';
import { hubMirror, type StepResult } from '../helpers/runner.js';
import { waitFor } from '../helpers/process.js';
import { startWorld, upstreamBlobFetches, type Runner, type StartedJob, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{\n  "debug": false\n}\n';
/** A call that came within this long of a refusal was on its way before the refusal was answered. */
const IN_FLIGHT_MS = 300;

/** Calls that came inside a Retry-After window the service had given earlier (to the same host), past IN_FLIGHT_MS. */
function callsTooSoon(calls: CallRecord[]): string[] {
  const refusals = calls.filter((c) => c.retryAfterMs !== undefined);
  return calls.flatMap((c) =>
    refusals
      .filter((r) => r.host === c.host && c.at > r.at + IN_FLIGHT_MS && c.at < r.at + r.retryAfterMs!)
      .map((r) => `${c.call} ${c.key} at +${c.at - r.at} ms of a ${r.retryAfterMs} ms Retry-After given to ${r.call} ${r.key}`),
  );
}

describe('the cache service rate-limits the action', { timeout: 900_000 }, () => {
  let world: World;
  let gamma: PushedImage;
  let sibling: PushedImage;

  before(async () => {
    world = await startWorld('pull-cache-rate-limits');
    const base = makeLayer('rl-base', [{ path: 'usr/lib/base.bin', bytes: 1.5 * MiB }]);
    await pushImage(world.upstream.url, 'library/alpha', '1', [base, makeLayer('rl-alpha', [{ path: 'opt/alpha.bin', bytes: 1.5 * MiB }])]);
    // beta's own layer is larger than a block (8 MiB): its entry goes up in blocks, then a block list.
    await pushImage(world.upstream.url, 'library/beta', '1', [base, makeLayer('rl-beta', [{ path: 'opt/beta.bin', bytes: 9 * MiB }])]);
    // gamma and sibling share their base: three entries (the base, each image's own) for the matrix to save.
    const gammaBase = makeLayer('rl-gamma-1', [{ path: 'opt/g1.bin', bytes: 1.5 * MiB }]);
    sibling = await pushImage(world.upstream.url, 'library/sibling', '1', [
      gammaBase,
      makeLayer('rl-sibling', [{ path: 'opt/s.bin', bytes: 1.5 * MiB }]),
    ]);
    gamma = await pushImage(world.upstream.url, 'library/gamma', '1', [
      gammaBase,
      makeLayer('rl-gamma-2', [{ path: 'opt/g2.bin', bytes: 1.5 * MiB }]),
      makeLayer('rl-gamma-3', [{ path: 'etc/g3.conf', bytes: 4096 }]),
    ]);
  });
  after(async () => {
    world?.cache.setRateLimit(null);
    await world?.stop();
  });

  /** Runs a job with the service rate-limiting in `window`; returns it, the calls made meanwhile, and the upstream's blob fetches. */
  async function limitedJob(
    runner: Runner,
    inputs: Record<string, string>,
    window: RateLimitWindow | null,
    steps: (main: StepResult) => Promise<void>,
  ) {
    const from = world.cache.calls.length;
    let job!: { main: StepResult; post: StepResult };
    world.cache.setRateLimit(window);
    try {
      const fetched = await upstreamBlobFetches(world.upstream, async () => {
        job = await runner.job(runner.inputs(inputs), steps);
      });
      return { ...job, calls: world.cache.calls.slice(from), fetched };
    } finally {
      world.cache.setRateLimit(null);
    }
  }

  const pullBoth = (runner: Runner) => async () => {
    await runner.pull('alpha:1');
    await runner.pull('beta:1');
  };

  test('creates refused for 4 s (Retry-After 2): the save waits as told, saves everything, and says it was held back', async () => {
    const runner = await world.runner('save-limited', DAEMON_JSON);
    const window = { calls: ['CreateCacheEntry'], forMs: 4_000, retryAfter: 2 };
    const { main, post, calls } = await limitedJob(runner, { 'cache-key': 'rl' }, window, pullBoth(runner));
    assert.equal(main.exitCode, 0);
    assert.deepEqual(post.warnings, []);
    const refused = calls.filter((c) => c.call === 'CreateCacheEntry' && c.status === 429);
    assert.ok(refused.length >= 2, `${refused.length} creates refused`);
    // The first burst (one create per entry saved at once), then about one per Retry-After: not a retry storm.
    assert.ok(refused.length <= 4 + 4, `${refused.length} creates refused`);
    assert.deepEqual(callsTooSoon(calls), []);
    assert.match(post.summary, /The cache service rate-limited saving \(creates\): waited [2-9] s\./);
    assert.match(post.summary, /Saved: \d+ new entries, .*index `rl-index-/);
    assert.doesNotMatch(post.summary, /Not saved this run/);
  });

  test('entry look-ups refused for 4 s: the restore waits as told, the pulls wait for it, and the report says how late it came', async () => {
    const runner = await world.runner('restore-limited', DAEMON_JSON);
    const window = { calls: ['GetCacheEntryDownloadURL'], keys: /^rl-(?!index-)/, forMs: 4_000, retryAfter: 2 };
    const { main, post, calls, fetched } = await limitedJob(runner, { 'cache-key': 'rl', prefetch: 'false' }, window, pullBoth(runner));
    assert.equal(main.exitCode, 0);
    assert.ok(main.ms < 30_000, `main took ${main.ms} ms`);
    assert.deepEqual(fetched, [], 'the upstream served no blob: every entry was restored');
    assert.deepEqual([...post.warnings], []);
    const refused = calls.filter((c) => c.call === 'GetCacheEntryDownloadURL' && c.status === 429);
    assert.ok(refused.length >= 2 && refused.length <= 4 + 4, `${refused.length} look-ups refused`);
    assert.deepEqual(callsTooSoon(calls), []);
    assert.match(post.summary, /- \d+ entries restored [2-9] s late: the cache service rate-limited look-ups\./);

    const warm = await world.runner('restore-limited-next', DAEMON_JSON);
    const next = await limitedJob(warm, { 'cache-key': 'rl' }, null, pullBoth(warm));
    assert.deepEqual(next.fetched, [], 'nothing was lost: the next warm job takes no blob from the upstream');
  });

  test('the index look-up rate-limited past what main waits: main goes on at once, the worker gets the index later, and later pulls come from the cache', async () => {
    const runner = await world.runner('index-late', DAEMON_JSON);
    // Told 6 s, more than main's 5: main goes on; the worker, refused once more, gets the index when told.
    const window = { calls: ['GetCacheEntryDownloadURL'], keys: /^rl-index-/, forMs: 6_500, retryAfter: 6 };
    const inputs = { 'cache-key': 'rl', prefetch: 'false' };
    const { main, post, calls, fetched } = await limitedJob(runner, inputs, window, async (main) => {
      await runner.pull('alpha:1');
      // A later step, once the restore is done.
      const { progress } = JSON.parse(main.state.restore) as { progress: string };
      await waitFor('the restore to end', async () => (await readFile(progress, 'utf8')).includes('"done":true'), 60_000, 200);
      await runner.pull('beta:1');
    });
    assert.ok(main.ms < 20_000, `main took ${main.ms} ms, not the index's wait`);
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    const lookups = calls.filter((c) => c.call === 'GetCacheEntryDownloadURL' && c.key.startsWith('rl-index-'));
    assert.ok(lookups.length >= 3 && lookups.at(-1)!.status === 200, lookups.map((c) => c.status).join(' '));
    assert.deepEqual(callsTooSoon(calls), []);
    assert.match(post.summary, /- The cache index came \d+ s late: the cache service rate-limited its look-up\./);
    const alphaOnly = fetched.filter((l) => !l.path.startsWith('/v2/library/alpha/'));
    assert.deepEqual(alphaOnly, [], 'beta, pulled once the restore was done, came from the cache');
    // beta's own blobs from the cache; the base it shares with alpha came with alpha's pull, from the upstream.
    assert.match(post.summary, /\| beta:1 \| 2 blobs, 9\.0 MiB \| 1 blob, 1\.5 MiB \|/);

    const warm = await world.runner('index-late-next', DAEMON_JSON);
    const next = await limitedJob(warm, { 'cache-key': 'rl' }, null, pullBoth(warm));
    assert.deepEqual(next.fetched, [], 'nothing was lost: the next warm job takes no blob from the upstream');
  });

  test('the index look-up rate-limited past cache-timeout: the job pulls from the upstream, says so, and saves nothing', async () => {
    const runner = await world.runner('index-limited', DAEMON_JSON);
    const indexes = () => world.cache.entries().filter((e) => e.key.startsWith('rl-index-')).length;
    const before = indexes();
    const window = { calls: ['GetCacheEntryDownloadURL'], keys: /^rl-index-/, forMs: 60_000, retryAfter: 20 };
    const inputs = { 'cache-key': 'rl', 'cache-timeout': '10' };
    const { main, post, calls } = await limitedJob(runner, inputs, window, () => runner.pull('alpha:1'));
    assert.ok(main.ms < 20_000, `main took ${main.ms} ms, not the 60 s of the window`);
    assert.deepEqual(main.warnings, []);
    assert.match(
      post.warnings.join('\n'),
      /the cache service rate-limited looking up rl-index-linux-\S+ .*: the restore worker did not get the index before cache-timeout either/,
    );
    // Told 20 s: more than main waits, and more than the worker's 10 s leave: it makes no look-up of its own.
    assert.equal(calls.filter((c) => c.call === 'GetCacheEntryDownloadURL').length, 1, 'one look-up, by main');
    assert.deepEqual(callsTooSoon(calls), []);
    assert.match(post.summary, /Restored: nothing \(the cache service rate-limited looking up rl-index-/);
    assert.match(post.summary, /\| alpha:1 \| – \| 3 blobs/);
    assert.equal(indexes(), before, 'no index saved over the one it could not read');
  });

  test('the signed URLs answer 503 to uploads and 429 to downloads for a few seconds: nothing is lost', async () => {
    const cold = await world.runner('storage-limited', DAEMON_JSON);
    const uploads = { calls: ['upload'], forMs: 3_000, retryAfter: 1, status: 503 as const };
    const saved = await limitedJob(cold, { 'cache-key': 'rl-storage' }, uploads, pullBoth(cold));
    assert.deepEqual(saved.post.warnings, []);
    assert.ok(saved.calls.some((c) => c.call === 'upload' && c.status === 503));
    assert.ok(
      saved.calls.some((c) => c.call === 'upload' && c.key === 'blocklist' && c.status === 201),
      'a block list taken',
    );
    assert.ok(
      saved.calls.some((c) => c.call === 'upload' && c.key === '' && c.status === 201),
      'a whole blob taken',
    );
    assert.deepEqual(callsTooSoon(saved.calls), []);
    assert.match(saved.post.summary, /The cache service rate-limited saving \(uploads\): waited \d+ s\./);
    assert.match(saved.post.summary, /Saved: \d+ new entries, .*index `rl-storage-index-/);

    const warm = await world.runner('storage-limited-warm', DAEMON_JSON);
    // The index's download goes through; the entries' are refused.
    const downloads = { calls: ['download'], skipFirst: 1, forMs: 3_000, retryAfter: 1, status: 429 as const };
    const restored = await limitedJob(warm, { 'cache-key': 'rl-storage', prefetch: 'false' }, downloads, pullBoth(warm));
    assert.deepEqual(restored.fetched, [], 'every entry was restored');
    assert.ok(restored.calls.some((c) => c.call === 'download' && c.status === 429));
    assert.deepEqual(callsTooSoon(restored.calls), []);
    assert.match(restored.post.summary, /- \d+ entr(y|ies) restored \d+ s late: the cache service rate-limited downloads\./);
  });

  test('8 jobs of a matrix save the same new layers at once: each entry is uploaded once, the others skip it quietly', async () => {
    const runner = await world.runner('matrix', DAEMON_JSON);
    // One job first, so that the registry binary is in the tool cache before eight jobs look for it.
    await runner.job(runner.inputs({ 'cache-key': 'rl-matrix-warmup', save: 'false' }));
    const requests = { ...world.cache.requests };
    const delta = (name: string) => (world.cache.requests[name] ?? 0) - (requests[name] ?? 0);
    const jobs: StartedJob[] = [];
    try {
      jobs.push(...(await Promise.all(Array.from({ length: 8 }, () => runner.startJob(runner.inputs({ 'cache-key': 'rl-matrix' }))))));
      for (const job of jobs) assert.equal(job.main.exitCode, 0, job.main.stdout);
      // Each job pulls the image through its own mirror (as eight runners would), so each has the layers to save.
      await Promise.all(
        jobs.map(async (job) => {
          await pullThrough(hubMirror(job.main).url, gamma);
          await pullThrough(hubMirror(job.main).url, sibling);
        }),
      );
      const posts = await Promise.all(jobs.splice(0).map((job) => job.post()));
      for (const post of posts) {
        assert.equal(post.exitCode, 0, post.stdout);
        assert.deepEqual(post.warnings, []);
        assert.doesNotMatch(post.summary, /Not saved this run/);
      }
      const entries = world.cache.entries().filter((e) => e.key.startsWith('rl-matrix-') && !e.key.startsWith('rl-matrix-index-'));
      const indexes = world.cache.entries().filter((e) => e.key.startsWith('rl-matrix-index-'));
      assert.equal(entries.length, 3, 'the shared base, and each image with its own layers, manifest and config');
      assert.ok(
        entries.every((e) => e.finalized),
        'every entry finalized',
      );
      assert.equal(delta('upload'), entries.length + indexes.length, 'each entry uploaded once, and each job its index');
      assert.equal(delta('FinalizeCacheEntryUpload'), entries.length + indexes.length);
      assert.ok(delta('CreateCacheEntry') <= 8 * (entries.length + 1), `${delta('CreateCacheEntry')} creates`);
      // A job that finds an entry saved by another looks it up a few times at most, not every half second.
      const lookups = delta('GetCacheEntryDownloadURL') - 8; // each job's index look-up in main
      console.log(
        `matrix: ${delta('CreateCacheEntry')} creates, ${delta('upload')} uploads, ${lookups} look-ups after a create found the entry`,
      );
      assert.ok(lookups <= 7 * entries.length * 2, `${lookups} look-ups`);
    } finally {
      await Promise.allSettled(jobs.map((job) => job.post()));
    }
  });
});

/** Pulls the image through a mirror over the registry API: its manifest, then every blob. */
async function pullThrough(mirror: string, image: PushedImage): Promise<void> {
  const manifest = await fetch(`${mirror}/v2/${image.repository}/manifests/${image.tag}`, { headers: { accept: MANIFEST_V2 } });
  assert.equal(manifest.status, 200, await manifest.clone().text());
  await manifest.arrayBuffer();
  for (const digest of image.blobDigests) {
    const blob = await fetch(`${mirror}/v2/${image.repository}/blobs/${digest}`);
    assert.equal(blob.status, 200);
    await blob.arrayBuffer();
  }
}
