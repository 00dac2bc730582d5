// The fault matrix: whatever breaks around the action, the job's pulls succeed (through the cache, or from
// the upstream the cache still reaches), the daemon's config comes back byte for byte, nothing of ours is
// left running or lying in RUNNER_TEMP, and the step says what happened.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CacheIndex } from '../../src/cache-index.js';
import { entryHolding, entryMembers } from '../helpers/cache-entries.js';
import { makeLayer, pushImage, rawTar, type PushedImage } from '../helpers/images.js';
import { assertLeftAsItWas, processesHolding } from '../helpers/assertions.js';
import { startEngineGate } from '../helpers/engine-gate.js';
import { freePort, isRunning, waitFor } from '../helpers/process.js';
import { hubMirror, type StepResult } from '../helpers/runner.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{\n  "max-concurrent-downloads": 3\n}\n';

describe('faults around the action', { timeout: 600_000 }, () => {
  let world: World;
  let alpha: PushedImage;

  before(async () => {
    world = await startWorld('pull-cache-faults');
    alpha = await pushImage(world.upstream.url, 'library/alpha', '1', [
      makeLayer('f-base', [{ path: 'usr/base.bin', bytes: 1.25 * MiB }]),
      makeLayer('f-alpha', [{ path: 'opt/alpha.bin', bytes: 1.25 * MiB }]),
    ]);
    await pushImage(world.upstream.url, 'library/beta', '1', [makeLayer('f-beta', [{ path: 'opt/beta.bin', bytes: 1.25 * MiB }])]);
  });
  after(async () => {
    world.cache.setFault(null);
    await world?.stop();
  });

  test('the registry download fails: a warning, and the job goes on', async () => {
    const runner = await world.runner('download-fails', DAEMON_JSON);
    const { main, post } = await runner.job(
      runner.inputs({ 'registry-download-url': `http://127.0.0.1:${await freePort()}/releases` }),
      undefined,
      { RUNNER_TOOL_CACHE: await mkdtemp(join(world.dir, 'tool-cache-')) },
    );
    assert.equal(main.exitCode, 0);
    assert.match(main.warnings.join('\n'), /could not set up the cache: .*ECONNREFUSED|could not set up the cache: .*connect/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('the cache service answers 500 to everything: the job pulls through an empty cache, each step bounded by cache-timeout', async () => {
    const runner = await world.runner('cache-500', DAEMON_JSON);
    world.cache.setFault({ status: 500 });
    try {
      const { main, post } = await runner.job(runner.inputs({ 'cache-key': 'cache-500', 'cache-timeout': '5' }), async (main) => {
        assert.match(main.outputs.mirror, /^http:/);
        await runner.pull('alpha:1');
      });
      assert.ok(main.ms < 20_000 && post.ms < 20_000, `main ${main.ms} ms, post ${post.ms} ms`);
      assert.match(
        main.warnings.join('\n'),
        /restoring the cache failed \(the cache service answered 500 looking up cache-500-index-linux-[a-z0-9]+-\); starting with an empty cache/,
      );
      assert.match(post.summary, /\| alpha:1 \| – \| 3 blobs/);
      // The save gives up on a failing service at once (three tries), without waiting for cache-timeout.
      assert.match(
        post.summary,
        /Not saved this run: \d+ blobs \(the cache service did not take cache-500-\S+ \(the cache service answered 500 creating/,
      );
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      world.cache.setFault(null);
    }
  });

  test('the cache service hangs: cache-timeout bounds the restore and the job goes on', async () => {
    const runner = await world.runner('cache-hangs', DAEMON_JSON);
    world.cache.setFault({ hangMs: 120_000, methods: ['GetCacheEntryDownloadURL'] });
    try {
      const { main, post } = await runner.job(runner.inputs({ 'cache-key': 'cache-hangs', 'cache-timeout': '3', save: 'false' }), () =>
        runner.pull('alpha:1'),
      );
      assert.ok(main.ms < 15_000, `main took ${main.ms} ms`);
      assert.match(main.warnings.join('\n'), /restoring the cache index took longer than 3 s/);
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      world.cache.setFault(null);
    }
  });

  test('the cache service hangs while saving: cache-timeout ends the save and the tar it runs, and the job goes on', async () => {
    const runner = await world.runner('save-hangs', DAEMON_JSON);
    try {
      const { main, post } = await runner.job(runner.inputs({ 'cache-key': 'save-hangs', 'cache-timeout': '3' }), async () => {
        await runner.pull('alpha:1');
        world.cache.setFault({ hangMs: 120_000, methods: ['CreateCacheEntry'] });
      });
      assert.ok(post.ms < 15_000, `post took ${post.ms} ms`);
      assert.match(post.warnings.join('\n'), /saving the cache: saving the cache took longer than 3 s \(cache-timeout\)/);
      const saving = processesHolding([runner.runnerTemp]).filter((p) => /\btar\b|zstd/.test(p));
      assert.deepEqual(saving, [], 'no tar or zstd of the save left running');
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      world.cache.setFault(null);
    }
  });

  test('the cache service rate-limits new entries (429) past cache-timeout: saving stops at once with a warning, the next run saves', async () => {
    const runner = await world.runner('cache-429', DAEMON_JSON);
    // Retry-After 60 s, more than cache-timeout leaves: waiting cannot help, so the save gives up without waiting.
    world.cache.setFault({ status: 429, retryAfter: 60, methods: ['CreateCacheEntry'] });
    try {
      const { main, post } = await runner.job(runner.inputs({ 'cache-key': 'cache-429', 'cache-timeout': '20' }), () =>
        runner.pull('alpha:1'),
      );
      assert.ok(post.ms < 20_000, `post took ${post.ms} ms`);
      assert.match(
        post.warnings.join('\n'),
        /the cache service rate-limited creating cache-429-\S+ \(1 attempt, told to wait 60 s\): saving stops here/,
      );
      assert.match(
        post.summary,
        /Not saved this run: \d+ blobs \(the cache service did not take cache-429-\S+ \(the cache service rate-limited creating/,
      );
      assert.ok(!world.cache.entries().some((e) => e.key.startsWith('cache-429-')), 'nothing saved, no index');
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      world.cache.setFault(null);
    }
    // The next run saves what this one could not.
    const next = await world.runner('cache-429-next', DAEMON_JSON);
    await next.job(next.inputs({ 'cache-key': 'cache-429' }), () => next.pull('alpha:1'));
    assert.ok(world.cache.entries().some((e) => e.key.startsWith('cache-429-index-')));
  });

  test('an entry gone from the cache (evicted unused after 7 days): that blob is fetched again and saved again', async () => {
    const warm = await world.runner('evicted-warm', DAEMON_JSON);
    await warm.job(warm.inputs({ 'cache-key': 'evicted' }), () => warm.pull('alpha:1'));
    // The index as if saved 8 days ago: GitHub evicts for age then. One gone sooner is thrash (thrash.test.ts).
    const indexKey = world.cache.entries().find((e) => e.key.startsWith('evicted-index-'))!.key;
    const extract = ['-xO', '--use-compress-program', 'zstd', 'index.json'];
    const index = JSON.parse(execFileSync('tar', extract, { input: await world.cache.entryContent(indexKey) }).toString()) as CacheIndex;
    const aged = JSON.stringify({ ...index, created: new Date(Date.now() - 8 * 86_400_000).toISOString() });
    const archive = execFileSync('zstd', ['-q', '-c'], {
      input: rawTar([{ type: 'file', name: 'index.json', content: Buffer.from(aged) }]),
    });
    await world.cache.replaceEntryContent(indexKey, archive);
    const evicted = await entryHolding(world.cache, 'evicted', alpha.layers[1].digest);
    // The blobs of the entry, its manifest aside (a manifest is asked for by tag, not as a blob).
    const held = (await entryMembers(world.cache, evicted))
      .map((m) => `sha256:${m.split('/').at(-2)}`)
      .filter((d) => d !== alpha.manifestDigest);
    world.cache.deleteEntry(evicted);
    const runner = await world.runner('evicted', DAEMON_JSON);
    let result!: { main: StepResult; post: StepResult };
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      result = await runner.job(runner.inputs({ 'cache-key': 'evicted' }), () => runner.pull('alpha:1'));
    });
    assert.deepEqual([...new Set(fetched.map((l) => l.path.split('/blobs/')[1]))].sort(), held.sort());
    assert.match(result.post.summary, /1 entry gone from the cache/);
    assert.doesNotMatch(result.post.summary, /Evicted early/);
    assert.ok(
      world.cache.entries().some((e) => e.key === evicted),
      'saved again',
    );
    await assertLeftAsItWas(runner, DAEMON_JSON, result.main, result.post);
  });

  test('the port asked for is taken: a clear warning, the daemon untouched', async () => {
    const runner = await world.runner('port-taken', DAEMON_JSON);
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const port = (squatter.address() as { port: number }).port;
    try {
      const { main, post } = await runner.job(runner.inputs({ port: String(port) }));
      assert.match(main.warnings.join('\n'), new RegExp(`port ${port} is already in use on 127\\.0\\.0\\.1`));
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      squatter.close();
    }
  });

  test('the registry is killed mid-job: post still reports, restores the daemon and saves what was fetched', async () => {
    const runner = await world.runner('registry-killed', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ 'cache-key': 'registry-killed' }), async (main) => {
      await runner.pull('alpha:1');
      process.kill(hubMirror(main).pid, 'SIGKILL');
    });
    assert.match(post.summary, /\| alpha:1 \| – \| 3 blobs/);
    assert.ok(world.cache.entries().some((e) => e.key.startsWith('registry-killed-index-')));
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('the job is cancelled in the middle of a pull: post puts everything back', async () => {
    const runner = await world.runner('cancelled', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ 'cache-key': 'cancelled' }), async () => {
      // The runner cancels a step by signalling it; the docker CLI goes, the daemon's pull may go on.
      await runner.dockerd.docker(['pull', 'beta:1'], { timeoutMs: 150 });
    });
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('main is killed half-way (after the daemon config was written): post undoes exactly what was done', async () => {
    const runner = await world.runner('main-killed', DAEMON_JSON);
    // A daemon that stops answering once its config names the mirror keeps main waiting for the mirror to show.
    const namesMirror = () => readFileSync(runner.dockerd.configFile, 'utf8').includes('registry-mirrors');
    const stalled = await startEngineGate(
      runner.dockerd.socket,
      join(world.dir, 'main-killed-engine.sock'),
      (line) => /^(HEAD|GET) \S*\/(_ping|info)\b/.test(line) && namesMirror(),
    );
    try {
      const { main, post } = await runner.job(
        runner.inputs(),
        async () => stalled.open(),
        { DOCKER_HOST: stalled.host },
        { killMainAfterMs: 4_000 },
      );
      assert.notEqual(main.exitCode, 0, 'main was killed');
      assert.ok(main.state.daemon && main.state.mirrors, 'main got as far as the daemon');
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      stalled.open();
      await stalled.stop();
    }
  });

  test('dockerd refuses the reload (the mirror is also set by a flag): the config is put back and the job goes on', async () => {
    const conflicted = await startWorld('pull-cache-reload', { dockerdArgs: ['--registry-mirror=https://mirror.example.invalid'] });
    try {
      const runner = await conflicted.runner('reload-fails', DAEMON_JSON);
      const { main, post } = await runner.job(runner.inputs());
      assert.match(
        main.warnings.join('\n'),
        /timed out after 15 s waiting for the mirror to be listed by docker info after reloading dockerd/,
      );
      assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), DAEMON_JSON);
      assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors, ['https://mirror.example.invalid/']);
      assert.equal(post.exitCode, 0);
      await waitFor('the registry to be stopped', async () => !isRunning(hubMirror(main).pid), 5_000);
      assert.deepEqual(await readdir(runner.runnerTemp), []);
    } finally {
      await conflicted.stop();
    }
  });
});
