// The action's footprint in the repository's cache (issue 23): entries no index names any more (a moved tag's old
// layers, superseded indexes) are deleted by post through the REST API when the workflow gives a github-token with
// actions: write, and only then; never another prefix's or another ref's entry, never one an hour old or less; a
// token without actions: write (403) deletes nothing, and the report says so in one line that is not a warning.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { blobKey } from '../../src/cache-index.js';
import { formatBytes } from '../../src/report.js';
import { entryHolding } from '../helpers/cache-entries.js';
import { makeLayer, pushImage, type Layer } from '../helpers/images.js';
import type { StepResult } from '../helpers/runner.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAY = 86_400_000;
const DAEMON_JSON = '{\n  "debug": false\n}\n';
const PREFIX = 'prune';

describe('pruning what no index names', { timeout: 600_000 }, () => {
  let world: World;
  let betaOld: Layer;

  before(async () => {
    world = await startWorld('pull-cache-prune');
    const base = makeLayer('pr-base', [{ path: 'usr/lib/base.bin', bytes: 1.5 * MiB }]);
    betaOld = makeLayer('pr-beta-1', [{ path: 'opt/beta.bin', bytes: 2 * MiB }]);
    await pushImage(world.upstream.url, 'library/alpha', '1', [base, makeLayer('pr-alpha', [{ path: 'opt/alpha.bin', bytes: 1.5 * MiB }])]);
    await pushImage(world.upstream.url, 'library/beta', '1', [base, betaOld]);
  });
  after(() => world?.stop());

  const restCalls = () => world.cache.calls.filter((c) => c.host === 'api');
  const keys = () => new Set(world.cache.entries().map((e) => e.key));

  /** A fresh runner's job pulling alpha:1 and beta:1; the REST calls it made and the upstream's blob fetches. */
  async function job(name: string, extra: Record<string, string> = {}) {
    const runner = await world.runner(name, DAEMON_JSON);
    const from = restCalls().length;
    let result!: { main: StepResult; post: StepResult };
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      result = await runner.job(runner.inputs({ 'cache-key': PREFIX, ...extra }), async () => {
        await runner.pull('alpha:1');
        await runner.pull('beta:1');
      });
    });
    assert.equal(result.main.exitCode, 0, result.main.stdout);
    assert.equal(result.post.exitCode, 0, result.post.stdout);
    assert.deepEqual([...result.main.warnings, ...result.post.warnings], []);
    return { ...result, fetched, rest: restCalls().slice(from) };
  }

  /** The token nowhere in what the steps printed (but the ::add-mask:: that masks it) or in the summary. */
  function assertTokenKept(step: StepResult, token: string) {
    const printed = [...step.stdout.split('\n').filter((l) => !l.startsWith('::add-mask::')), step.stderr, step.summary].join('\n');
    assert.ok(!printed.includes(token), 'the token was printed');
  }

  test('a moved tag leaves entries no index names: with a write token post deletes exactly them, with a read-only one nothing, without one no call is made', async () => {
    // The first job saves alpha, beta and an index; a week and a day pass (the entries' times are moved back).
    const first = await job('first');
    assert.deepEqual(first.rest, [], 'no github-token: no REST call');
    const firstIndex = [...keys()].find((k) => k.startsWith(`${PREFIX}-index-`))!;
    assert.ok(firstIndex);
    // beta's own entry: its layer, with its manifest and config.
    const betaEntry = await entryHolding(world.cache, PREFIX, betaOld.digest);
    assert.ok(world.cache.backdate(new RegExp(`^${PREFIX}-`), 8 * DAY) >= 4);

    // beta:1 is pushed again with a layer of its own replaced: the next job saves the new one and an index without the old.
    await pushImage(world.upstream.url, 'library/beta', '1', [
      makeLayer('pr-base', [{ path: 'usr/lib/base.bin', bytes: 1.5 * MiB }]),
      makeLayer('pr-beta-2', [{ path: 'opt/beta.bin', bytes: 2 * MiB }]),
    ]);
    const moved = await job('moved');
    assert.deepEqual(moved.rest, [], 'no github-token: no REST call');
    assert.match(moved.post.summary, /- Saved: \d+ new entr(y|ies), .*index `prune-index-/);
    assert.doesNotMatch(moved.post.summary, /Prun(ed|ing)/);
    const unnamed = [betaEntry, firstIndex].sort();
    for (const key of unnamed) assert.ok(keys().has(key), `${key} is still there`);

    // What is never a candidate: another prefix's entry, this prefix's in another ref's scope, one created just now.
    const archive = randomBytes(64);
    const stranger = blobKey(`${PREFIX}-x`, `sha256:${'1'.repeat(64)}`);
    const otherRef = blobKey(PREFIX, `sha256:${'2'.repeat(64)}`);
    const young = blobKey(PREFIX, `sha256:${'3'.repeat(64)}`);
    await world.cache.plantEntry(stranger, 'v', archive);
    await world.cache.plantEntry(otherRef, 'v', archive, 'refs/heads/feature');
    world.cache.backdate(new RegExp(`^(${stranger}|${otherRef})$`), 30 * DAY);
    await world.cache.plantEntry(young, 'v', archive);

    // A token without actions: write: the listing and the indexes are read, the first delete is refused, nothing more.
    const before = [...keys()].sort();
    const readOnly = await job('read-only', { 'github-token': world.cache.api.readToken });
    assert.deepEqual([...keys()].sort(), before, 'nothing deleted');
    assert.deepEqual(
      readOnly.rest.filter((c) => c.call === 'rest:delete').map((c) => c.status),
      [403],
      'one delete tried, refused',
    );
    assert.match(readOnly.post.summary, /\n- Pruning needs a github-token with actions: write; nothing deleted\.\n/);
    assertTokenKept(readOnly.post, world.cache.api.readToken);

    // A token with actions: write: exactly the entries no index names go, and the report says what that freed.
    const sizes = new Map(world.cache.entries().map((e) => [e.key, e.sizeBytes]));
    const writer = await job('writer', { 'github-token': world.cache.api.writeToken });
    const deleted = before.filter((k) => !keys().has(k));
    assert.deepEqual(deleted, unnamed);
    assert.deepEqual(
      writer.rest.filter((c) => c.call === 'rest:delete').map((c) => c.status),
      [204, 204],
    );
    assert.ok(writer.rest.filter((c) => c.call === 'rest:list').length <= 10, 'the listing is bounded');
    const freed = unnamed.reduce((sum, k) => sum + sizes.get(k)!, 0);
    assert.ok(
      writer.post.summary.includes(`- Pruned 2 entries the index no longer names: ${formatBytes(freed)} freed.`),
      writer.post.summary,
    );
    for (const key of [stranger, otherRef, young]) assert.ok(keys().has(key), `${key} was left alone`);
    const count = (call: string) => writer.rest.filter((c) => c.call === call).length;
    console.log(
      `prune: ${count('rest:list')} listings, ${count('rest:delete')} deletes, ${formatBytes(freed)} freed; post took ${writer.post.ms} ms`,
    );
    assertTokenKept(writer.main, world.cache.api.writeToken);
    assertTokenKept(writer.post, world.cache.api.writeToken);

    // Nothing the cache still needs went: the next warm job takes no blob from the upstream.
    const warm = await job('warm');
    assert.deepEqual(warm.fetched, [], 'the warm job took no blob from the upstream');
    assert.deepEqual(warm.rest, []);

    // Pruned again with nothing left to delete: no delete, and the report says so.
    const again = await job('again', { 'github-token': world.cache.api.writeToken });
    assert.deepEqual(
      again.rest.filter((c) => c.call === 'rest:delete'),
      [],
    );
    assert.match(
      again.post.summary,
      /- Pruned nothing: every entry of this cache is named by an index of the last 7 days or less than an hour old\./,
    );
  });
});
