// Every registry, every client. A job caches docker.io, ghcr.io, quay.io and registry.k8s.io, and a
// containerd (as in kind or k3s) pulls their images by their real names through the hosts directory the
// action writes; the next job, on a fresh runner with a fresh containerd, is served every blob from the
// cache. dockerd pulls of other registries go around the cache, and the report says so. With listen:
// docker-bridge, a client in a container on Docker's bridge pulls through the mirrors. The registries are
// stand-ins under their real names in a network namespace (helpers/hub-namespace.ts).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'smol-toml';
import { hostsTomlReaders, usesContainerdStore } from '../../src/daemon-config.js';
import { assertSecretNowhere } from '../helpers/assertions.js';
import { startContainerd } from '../helpers/containerd.js';
import { IMAGE_STORE } from '../helpers/dockerd.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import { mirrorsOf, type StepResult } from '../helpers/runner.js';
import { isRunning, run } from '../helpers/process.js';
import { startWorld, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const REGISTRIES = ['ghcr.io', 'quay.io', 'registry.k8s.io'];
const IMAGES = ['docker.io/library/alpine:1', 'ghcr.io/org/app:1', 'quay.io/prometheus/node-exporter:1', 'registry.k8s.io/pause:3.9'];

describe('every registry, every client', { timeout: 300_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('registries', { hubNamespace: true, registries: REGISTRIES });
    // One base layer under two registries: stored and cached once.
    const base = makeLayer('ctd-base', [{ path: 'usr/lib/base.bin', bytes: 1.5 * MiB }]);
    await Promise.all([
      world.hub!.pushImage('library/alpine', '1', [base, makeLayer('ctd-alpine', [{ path: 'bin/sh', bytes: 1 * MiB }])]),
      pushImage(world.registries['ghcr.io'].url, 'org/app', '1', [base, makeLayer('ctd-app', [{ path: 'opt/app.bin', bytes: 2 * MiB }])]),
      pushImage(world.registries['quay.io'].url, 'prometheus/node-exporter', '1', [
        makeLayer('ctd-exporter', [{ path: 'bin/node_exporter', bytes: 1.25 * MiB }]),
      ]),
      pushImage(world.registries['registry.k8s.io'].url, 'pause', '3.9', [makeLayer('ctd-pause', [{ path: 'pause', bytes: 256 * 1024 }])]),
    ]);
  });
  after(async () => {
    await world?.stop();
  });

  /** Blob downloads each upstream (Docker Hub's stand-in and the others) served, by host. */
  async function upstreamBlobGets(): Promise<Record<string, number>> {
    await new Promise((resolve) => setTimeout(resolve, 200)); // the access log line follows the response
    const counts: Record<string, number> = { 'docker.io': (await world.upstream.blobRequests()).length };
    for (const host of REGISTRIES) counts[host] = (await world.registries[host].blobRequests()).length;
    return counts;
  }

  /** A job on a fresh runner: main, a fresh containerd pulling every image through the hosts directory, post. */
  async function jobPullingEverything(
    name: string,
    assertWarm = false,
  ): Promise<{ main: StepResult; post: StepResult; fetched: Record<string, number>; hostsTomls: Record<string, string> }> {
    const runner = await world.runner(name);
    const before = await upstreamBlobGets();
    const hostsTomls: Record<string, string> = {};
    const { main, post } = await runner.job(runner.inputs({ registries: `docker.io ${REGISTRIES.join(' ')}` }), async (main) => {
      for (const host of ['docker.io', ...REGISTRIES])
        hostsTomls[host] = await readFile(join(main.outputs['hosts-dir'], host, 'hosts.toml'), 'utf8');
      const containerd = await startContainerd(join(world.dir, `${name}-containerd`), { wrap: world.hubNamespace!.wrap });
      try {
        for (const image of IMAGES) await containerd.pull(image, main.outputs['hosts-dir']);
        assert.deepEqual((await containerd.images()).sort(), [...IMAGES].sort());
        // ci.yml's self-test on hosted runners checks a warm job with this script: it must hold here too.
        if (assertWarm) {
          const assertWarmWith = (restoredKey: string) =>
            run(process.execPath, ['test/self-test/assert-warm.mjs'], {
              env: { ...process.env, RUNNER_TEMP: runner.runnerTemp, RESTORED_KEY: restoredKey, CACHE_KEY: 'pull-cache' },
            });
          const checked = await assertWarmWith(main.outputs['restored-key']);
          assert.equal(checked.code, 0, checked.stdout + checked.stderr);
          assert.match(checked.stdout, /^restored pull-cache-index-.+\n(\d+) of \1 blobs served from the restored cache/);
          const nothingRestored = await assertWarmWith('');
          assert.equal(nothingRestored.code, 1);
          assert.match(nothingRestored.stdout, /^::error::no cache index was restored under the prefix pull-cache: /);
        }
      } finally {
        await containerd.stop();
      }
    });
    const afterJob = await upstreamBlobGets();
    const fetched = Object.fromEntries(Object.keys(afterJob).map((host) => [host, afterJob[host] - before[host]]));
    return { main, post, fetched, hostsTomls };
  }

  test('containerd, cold: a mirror per registry, hosts.toml for each, every image pulled from its upstream and saved', async () => {
    const { main, post, fetched, hostsTomls } = await jobPullingEverything('cold');
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    const mirrors = JSON.parse(main.outputs.mirrors) as Record<string, string>;
    assert.deepEqual(Object.keys(mirrors), ['docker.io', ...REGISTRIES]);
    assert.ok(
      post.summary.indexOf('| docker.io |') < post.summary.indexOf('| ghcr.io |') &&
        post.summary.indexOf('| ghcr.io |') < post.summary.indexOf('| quay.io |'),
      'rows in the order of registries',
    );
    assert.equal(new Set(Object.values(mirrors)).size, 4, 'each registry its own port');
    assert.equal(main.outputs.mirror, mirrors['docker.io'], 'dockerd gets the docker.io mirror');
    for (const host of ['docker.io', ...REGISTRIES]) {
      const hosts = parse(hostsTomls[host]) as { server: string; host: Record<string, unknown> };
      assert.deepEqual(Object.keys(hosts.host), [mirrors[host]]);
    }
    for (const host of ['docker.io', ...REGISTRIES])
      assert.ok(fetched[host] > 0, `${host}'s upstream served the cold pull: ${JSON.stringify(fetched)}`);
    assert.match(post.summary, /\| Registry \| Mirror \| Images \| From cache \| From upstream \|/);
    for (const host of ['docker.io', ...REGISTRIES])
      assert.match(
        post.summary,
        new RegExp(`\\| ${host.replace(/\./g, '\\.')} \\| http://127\\.0\\.0\\.1:\\d+ \\| 1 \\| – \\| \\d+ blobs?, `),
      );
    // containerd had the base layer from alpine already: the shared blob is stored, and saved, once.
    assert.match(post.summary, /\| ghcr\.io\/org\/app:1 \| – \| 2 blobs, 2\.0 MiB \|/);
    assert.match(post.summary, /\| \*\*Total\*\* \| \*\*–\*\* \| \*\*9 blobs, 6\.0 MiB\*\* \|/);
    assert.match(post.summary, /Saved: \d+ new entr/);
    for (const mirror of mirrorsOf(main)) assert.ok(!isRunning(mirror.pid), `${mirror.registry} mirror stopped`);
  });

  test('containerd, warm: a fresh runner and a fresh containerd get every blob of every registry from the cache', async () => {
    const { main, post, fetched } = await jobPullingEverything('warm', true);
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.deepEqual(fetched, { 'docker.io': 0, 'ghcr.io': 0, 'quay.io': 0, 'registry.k8s.io': 0 }, 'no upstream served a blob');
    assert.match(post.summary, /Hit rate: 100% of bytes served/);
    for (const host of ['docker.io', ...REGISTRIES])
      assert.match(
        post.summary,
        new RegExp(`\\| ${host.replace(/\./g, '\\.')} \\| http://127\\.0\\.0\\.1:\\d+ \\| 1 \\| \\d+ blobs?, [\\d.]+ [KM]iB \\| – \\|`),
      );
    assert.match(post.summary, /Saved: nothing new/);
  });

  test('registries without docker.io: dockerd is left alone, containerd pulls through the one mirror', async () => {
    const runner = await world.runner('ghcr-only');
    const daemonJson = await readFile(runner.dockerd.configFile, 'utf8');
    const { main, post } = await runner.job(runner.inputs({ registries: 'ghcr.io', 'cache-key': 'ghcr-only' }), async (main) => {
      assert.equal(main.outputs.mirror, '', 'no docker.io mirror');
      assert.deepEqual(Object.keys(JSON.parse(main.outputs.mirrors) as object), ['ghcr.io']);
      assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), daemonJson, 'daemon.json untouched');
      assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors ?? [], []);
      const containerd = await startContainerd(join(world.dir, 'ghcr-only-containerd'), { wrap: world.hubNamespace!.wrap });
      try {
        await containerd.pull('ghcr.io/org/app:1', main.outputs['hosts-dir']);
      } finally {
        await containerd.stop();
      }
    });
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.match(post.summary, /\| Image \| From cache \| From ghcr\.io \|/);
    assert.match(post.summary, /\| ghcr\.io\/org\/app:1 \| – \| 3 blobs, /);
    assert.ok(!post.summary.includes('pull quota'), 'no Docker Hub quota without a docker.io mirror');
  });

  test('dockerd pulls of another registry: around the cache on the classic image store (the report says how through it), through it on the containerd store', async () => {
    const runner = await world.runner('dockerd-ghcr');
    const info = await runner.dockerd.info();
    // The image store is the one asked of the test daemon (vfs named, or no graph driver on an engine whose default
    // is the containerd store), and which parts of dockerd read hosts.toml follow from it and the release.
    assert.equal(
      usesContainerdStore(info.DriverStatus),
      IMAGE_STORE === 'containerd',
      `dockerd ${info.ServerVersion}: ${JSON.stringify(info.DriverStatus)}`,
    );
    const readers = hostsTomlReaders(info.DriverStatus, info.ServerVersion);
    const hostsToml = join(dirname(runner.dockerd.configFile), 'certs.d', 'ghcr.io', 'hosts.toml');
    let throughMirror = '';
    const { main, post } = await runner.job(
      runner.inputs({ registries: 'docker.io ghcr.io', 'cache-key': 'dockerd-ghcr' }),
      async (main) => {
        assert.equal(existsSync(hostsToml), readers.pulls || readers.buildkit, `a hosts.toml for ghcr.io on dockerd ${info.ServerVersion}`);
        throughMirror = `${new URL((JSON.parse(main.outputs.mirrors) as Record<string, string>)['ghcr.io']).host}/org/app:1`;
        await runner.pull(throughMirror);
        await runner.pull('ghcr.io/org/app:1');
      },
    );
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.ok(!existsSync(hostsToml), 'post removed the hosts.toml');
    const around = `- Not through the cache: dockerd pulled ghcr.io/org/app:1 from its registry directly (dockerd's registry-mirrors cover Docker Hub only); \`docker pull ${throughMirror}\` comes through the cache`;
    if (readers.pulls) assert.ok(!post.summary.includes('Not through the cache'), post.summary);
    else assert.ok(post.summary.includes(around), post.summary);
    assert.match(post.summary, /\| ghcr\.io\/org\/app:1 \| – \| 3 blobs, /, 'the pull by the mirror address came through it');
    assert.ok(!post.summary.includes(`dockerd pulled ${throughMirror}`));
  });

  test('listen: docker-bridge: dockerd and a client in a container on the bridge pull through the gateway address', async () => {
    const runner = await world.runner('bridge');
    const bridge = await world.hubNamespace!.bridge();
    try {
      const { main, post } = await runner.job(
        runner.inputs({ registries: 'docker.io ghcr.io', listen: 'docker-bridge', 'cache-key': 'bridge' }),
        async (main) => {
          assert.deepEqual(main.warnings, []);
          assert.match(main.outputs.mirror, new RegExp(`^http://${bridge.gateway.replace(/\./g, '\\.')}:\\d+$`));
          const buildkitd = parse(await readFile(main.outputs['buildkitd-config'], 'utf8')) as {
            registry: Record<string, { mirrors?: string[] }>;
          };
          assert.match(buildkitd.registry['docker.io'].mirrors![0], new RegExp(`^${bridge.gateway.replace(/\./g, '\\.')}:\\d+$`));
          await runner.pull('alpine:1');
          // A containerd client whose only way out is the bridge, as a kind node's: the mirror is its one way to ghcr.io.
          const containerd = await startContainerd(join(world.dir, 'bridge-containerd'), { wrap: bridge.containerWrap });
          try {
            await containerd.pull('ghcr.io/org/app:1', main.outputs['hosts-dir']);
          } finally {
            await containerd.stop();
          }
        },
      );
      assert.deepEqual([...main.warnings, ...post.warnings], []);
      assert.match(post.summary, new RegExp(`\\| docker\\.io \\| http://${bridge.gateway.replace(/\./g, '\\.')}:\\d+ \\| 1 \\|`));
      assert.match(post.summary, new RegExp(`\\| ghcr\\.io \\| http://${bridge.gateway.replace(/\./g, '\\.')}:\\d+ \\| 1 \\|`));
    } finally {
      await bridge.remove();
    }
  });

  test('registry-credentials: the token appears nowhere the job leaves behind, in plain or base64 form', async () => {
    const runner = await world.runner('ghcr-credentials');
    const secret = { user: 'octocat', token: 'ghp_registryCredentialsSecret0123456789' };
    const inputs = runner.inputs({
      registries: 'docker.io ghcr.io',
      'registry-credentials': `ghcr.io=${secret.user}:${secret.token}`,
      'cache-key': 'ghcr-credentials',
    });
    // dockerd through the ghcr.io mirror's address: the mirror pulls from ghcr.io as octocat.
    await assertSecretNowhere(
      world,
      runner,
      secret,
      inputs,
      (main) => (
        assert.deepEqual(main.warnings, []),
        runner.pull(`${new URL((JSON.parse(main.outputs.mirrors) as Record<string, string>)['ghcr.io']).host}/org/app:1`)
      ),
    );
  });
});
