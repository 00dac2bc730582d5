// Podman, Buildah and Skopeo read registries.conf drop-ins. A job caching docker.io and ghcr.io has the action write
// one; Skopeo and Podman then pull images of both registries by their real names through the mirrors, cold, and on
// a fresh runner warm, with no blob from an upstream. The post step removes the drop-in and the directories it
// made. The registries are stand-ins under their real names in a network namespace (helpers/hub-namespace.ts),
// so a pull that went around the mirrors would reach them and be counted.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'smol-toml';
import { containersTools } from '../helpers/containers-tools.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import { startWorld, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;

describe('Podman and Skopeo pull through the mirrors by a registries.conf drop-in', { timeout: 300_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('pull-cache-containers', { hubNamespace: true, registries: ['ghcr.io'] });
    await Promise.all([
      world.hub!.pushImage('library/alpine', '1', [makeLayer('podman-alpine', [{ path: 'bin/sh', bytes: 1 * MiB }])]),
      world.hub!.pushImage('library/busybox', '1', [makeLayer('podman-busybox', [{ path: 'bin/busybox', bytes: 512 * 1024 }])]),
      pushImage(world.registries['ghcr.io'].url, 'org/app', '1', [makeLayer('podman-app', [{ path: 'opt/app.bin', bytes: 1 * MiB }])]),
    ]);
  });
  after(async () => {
    await world?.stop();
  });

  async function blobGets(): Promise<Record<string, number>> {
    await new Promise((resolve) => setTimeout(resolve, 200)); // the access log line follows the response
    return {
      'docker.io': (await world.upstream.blobRequests()).length,
      'ghcr.io': (await world.registries['ghcr.io'].blobRequests()).length,
    };
  }

  /** A job on a fresh runner: Skopeo copies alpine and ghcr.io/org/app, Podman pulls busybox, by their real names. */
  async function job(name: string) {
    const runner = await world.runner(name);
    const tools = await containersTools(join(world.dir, `${name}-tools`), { wrap: world.hubNamespace!.wrap });
    const before = await blobGets();
    let dropIn = '';
    const { main, post } = await runner.job(
      runner.inputs({ registries: 'docker.io ghcr.io', 'registries-conf-d': tools.registriesConfDir }),
      async (main) => {
        dropIn = await readFile(main.outputs['registries-conf'], 'utf8');
        try {
          await tools.skopeoCopy('docker.io/library/alpine:1');
          await tools.skopeoCopy('ghcr.io/org/app:1');
          await tools.podmanPull('docker.io/library/busybox:1');
        } finally {
          await tools.remove();
        }
      },
    );
    const afterJob = await blobGets();
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.equal(
      main.outputs['registries-conf'],
      join(tools.registriesConfDir, `${workDirName(main)}.conf`),
      'named after the work directory: its own',
    );
    const mirrors = JSON.parse(main.outputs.mirrors) as Record<string, string>;
    const conf = JSON.parse(JSON.stringify(parse(dropIn))) as {
      registry: { location: string; mirror: { location: string; insecure: boolean }[] }[];
    };
    assert.deepEqual(
      conf.registry.map((r) => [r.location, r.mirror[0].location, r.mirror[0].insecure]),
      [
        ['docker.io', new URL(mirrors['docker.io']).host, true],
        ['ghcr.io', new URL(mirrors['ghcr.io']).host, true],
      ],
    );
    assert.deepEqual(await readdir(tools.home), [], 'the drop-in and the directories made for it are gone');
    return {
      post,
      fetched: { 'docker.io': afterJob['docker.io'] - before['docker.io'], 'ghcr.io': afterJob['ghcr.io'] - before['ghcr.io'] },
    };
  }

  /** The name of the work directory main made. */
  function workDirName(main: { state: Record<string, string> }): string {
    return basename((JSON.parse(main.state.cache) as { workDir: string }).workDir);
  }

  test('cold: both registries through their mirrors to the upstreams, every image in the report and saved', async () => {
    const { post, fetched } = await job('cold');
    assert.ok(fetched['docker.io'] > 0 && fetched['ghcr.io'] > 0, JSON.stringify(fetched));
    assert.match(post.summary, /\| alpine:1 \| – \| 2 blobs, /);
    assert.match(post.summary, /\| busybox:1 \| – \| 2 blobs, /);
    assert.match(post.summary, /\| ghcr\.io\/org\/app:1 \| – \| 2 blobs, /);
    assert.match(post.summary, /Saved: \d+ new entr/);
  });

  test('warm: a fresh runner, fresh Podman storage: every blob from the cache, none from an upstream', async () => {
    const { post, fetched } = await job('warm');
    assert.deepEqual(fetched, { 'docker.io': 0, 'ghcr.io': 0 });
    assert.match(post.summary, /Hit rate: 100% of bytes served/);
    assert.match(post.summary, /Saved: nothing new/);
  });
});
