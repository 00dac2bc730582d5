// When the cache breaks during the job, dockerd falls back to Docker Hub and the pull still succeeds. Only
// testable with Docker Hub's real names answering: in a network namespace (helpers/hub-namespace.ts) where
// registry-1.docker.io is the hub stand-in. The action's registry reaches the same hub through a forwarder
// that misbehaves on request, so only the cache's path to upstream breaks.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hubMirror } from '../helpers/runner.js';
import { assertLeftAsItWas } from '../helpers/assertions.js';
import { startFaultyForwarder, type FaultyForwarder } from '../helpers/faulty-forwarder.js';
import { usesContainerdStore } from '../../src/daemon-config.js';
import { makeLayer } from '../helpers/images.js';
import { startWorld, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{ "debug": false }\n';

describe('falling back to Docker Hub when the cache breaks mid-job', { timeout: 300_000 }, () => {
  let world: World;
  let forwarder: FaultyForwarder;
  const images = ['one', 'two', 'three', 'four', 'five', 'six'];

  before(async () => {
    world = await startWorld('pull-cache-fallback', { hubNamespace: true });
    const hub = world.hub!;
    for (const name of images)
      await hub.pushImage(`library/${name}`, '1', [makeLayer(`fb-${name}`, [{ path: `opt/${name}.bin`, bytes: 1.25 * MiB }])]);
    forwarder = await startFaultyForwarder(hub.url);
    await world.hubNamespace!.expose(forwarder.port, Number(new URL(hub.tokenUrl).port));
  });
  after(async () => {
    await forwarder?.stop();
    await world?.stop();
  });

  /** Docker Hub requests that reached the stand-in by its real name: dockerd's fallback. */
  const directPulls = (kind: 'blobs' | 'manifests' = 'blobs') =>
    world.hubNamespace!.tlsRequests().filter((r) => r.path.includes(`/${kind}/`)).length;

  for (const [name, fault, image] of [
    ['the upstream answers 503', { mode: 'status', status: 503, kind: 'manifests' }, 'one'],
    ['the upstream stalls, then drops the connection', { mode: 'stall', stallMs: 3_000, kind: 'manifests' }, 'two'],
  ] as const) {
    test(`${name} during the job: the pull falls back to Docker Hub and succeeds`, async () => {
      const runner = await world.runner(`fault-${image}`, DAEMON_JSON);
      // The classic store fetches the whole image from the endpoint that gave the manifest; the containerd store
      // tries the mirror first for each blob too, so only the manifest comes from Docker Hub (the layers, unspoiled,
      // through the cache).
      const containerdStore = usesContainerdStore((await runner.dockerd.info()).DriverStatus);
      const before = { blobs: directPulls('blobs'), manifests: directPulls('manifests') };
      const { main, post } = await runner.job(runner.inputs({ upstream: forwarder.url }), async () => {
        forwarder.setFault(fault);
        try {
          await runner.pull(`${image}:1`);
        } finally {
          forwarder.setFault(null);
        }
      });
      assert.ok(forwarder.spoiled() > 0 || directPulls('manifests') > before.manifests);
      if (containerdStore) {
        assert.ok(directPulls('manifests') > before.manifests, 'dockerd fetched the manifest from Docker Hub itself');
        assert.equal(directPulls('blobs'), before.blobs, 'and the layers through the cache');
      } else assert.ok(directPulls('blobs') > before.blobs, 'dockerd fetched the layers from Docker Hub itself');
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    });
  }

  test('the upstream cuts a layer download half-way once: the pull succeeds through the cache', async () => {
    const runner = await world.runner('fault-cut', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ upstream: forwarder.url }), async () => {
      forwarder.setFault({ mode: 'cut', kind: 'blobs', count: 1 });
      try {
        await runner.pull('three:1');
      } finally {
        forwarder.setFault(null);
      }
    });
    assert.match(post.summary, /\| three:1 \|/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('the registry is killed mid-job: the next pull falls back to Docker Hub', async () => {
    const runner = await world.runner('registry-killed', DAEMON_JSON);
    const before = directPulls();
    const { main, post } = await runner.job(runner.inputs(), async (main) => {
      await runner.pull('four:1');
      process.kill(hubMirror(main).pid, 'SIGKILL');
      await runner.pull('five:1');
    });
    assert.ok(directPulls() > before, 'five:1 came from Docker Hub directly');
    assert.match(post.summary, /\| four:1 \| – \| 2 blobs/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  test('the disk fills up while caching: the pull succeeds and post cleans up', async () => {
    const runner = await world.runner('disk-full', DAEMON_JSON);
    // RUNNER_TEMP on a filesystem with room for the action's small files but not for a layer.
    const small = join(world.dir, 'small-disk');
    await mkdir(small, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=768k', 'tmpfs', small]);
    try {
      const { main, post } = await runner.job(runner.inputs(), () => runner.pull('six:1'), { RUNNER_TEMP: small });
      assert.equal(main.exitCode, 0, main.stdout);
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post, small);
    } finally {
      execFileSync('umount', [small]);
    }
  });
});
