// An upstream whose token service is on another host and port than its registry API: here a forwarder in front of
// the Docker Hub stand-in that leaves the challenge's realm naming the hub. Distribution 3.1 asks a realm for a token
// only when it is on its upstream's own host and port (or registrable domain), so with 3.1.1 the mirror cannot fetch,
// and dockerd pulls from Docker Hub itself; 2.8.3 follows the realm and caches. README, "Registry versions".
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startFaultyForwarder, type FaultyForwarder } from '../helpers/faulty-forwarder.js';
import { makeLayer } from '../helpers/images.js';
import { startWorld, type World } from '../helpers/world.js';

describe('an upstream whose token realm is on another host and port', { timeout: 300_000 }, () => {
  let world: World;
  let elsewhere: FaultyForwarder;

  before(async () => {
    world = await startWorld('pull-cache-realm', { hubNamespace: true });
    const hub = world.hub!;
    for (const name of ['realm-283', 'realm-311'])
      await hub.pushImage(`library/${name}`, '1', [makeLayer(name, [{ path: `opt/${name}.bin`, bytes: 512 * 1024 }])]);
    elsewhere = await startFaultyForwarder(hub.url, { keepRealm: true });
    await world.hubNamespace!.expose(elsewhere.port, Number(new URL(hub.tokenUrl).port));
  });
  after(async () => {
    await elsewhere?.stop();
    await world?.stop();
  });

  /** Docker Hub requests that reached the stand-in by its real name: dockerd pulling without the mirror. */
  const directBlobs = () => world.hubNamespace!.tlsRequests().filter((r) => r.path.includes('/blobs/')).length;

  for (const [version, cached] of [
    ['2.8.3', true],
    ['3.1.1', false],
  ] as const) {
    test(`registry ${version} ${cached ? 'follows the realm and caches' : 'asks it for no token: the pull goes around the cache'}`, async () => {
      const image = `realm-${version.replaceAll('.', '')}`;
      const runner = await world.runner(image);
      const before = directBlobs();
      const { main, post } = await runner.job(
        runner.inputs({
          upstream: elsewhere.url,
          'cache-key': image,
          'registry-version': version,
          'registry-sha256': world.release.sha256Of(version),
        }),
        () => runner.pull(`${image}:1`),
      );
      assert.equal(main.exitCode, 0, main.stdout);
      assert.equal(post.exitCode, 0, post.stdout);
      if (cached) {
        assert.match(post.summary, new RegExp(`\\| ${image}:1 \\| – \\| 2 blobs, `));
        assert.equal(directBlobs(), before, 'dockerd fetched nothing from Docker Hub itself');
      } else {
        assert.match(post.summary, /No image was pulled through the cache in this job/);
        assert.ok(directBlobs() > before, 'dockerd fetched the layers from Docker Hub itself');
      }
    });
  }
});
