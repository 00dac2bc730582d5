// Builds through the cache. A buildx docker-container builder (a real buildkitd, given the action's
// `buildkitd-config` as docker/setup-buildx-action hands it) builds a Dockerfile whose FROM lines name a Docker Hub
// image and a ghcr.io image: the cold job fills the cache from both upstreams, the warm job, on a fresh runner with
// a fresh builder, fetches no blob from either. With `listen: loopback` the builder is on the host's network
// (driver-opts network=host); with `listen: docker-bridge` it is in a container on Docker's bridge, where the
// mirrors are its only way out. And dockerd's own BuildKit (`DOCKER_BUILDKIT=1 docker build`), which on Debian's
// 20.10 here never sees a mirror added by reload: the build works, from Docker Hub directly, and the action says so
// and how to build through the cache; the classic builder it names goes through it (on an engine whose BuildKit
// reads the reloaded mirror, TEST_DOCKERD on CI, the build comes through the cache and nothing is said). The
// registries are stand-ins under their real names in a network namespace (helpers/hub-namespace.ts).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { builtInBuildkitNotice } from '../../src/builtin-buildkit.js';
import { hostsTomlReaders } from '../../src/daemon-config.js';
import { startBuildkitd } from '../helpers/buildkitd.js';
import { goTool } from '../helpers/go-tools.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import type { StepResult } from '../helpers/runner.js';
import type { Wrap } from '../helpers/process.js';
import { startWorld, type Runner, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
/**
 * Engines built from moby's source by test/prerequisites.sh (build_dockerd) when TEST_ENGINES names them, for the
 * rule's other cases: `TEST_ENGINES="27.5.1 28.5.2" npm test` (each takes minutes to build, so CI runs 20.10's only).
 */
const ENGINES = (process.env.TEST_ENGINES ?? '').split(/\s+/).filter(Boolean);
/** Two stages, one image of each registry; the result is exported, so every layer of both is fetched. */
const DOCKERFILE = ['FROM ghcr.io/org/app:1 AS app', 'FROM alpine:1', 'COPY --from=app /opt/app.bin /opt/app.bin', ''].join('\n');

/**
 * Docker Hub's stand-in with alpine:1 and busybox:1, ghcr.io's with org/app:1 (alpine's base layer under it too),
 * under their real names; every runner's dockerd is `dockerd` (default: the test dockerd).
 */
async function startBuildWorld(name: string, dockerd?: string): Promise<World> {
  const world = await startWorld(name, { hubNamespace: true, registries: ['ghcr.io'], dockerd });
  const base = makeLayer('bk-base', [{ path: 'usr/lib/base.bin', bytes: 1.5 * MiB }]);
  await Promise.all([
    world.hub!.pushImage('library/alpine', '1', [base, makeLayer('bk-alpine', [{ path: 'bin/sh', bytes: 1 * MiB }])]),
    world.hub!.pushImage('library/busybox', '1', [makeLayer('bk-busybox', [{ path: 'bin/busybox', bytes: 1 * MiB }])]),
    pushImage(world.registries['ghcr.io'].url, 'org/app', '1', [base, makeLayer('bk-app', [{ path: 'opt/app.bin', bytes: 2 * MiB }])]),
  ]);
  return world;
}

/**
 * A job on a fresh runner of `world` whose steps build FROM alpine:1 with dockerd's own BuildKit
 * (`DOCKER_BUILDKIT=1 docker build`), then FROM busybox:1 with the classic builder. Whether the BuildKit build came
 * through the cache must be what the action says (builtInBuildkitNotice, by the daemon's release and the mirror's
 * address): around it, the step logs the notice and the report has the line; through it, nothing is said.
 */
async function dockerdBuildkitJob(world: World, listen: 'loopback' | 'docker-bridge'): Promise<void> {
  const runner = await world.runner(`dockerd-buildkit-${listen}`);
  const version = (await runner.dockerd.info()).ServerVersion as string;
  const bridge = listen === 'docker-bridge' ? await world.hubNamespace!.bridge() : undefined;
  const buildkit = { fromHub: 0, mirrorRequests: 0 };
  try {
    const { main, post } = await runner.job(runner.inputs({ listen, 'cache-key': `dockerd-buildkit-${listen}` }), async (main) => {
      const mirrorLog = (JSON.parse(main.state.mirrors) as { registry: string; accessLog: string }[]).find(
        (m) => m.registry === 'docker.io',
      )!.accessLog;
      const mirrorRequests = async () => (await readFile(mirrorLog, 'utf8')).split('\n').filter(Boolean).length;
      const build = async (builder: '0' | '1', image: string) => {
        const built = await runner.dockerd.docker(['build', '--tag', `built-${builder}`, '-'], {
          input: `FROM ${image}\nLABEL built=yes\n`,
          env: { DOCKER_BUILDKIT: builder },
          besideDaemon: true,
          timeoutMs: 180_000,
        });
        assert.equal(built.code, 0, `DOCKER_BUILDKIT=${builder} docker build FROM ${image} on dockerd ${version}: ${built.stderr}`);
      };
      const [fromHub, mirrored] = [(await world.upstream.blobRequests()).length, await mirrorRequests()];
      await build('1', 'alpine:1');
      await new Promise((resolve) => setTimeout(resolve, 200)); // the access log line follows the response
      buildkit.fromHub = (await world.upstream.blobRequests()).length - fromHub;
      buildkit.mirrorRequests = (await mirrorRequests()) - mirrored;
      // One of the ways the notice names: the classic builder pulls through the mirror.
      await build('0', 'busybox:1');
    });
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.match(post.summary, /\| busybox:1 \| – \| 2 blobs, /, 'the classic build came through the cache');
    const notice = builtInBuildkitNotice(version, main.outputs.mirror);
    if (notice) {
      // The build works, its FROM image straight from Docker Hub; the step and the report say so.
      assert.equal(buildkit.mirrorRequests, 0, `the mirror saw no request of dockerd ${version}'s BuildKit build`);
      assert.ok(buildkit.fromHub >= 3, `Docker Hub served alpine's blobs to dockerd ${version}'s BuildKit directly: ${buildkit.fromHub}`);
      assert.ok(main.stdout.includes(`::notice::${notice}`), main.stdout);
      assert.ok(post.summary.includes(`\n- Not through the cache: ${notice}\n`), post.summary);
      assert.ok(!post.summary.includes('| alpine:1 |'), 'the BuildKit build did not come through the cache');
    } else {
      assert.ok(buildkit.mirrorRequests > 0, `dockerd ${version}'s BuildKit pulled through the mirror`);
      assert.match(post.summary, /\| alpine:1 \| – \| 3 blobs, /);
      assert.ok(!post.summary.includes('BuildKit'), post.summary);
    }
  } finally {
    await bridge?.remove();
  }
}

describe('BuildKit through the cache', { timeout: 600_000 }, () => {
  let world: World;

  before(async () => {
    world = await startBuildWorld('buildkit');
  });
  after(async () => {
    await world?.stop();
  });

  /** Blob downloads each upstream (Docker Hub's stand-in, ghcr.io's) has served so far. */
  async function upstreamBlobGets(): Promise<Record<string, number>> {
    await new Promise((resolve) => setTimeout(resolve, 200)); // the access log line follows the response
    return {
      'docker.io': (await world.upstream.blobRequests()).length,
      'ghcr.io': (await world.registries['ghcr.io'].blobRequests()).length,
    };
  }

  /**
   * A job on a fresh runner whose step builds DOCKERFILE with a fresh buildkitd given the action's buildkitd-config;
   * `network` says where the builder runs. What each upstream served during the job comes back with the steps.
   */
  async function buildJob(
    runner: Runner,
    network: Wrap,
    inputs: Record<string, string>,
  ): Promise<{ main: StepResult; post: StepResult; fetched: Record<string, number> }> {
    const before = await upstreamBlobGets();
    const { main, post } = await runner.job(runner.inputs({ registries: 'docker.io ghcr.io', ...inputs }), async (main) => {
      const builder = await startBuildkitd(join(runner.runnerTemp, '..', 'builder'), {
        config: main.outputs['buildkitd-config'],
        wrap: network,
      });
      try {
        await builder.build(DOCKERFILE, 'app');
      } finally {
        await builder.stop();
      }
    });
    const afterJob = await upstreamBlobGets();
    return {
      main,
      post,
      fetched: { 'docker.io': afterJob['docker.io'] - before['docker.io'], 'ghcr.io': afterJob['ghcr.io'] - before['ghcr.io'] },
    };
  }

  /** Each registry's row of the report: its mirror on `address`, one image, from cache and from upstream. */
  function assertRows(summary: string, address: string, cached: 'cold' | 'warm'): void {
    for (const registry of ['docker.io', 'ghcr.io']) {
      const [fromCache, fromUpstream] = cached === 'cold' ? ['–', '\\d+ blobs?, [\\d.]+ [KM]iB'] : ['\\d+ blobs?, [\\d.]+ [KM]iB', '–'];
      assert.match(
        summary,
        new RegExp(
          `\\| ${registry.replace(/\./g, '\\.')} \\| http://${address.replace(/\./g, '\\.')}:\\d+ \\| 1 \\| ${fromCache} \\| ${fromUpstream} \\|`,
        ),
        summary,
      );
    }
  }

  for (const listen of ['loopback', 'docker-bridge'] as const) {
    describe(`a buildx builder with buildkitd-config, listen: ${listen}`, () => {
      /** A fresh runner, and where its builder runs: on the host's network, or in a container on the bridge (made after the runner's dockerd, which removes a docker0 it finds). */
      async function job(name: string) {
        const runner = await world.runner(`${listen}-${name}`);
        const bridge = listen === 'docker-bridge' ? await world.hubNamespace!.bridge() : undefined;
        try {
          const result = await buildJob(runner, bridge?.containerWrap ?? world.hubNamespace!.wrap, {
            listen,
            'cache-key': `buildx-${listen}`,
          });
          return { ...result, address: bridge?.gateway ?? '127.0.0.1' };
        } finally {
          await bridge?.remove();
        }
      }

      test('cold: the build pulls both FROM images through their mirrors, which fill the cache from both upstreams', async () => {
        const { main, post, fetched, address } = await job('cold');
        assert.deepEqual([...main.warnings, ...post.warnings], []);
        assert.ok(fetched['docker.io'] > 0 && fetched['ghcr.io'] > 0, `both upstreams served the cold build: ${JSON.stringify(fetched)}`);
        assertRows(post.summary, address, 'cold');
        assert.match(post.summary, /Saved: \d+ new entr/);
      });

      test('warm: a fresh runner and a fresh builder get every blob of both images from the cache', async () => {
        const { main, post, fetched, address } = await job('warm');
        assert.deepEqual([...main.warnings, ...post.warnings], []);
        assert.deepEqual(fetched, { 'docker.io': 0, 'ghcr.io': 0 }, 'no upstream served a blob');
        assertRows(post.summary, address, 'warm');
        assert.match(post.summary, /Hit rate: 100% of bytes served/);
        assert.match(post.summary, /Saved: nothing new/);
      });
    });
  }

  /**
   * Docker Engine 28 and later hand their own BuildKit the hosts.toml files in /etc/docker/certs.d for every
   * registry, classic image store or not (moby daemon/hosts.go): the action writes one per mirror there, so a
   * `docker build` FROM ghcr.io comes through the cache. Older engines' BuildKit has no mirror but Docker Hub's.
   */
  test("dockerd's own BuildKit, FROM ghcr.io: a warm job takes no blob from ghcr.io on Docker Engine 28 and later", async () => {
    const job = async (name: string) => {
      const runner = await world.runner(`dockerd-buildkit-ghcr-${name}`);
      const info = await runner.dockerd.info();
      const before = await upstreamBlobGets();
      const { main, post } = await runner.job(
        runner.inputs({ registries: 'docker.io ghcr.io', 'cache-key': 'dockerd-buildkit-ghcr' }),
        async () => {
          const built = await runner.dockerd.docker(['build', '--tag', 'built-from-ghcr', '-'], {
            input: 'FROM ghcr.io/org/app:1\nLABEL built=yes\n',
            env: { DOCKER_BUILDKIT: '1' },
            besideDaemon: true,
            timeoutMs: 180_000,
          });
          assert.equal(built.code, 0, `docker build FROM ghcr.io/org/app:1 on dockerd ${info.ServerVersion}: ${built.stderr}`);
        },
      );
      const afterJob = await upstreamBlobGets();
      assert.deepEqual([...main.warnings, ...post.warnings], []);
      return {
        post,
        version: info.ServerVersion as string,
        readers: hostsTomlReaders(info.DriverStatus, info.ServerVersion),
        fromGhcr: afterJob['ghcr.io'] - before['ghcr.io'],
      };
    };
    const cold = await job('cold');
    const warm = await job('warm');
    if (warm.readers.buildkit) {
      assert.ok(cold.fromGhcr > 0, `the cold build filled the cache from ghcr.io: ${cold.fromGhcr}`);
      assert.equal(warm.fromGhcr, 0, `dockerd ${warm.version}'s BuildKit took every blob from the cache`);
      assert.match(warm.post.summary, /\| ghcr\.io\/org\/app:1 \| \d+ blobs?, [\d.]+ [KM]iB \| – \|/, warm.post.summary);
    } else {
      assert.ok(warm.fromGhcr > 0, `dockerd ${warm.version}'s BuildKit pulled from ghcr.io directly: ${warm.fromGhcr}`);
      assert.ok(!warm.post.summary.includes('| ghcr.io/org/app:1 |'), warm.post.summary);
    }
  });

  for (const listen of ['loopback', 'docker-bridge'] as const) {
    test(`dockerd's own BuildKit (the test dockerd), listen: ${listen}: through the reloaded mirror or around it, as the action says; the classic builder goes through it`, () =>
      dockerdBuildkitJob(world, listen));
  }
});

// The rule's other cases, each on an engine TEST_ENGINES names: 27 reads the reloaded mirror on loopback and goes
// around it on the bridge, 28 reads it on both (seen with TEST_ENGINES="27.5.1 28.5.2").
for (const engine of ENGINES) {
  describe(`dockerd ${engine}'s own BuildKit`, { timeout: 300_000 }, () => {
    let world: World;
    before(async () => {
      world = await startBuildWorld(`buildkit-${engine}`, goTool('github.com/docker/docker', `v${engine}`, 'cmd/dockerd'));
    });
    after(async () => {
      await world?.stop();
    });
    for (const listen of ['loopback', 'docker-bridge'] as const) {
      test(`listen: ${listen}: through the reloaded mirror or around it, as the action says`, () => dockerdBuildkitJob(world, listen));
    }
  });
}
