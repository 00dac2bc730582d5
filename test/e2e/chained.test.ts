// Chained caches: an organisation already runs a pull-through cache (the registry:2 image, or registry:3) in front of
// Docker Hub, and points the action's `upstream` at it, so the runner's mirror proxies the org's cache. With the
// runner's mirror on 2.8.3 and on 3.1.1: a cold job fills both caches, a warm job on a fresh runner asks the org's
// cache for no blob, and a tag pushed again at the origin pulls as the new image, fetching only what is new.
//
// Distribution issue 4747 (a chained 3.x proxy fails when the cache in front answers a blob HEAD with 404 until it
// has the blob, as Harbor's proxy-cache projects do): a Distribution proxy answers that HEAD from its own upstream,
// so with Distribution in the middle it does not arise; these jobs would fail at their first pull if it did.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeLayer, pushImage } from '../helpers/images.js';
import { REGISTRY_RELEASES } from '../helpers/registry-under-test.js';
import { blobOf, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;

/** The runner's mirror's release, and the org cache's binary: Debian's 2.8 (registry:2) or the 3.1.1 build (registry:3). */
const CHAINS = [
  { mirror: '2.8.3', org: 'registry:2' },
  { mirror: '3.1.1', org: 'registry:2' },
  { mirror: '3.1.1', org: 'registry:3' },
] as const;

describe('chained caches: the runner mirror in front of an org pull-through cache', { timeout: 600_000 }, () => {
  let world: World;
  const orgs: Partial<Record<(typeof CHAINS)[number]['org'], Upstream>> = {};

  before(async () => {
    world = await startWorld('pull-cache-chained');
    // Each org cache proxies the origin (world.upstream), as registry:2 with REGISTRY_PROXY_REMOTEURL does Docker Hub.
    for (const [org, binary] of [
      ['registry:2', REGISTRY_RELEASES['2.8.3'].binary()],
      ['registry:3', REGISTRY_RELEASES['3.1.1'].binary()],
    ] as const) {
      orgs[org] = await startUpstream(join(world.dir, org.replace(':', '-')), {
        binary,
        config: { proxy: { remoteurl: world.upstream.url } },
      });
    }
  });
  after(async () => {
    await Promise.allSettled(Object.values(orgs).map((o) => o.stop()));
    await world?.stop();
  });

  for (const { mirror, org } of CHAINS) {
    test(`a ${mirror} mirror in front of ${org}: cold, warm and a moved tag all pull`, async () => {
      const cache = orgs[org]!;
      const name = `chained-${mirror.replaceAll('.', '')}-${org.replace(':', '')}`;
      let jobs = 0;
      /** A job on a fresh runner pulling NAME:1 through the org cache; the blobs the org cache served meanwhile. */
      const job = async () => {
        const runner = await world.runner(`${name}-${++jobs}`);
        const inputs = runner.inputs({
          upstream: cache.url,
          'cache-key': name,
          'registry-version': mirror,
          'registry-sha256': world.release.sha256Of(mirror),
        });
        let result!: Awaited<ReturnType<typeof runner.job>>;
        const served = await upstreamBlobFetches(cache, async () => {
          result = await runner.job(inputs, async (main) => {
            assert.equal(main.exitCode, 0, main.stdout);
            assert.deepEqual(main.warnings, []);
            await runner.pull(`${name}:1`);
          });
        });
        assert.equal(result.post.exitCode, 0, result.post.stdout);
        assert.deepEqual(result.post.warnings, []);
        const digests = await runner.dockerd.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', `${name}:1`]);
        return { ...result, digests: digests.stdout, served: [...new Set(served.map((l) => blobOf(l.path)!.digest))].sort() };
      };

      const base = makeLayer(`${name}-base`, [{ path: 'usr/lib/base.bin', bytes: 1.5 * MiB }]);
      const v1 = await pushImage(world.upstream.url, `library/${name}`, '1', [
        base,
        makeLayer(`${name}-app`, [{ path: 'opt/app.bin', bytes: MiB }]),
      ]);
      const cold = await job();
      assert.deepEqual(
        cold.served,
        [v1.configDigest, ...v1.layers.map((l) => l.digest)].sort(),
        'cold: every blob came through the org cache',
      );
      assert.match(cold.post.summary, new RegExp(`\\| ${name}:1 \\| – \\| 3 blobs, `));

      const warm = await job();
      assert.deepEqual(warm.served, [], 'warm: the org cache served no blob');
      assert.match(warm.post.summary, /Hit rate: 100% of bytes served \(3 of 3 blobs\)/);

      const v2 = await pushImage(world.upstream.url, `library/${name}`, '1', [
        base,
        makeLayer(`${name}-app`, [{ path: 'opt/app.bin', bytes: MiB }]),
        makeLayer(`${name}-patch`, [{ path: 'opt/patch.bin', bytes: MiB }]),
      ]);
      const moved = await job();
      assert.ok(
        moved.digests.includes(v2.manifestDigest) && !moved.digests.includes(v1.manifestDigest),
        `moved tag: the new image, ${moved.digests}`,
      );
      assert.deepEqual(
        moved.served,
        [v2.configDigest, v2.layers[2].digest].sort(),
        'moved tag: only what is new came through the org cache',
      );
      assert.match(moved.post.summary, new RegExp(`\\| ${name}:1 \\| 2 blobs, [\\d.]+ MiB \\| 2 blobs, `));
    });
  }
});
