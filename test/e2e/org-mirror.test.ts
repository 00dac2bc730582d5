// Organisation mirrors: a fleet already runs a pull-through cache of ghcr.io (Harbor, Nexus, Artifactory, or a
// registry:2 in proxy mode as here) and lists `ghcr.io=ORG_MIRROR_URL` in registries. The runner's mirror of ghcr.io
// then pulls from the org tier, which pulls from ghcr.io (a stand-in) once for the whole fleet. A containerd pulls
// ghcr.io/org/app:1 by its real name through the hosts directory. The report names the org tier as where what the
// runner's cache did not hold came from.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startContainerd } from '../helpers/containerd.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorld, type World } from '../helpers/world.js';

describe('a registry behind an organisation mirror (registries: ghcr.io=URL)', { timeout: 300_000 }, () => {
  let world: World;
  let origin: Upstream;
  let orgTier: Upstream;

  before(async () => {
    world = await startWorld('pull-cache-org-mirror');
    origin = await startUpstream(join(world.dir, 'origin-ghcr'));
    orgTier = await startUpstream(join(world.dir, 'org-tier'), { config: { proxy: { remoteurl: origin.url } } });
    await pushImage(origin.url, 'org/app', '1', [makeLayer('org-app', [{ path: 'opt/app.bin', bytes: 768 * 1024 }])]);
  });
  after(async () => {
    await Promise.allSettled([orgTier?.stop(), origin?.stop()]);
    await world?.stop();
  });

  /** A job on a fresh runner whose containerd pulls ghcr.io/org/app:1; the blob downloads each tier served meanwhile. */
  async function job(name: string, cacheKey: string) {
    const runner = await world.runner(name);
    const before = { origin: (await origin.blobRequests()).length, orgTier: (await orgTier.blobRequests()).length };
    const { main, post } = await runner.job(
      runner.inputs({ registries: `docker.io ghcr.io=${orgTier.url}`, 'cache-key': cacheKey }),
      async (main) => {
        const containerd = await startContainerd(join(world.dir, `${name}-containerd`));
        try {
          await containerd.pull('ghcr.io/org/app:1', main.outputs['hosts-dir']);
        } finally {
          await containerd.stop();
        }
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 200)); // the access log line follows the response
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    const orgRow = new RegExp(`\\| ghcr\\.io via ${orgTier.host.replace(/\./g, '\\.')} \\| http://127\\.0\\.0\\.1:\\d+ \\| 1 \\|`);
    assert.match(post.summary, orgRow, 'the row of ghcr.io names the org tier');
    return {
      post,
      served: {
        origin: (await origin.blobRequests()).length - before.origin,
        orgTier: (await orgTier.blobRequests()).length - before.orgTier,
      },
    };
  }

  test("cold, both tiers: ghcr.io serves the org tier, the org tier the runner's mirror; the report counts it as from the org tier", async () => {
    const { post, served } = await job('cold', 'org');
    assert.ok(served.origin > 0 && served.orgTier > 0, JSON.stringify(served));
    assert.match(post.summary, /\| ghcr\.io\/org\/app:1 \| – \| 2 blobs, /);
  });

  test('a runner with an empty cache, the org tier warm: nothing from ghcr.io, everything from the org tier', async () => {
    const { post, served } = await job('org-warm', 'org-other-key');
    assert.equal(served.origin, 0, 'ghcr.io served nothing');
    assert.ok(served.orgTier > 0);
    assert.match(
      post.summary,
      new RegExp(`\\| ghcr\\.io via ${orgTier.host.replace(/\./g, '\\.')} \\| http://127\\.0\\.0\\.1:\\d+ \\| 1 \\| – \\| 2 blobs, `),
    );
  });

  test("the runner's cache warm: neither tier serves a blob", async () => {
    const { post, served } = await job('warm', 'org');
    assert.deepEqual(served, { origin: 0, orgTier: 0 });
    assert.match(post.summary, /Hit rate: 100% of bytes served/);
  });
});
