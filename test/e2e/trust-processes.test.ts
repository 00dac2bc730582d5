// The trust boundary, as a user of a persistent self-hosted runner lives it: an earlier job may have replaced
// what the tool cache holds, a step or a container of the job may try to push into the cache, a process may
// read /proc of the action's children or take a mirror's port, the step may be cancelled at any moment, and a
// workflow may use the action twice in one job. Docker Hub and ghcr.io are stand-ins under their real names
// in a network namespace (helpers/hub-namespace.ts); the tool cache is shared by the world's jobs.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertLeftAsItWas, environmentOf, processesHolding, sampleProcesses, workersOf, type Sampled } from '../helpers/assertions.js';
import { startEngineGate } from '../helpers/engine-gate.js';
import { makeLayer, pushImage, type PushedImage } from '../helpers/images.js';
import { isRunning, run, waitFor, type Wrap } from '../helpers/process.js';
import { hubMirror, mirrorsOf, type StepResult } from '../helpers/runner.js';
import { markingRegistry, replaceCachedRegistry } from '../helpers/tool-cache.js';
import { startWorld, type Runner, type World } from '../helpers/world.js';
import { REGISTRY_UNDER_TEST } from '../helpers/registry-under-test.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{}\n';
const HUB_USER = 'octocat';
const HUB_TOKEN = 'dckr_pat_trustBoundaryHubToken_4f1c9e';
const GHCR_TOKEN = 'ghp_trustBoundaryGhcrToken_8d2a7b5e01';
/** What every child gets: the system's PATH, the locale, and the job's RUNNER_TRACKING_ID. */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const TRACKING_ID = 'github_4e2b9c1d-trust-processes';
const EVERY_CHILD = { PATH: SYSTEM_PATH, LANG: 'C.UTF-8', RUNNER_TRACKING_ID: TRACKING_ID };
/** What a registry's environment may hold besides: OpenTelemetry off, and the runner's proxy and CA settings. */
const NETWORK = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'SSL_CERT_FILE', 'SSL_CERT_DIR'];
const REGISTRY_MAY_GET = [...Object.keys(EVERY_CHILD), 'OTEL_TRACES_EXPORTER', ...NETWORK];
/** The network settings: the cache service's address and token come on its stdin. */
const RESTORE_WORKER_MAY_GET = [...Object.keys(EVERY_CHILD), ...NETWORK];

describe('trust boundary: restored bytes, pushes, child processes', { timeout: 600_000 }, () => {
  let world: World;
  let alpine: PushedImage;

  before(async () => {
    world = await startWorld('trust-processes', { hubNamespace: true, hub: { users: { [HUB_USER]: HUB_TOKEN } }, registries: ['ghcr.io'] });
    alpine = await world.hub!.pushImage('library/alpine', '1', [makeLayer('trust-alpine', [{ path: 'bin/sh', bytes: 1 * MiB }])]);
    await pushImage(world.registries['ghcr.io'].url, 'org/app', '1', [makeLayer('trust-app', [{ path: 'opt/app.bin', bytes: 1 * MiB }])]);
    // The runner's first job: the registry lands in the tool cache, alpine:1 in the cache.
    const first = await world.runner('first', DAEMON_JSON);
    await first.job(first.inputs(), () => first.pull('alpine:1'));
  });
  after(() => world?.stop());

  test('a registry an earlier job replaced in the tool cache is never run: a warning, a fresh download, and the job pulls through the cache', async () => {
    const marker = join(world.dir, 'replaced-registry-ran');
    assert.ok(replaceCachedRegistry(world.toolCache, markingRegistry(marker)).length > 0, 'the tool cache held a registry to replace');
    const downloads = world.release.requests.length;
    const runner = await world.runner('replaced', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs(), () => runner.pull('alpine:1'));
    assert.ok(!existsSync(marker), 'the replaced registry ran');
    assert.match(
      main.warnings.join('\n'),
      /the registry tarball in the tool cache \(.+\) has SHA-256 [0-9a-f]{64}, not [0-9a-f]{64} \(registry-sha256\): it is not run; downloading the release again/,
    );
    assert.equal(world.release.requests.length, downloads + 1, 'the release was downloaded again');
    assert.match(post.summary, /\| alpine:1 \| \d+ blobs?, [\d.]+ MiB \| – \|/, 'served from the cache');
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);

    // The fresh download went back into the tool cache: the next job finds a good copy again.
    const next = await world.runner('after-replaced', DAEMON_JSON);
    const again = await next.job(next.inputs(), () => next.pull('alpine:1'));
    assert.deepEqual([...again.main.warnings, ...again.post.warnings], []);
    assert.equal(world.release.requests.length, downloads + 1, 'no download');
    assert.ok(!existsSync(marker));
  });

  test('registry-sha256 holds for a tool-cache hit too: a registry that does not match it is never run', async () => {
    const runner = await world.runner('sha256-on-hit', DAEMON_JSON);
    const { main, post } = await runner.job(runner.inputs({ 'registry-sha256': 'ab'.repeat(32) }), async (main) => {
      assert.equal(main.outputs.mirror, '', 'no mirror');
      assert.deepEqual(mirrorsOf(main), []);
      await runner.pull('alpine:1'); // directly from Docker Hub
    });
    assert.match(
      main.warnings.join('\n'),
      /the registry tarball in the tool cache \(.+\) has SHA-256 [0-9a-f]{64}, not (ab){32} \(registry-sha256\): it is not run/,
    );
    assert.match(main.warnings.join('\n'), /could not set up the cache: checksum mismatch for .+: expected (ab){32}/);
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });

  /**
   * What a client gets when it tries to write through a mirror, by `curl` run through `wrap` (from where the
   * mirror is reached): start an upload, mount a blob the storage holds, put a manifest, delete one.
   */
  async function writeAttempts(wrap: Wrap, url: string): Promise<Record<string, string>> {
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: 2, digest: alpine.configDigest },
      layers: [],
    });
    const attempts: Record<string, string[]> = {
      'POST blobs/uploads/': ['-X', 'POST', `${url}/v2/evil/pushed/blobs/uploads/`],
      'POST blobs/uploads/?mount=': [
        '-X',
        'POST',
        `${url}/v2/evil/pushed/blobs/uploads/?mount=${alpine.layers[0].digest}&from=library/alpine`,
      ],
      'PUT manifests/1': [
        '-X',
        'PUT',
        '-H',
        'Content-Type: application/vnd.docker.distribution.manifest.v2+json',
        '--data-binary',
        manifest,
        `${url}/v2/evil/pushed/manifests/1`,
      ],
      'DELETE manifests/DIGEST': ['-X', 'DELETE', `${url}/v2/library/alpine/manifests/${alpine.manifestDigest}`],
    };
    const statuses: Record<string, string> = {};
    for (const [what, args] of Object.entries(attempts)) {
      const { command, args: wrapped } = wrap('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', ...args]);
      statuses[what] = (await run(command, wrapped, { timeoutMs: 20_000 })).stdout;
    }
    return statuses;
  }

  const REFUSED = {
    'POST blobs/uploads/': '405',
    'POST blobs/uploads/?mount=': '405',
    'PUT manifests/1': '405',
    'DELETE manifests/DIGEST': '405',
  };

  /** A job with an offline docker.io mirror (its upstream unreachable, alpine:1 in the cache) and a ghcr.io proxy. */
  const bothModes = (runner: Runner, extra: Record<string, string> = {}) =>
    runner.inputs({ registries: 'docker.io ghcr.io', upstream: 'http://127.0.0.1:9', 'cache-key': 'pull-cache', ...extra });

  test('listen: loopback: no mirror takes a push, proxy or offline, by docker push or by the registry API', async () => {
    const runner = await world.runner('push-loopback', DAEMON_JSON);
    const { main, post } = await runner.job(bothModes(runner), async (main) => {
      const mirrors = mirrorsOf(main);
      assert.deepEqual(
        mirrors.map((m) => m.registry),
        ['docker.io', 'ghcr.io'],
      );
      assert.ok(
        JSON.parse(main.state.mirrors).find((m: { registry: string; offline: boolean }) => m.registry === 'docker.io').offline,
        'the docker.io mirror is offline',
      );
      await runner.pull('alpine:1');
      for (const mirror of mirrors) {
        assert.deepEqual(await writeAttempts(world.hubNamespace!.wrap, mirror.url), REFUSED, `${mirror.registry}'s mirror`);
        const target = `${new URL(mirror.url).host}/evil/pushed:1`;
        assert.equal((await runner.dockerd.docker(['tag', 'alpine:1', target])).code, 0);
        const pushed = await runner.dockerd.docker(['push', target], { timeoutMs: 60_000 });
        assert.notEqual(pushed.code, 0, `docker push ${target} was taken: ${pushed.stdout}`);
      }
    });
    assert.match(main.warnings.join('\n'), /cannot be reached: the mirror serves what the cache holds \(1 image\), offline/);
    assert.ok(!post.summary.includes('evil/pushed'), 'nothing pushed is in the report');
  });

  test('listen: docker-bridge: a container on the bridge cannot push to any mirror either', async () => {
    const runner = await world.runner('push-bridge', DAEMON_JSON);
    const bridge = await world.hubNamespace!.bridge();
    try {
      await runner.job(bothModes(runner, { listen: 'docker-bridge' }), async (main) => {
        const mirrors = mirrorsOf(main);
        assert.deepEqual(
          mirrors.map((m) => [m.registry, new URL(m.url).hostname]),
          [
            ['docker.io', bridge.gateway],
            ['ghcr.io', bridge.gateway],
          ],
        );
        for (const mirror of mirrors)
          assert.deepEqual(await writeAttempts(bridge.containerWrap, mirror.url), REFUSED, `${mirror.registry}'s mirror`);
      });
    } finally {
      await bridge.remove();
    }
  });

  test("no token is in the environment or the command line of any process while the job's steps run; each carries the job's RUNNER_TRACKING_ID", async () => {
    const runner = await world.runner('tokens', DAEMON_JSON);
    // The prefetch worker's pull waits at the gate: it is still running while the steps look.
    const gate = await startEngineGate(runner.dockerd.socket, join(world.dir, 'tokens-engine.sock'));
    const secrets = [HUB_TOKEN, GHCR_TOKEN, world.cache.env.ACTIONS_RUNTIME_TOKEN, world.cache.api.writeToken];
    const inputs = runner.inputs({
      registries: 'docker.io ghcr.io',
      'dockerhub-username': HUB_USER,
      'dockerhub-token': HUB_TOKEN,
      'registry-credentials': `ghcr.io=${HUB_USER}:${GHCR_TOKEN}`,
      'github-token': world.cache.api.writeToken,
    });
    // The entries' lookups stall: the background restore and the mirrors' front are running while the steps look.
    world.cache.setFault({ methods: ['GetCacheEntryDownloadURL'], keys: /^pull-cache-(?!index-)/, hangMs: 3_000 });
    try {
      const { main, post } = await runner.job(
        inputs,
        async (main) => {
          const workers = workersOf(main);
          for (const worker of ['restore worker', "mirrors' front"]) assert.ok(isRunning(workers[worker]), `the ${worker} runs`);
          assert.deepEqual(processesHolding(secrets), [], 'while the cache restores');
          assert.deepEqual(environmentOf(workers["mirrors' front"]), EVERY_CHILD, "the mirrors' front");
          const restoreEnv = environmentOf(workers['restore worker']);
          assert.equal(restoreEnv.RUNNER_TRACKING_ID, TRACKING_ID, "the restore worker is marked as the job's");
          assert.deepEqual(
            Object.keys(restoreEnv).filter((name) => !RESTORE_WORKER_MAY_GET.includes(name)),
            [],
            'the restore worker: the network settings only',
          );
          world.cache.setFault(null);
          const mirrors = mirrorsOf(main);
          const prefetch = JSON.parse(main.state.prefetch) as { pid: number };
          await waitFor('the prefetch to reach the gate', async () => gate.held() > 0, 30_000);
          for (const pid of [...mirrors.map((m) => m.pid), prefetch.pid]) assert.ok(isRunning(pid), `pid ${pid} runs`);
          assert.deepEqual(processesHolding(secrets), []);
          for (const mirror of mirrors) {
            const env = environmentOf(mirror.pid);
            assert.equal(env.OTEL_TRACES_EXPORTER, 'none');
            assert.equal(env.RUNNER_TRACKING_ID, TRACKING_ID, `${mirror.registry}'s registry is marked as the job's`);
            assert.deepEqual(
              Object.keys(env).filter((name) => !REGISTRY_MAY_GET.includes(name)),
              [],
              `${mirror.registry}'s registry`,
            );
          }
          assert.deepEqual(environmentOf(prefetch.pid), { ...EVERY_CHILD, DOCKER_HOST: gate.host }, 'the prefetch worker');
          gate.open();
          await runner.pull('alpine:1');
        },
        { DOCKER_HOST: gate.host, RUNNER_TRACKING_ID: TRACKING_ID },
      );
      assert.deepEqual([...main.warnings, ...post.warnings], []);
      assert.match(post.summary, /Prefetched in the background: 1 image/);
    } finally {
      world.cache.setFault(null);
      gate.open();
      await gate.stop();
    }
  });

  test('through a cold and a warm job (many entries restored and saved, pulls, post), no process but the step itself ever holds a token', async () => {
    // Ten images of a layer each: ten entries saved by the cold job's post and restored by the warm job's worker, each
    // a tar and a zstd.
    const tags = Array.from({ length: 10 }, (_, i) => String(i));
    for (const tag of tags)
      await world.hub!.pushImage('library/sampled', tag, [makeLayer(`sampled-${tag}`, [{ path: `opt/part-${tag}.bin`, bytes: 3 * MiB }])]);
    await pushImage(world.registries['ghcr.io'].url, 'org/sampled', '1', [
      makeLayer('sampled-ghcr', [{ path: 'opt/app.bin', bytes: 512 * 1024 }]),
    ]);
    const runner = await world.runner('sampled', DAEMON_JSON);
    const pullAll = async () => {
      for (const tag of tags) await runner.pull(`sampled:${tag}`);
    };
    const inputs = runner.inputs({
      registries: 'docker.io ghcr.io',
      'cache-key': 'sampled',
      'dockerhub-username': HUB_USER,
      'dockerhub-token': HUB_TOKEN,
      'registry-credentials': `ghcr.io=${HUB_USER}:${GHCR_TOKEN}`,
      // Post prunes with it (in-process requests): no child may hold it either.
      'github-token': world.cache.api.writeToken,
    });
    const ghcr = (main: StepResult) => new URL(mirrorsOf(main).find((m) => m.registry === 'ghcr.io')!.url).host;
    const sampler = await sampleProcesses([HUB_TOKEN, GHCR_TOKEN, world.cache.env.ACTIONS_RUNTIME_TOKEN, world.cache.api.writeToken], {
      user: HUB_USER,
    });
    let sampled: Sampled | undefined;
    try {
      const entriesBefore = world.cache.entries().length;
      const cold = await runner.job(inputs, pullAll);
      assert.ok(world.cache.entries().length >= entriesBefore + 10, 'the cold job saved its layers');
      await runner.dockerd.docker(['rmi', ...tags.map((tag) => `sampled:${tag}`)]);
      const warm = await runner.job(inputs, async (main) => {
        await pullAll();
        await runner.pull(`${ghcr(main)}/org/sampled:1`);
      });
      sampled = await sampler.stop();
      for (const step of [cold.main, cold.post, warm.main, warm.post]) assert.deepEqual(step.warnings, []);
      assert.match(warm.post.summary, /\| sampled:9 \| \d+ blobs?, [\d.]+ MiB \| – \|/, 'the warm pull came from the cache');
      assert.match(warm.post.summary, /- Pruned nothing: /, 'post pruned with the token');
      assert.ok(
        world.cache.entries().some((e) => e.key.startsWith('sampled-') && e.createdAt > Date.now() - warm.post.ms - 1_000),
        'the warm post saved',
      );
    } finally {
      sampled ??= await sampler.stop();
    }
    assert.ok(sampled.rounds > 100, `the sampler looked ${sampled.rounds} times`);
    assert.deepEqual(sampled.found, [], 'processes that held a token');
  });

  test('two uses of the action in one job: each its own work directory and mirrors; the inner post leaves the outer use working', async () => {
    const runner = await world.runner('two-uses', DAEMON_JSON);
    const dirsOf = async () => (await readdir(runner.runnerTemp)).sort();
    const outer = await runner.job(runner.inputs({ 'cache-key': 'outer-use' }), async (outerMain) => {
      const outerMirror = hubMirror(outerMain);
      const inner = await runner.job(runner.inputs({ registries: 'ghcr.io', 'cache-key': 'inner-use' }), async (innerMain) => {
        assert.equal((await dirsOf()).length, 2, 'a work directory each');
        await runner.pull('alpine:1');
        await runner.pull(`${new URL(mirrorsOf(innerMain)[0].url).host}/org/app:1`);
      });
      assert.deepEqual([...inner.main.warnings, ...inner.post.warnings], []);
      assert.match(inner.post.summary, /\| ghcr\.io\/org\/app:1 \| – \| \d+ blobs?, /);
      // The inner use is gone; the outer one still serves, from its own work directory.
      assert.equal((await dirsOf()).length, 1);
      assert.ok(isRunning(outerMirror.pid), 'the outer mirror still runs');
      await runner.dockerd.docker(['rmi', 'alpine:1']);
      await runner.pull('alpine:1');
    });
    assert.deepEqual([...outer.main.warnings, ...outer.post.warnings], []);
    assert.match(outer.post.summary, /\| alpine:1 \| /);
    for (const prefix of ['outer-use-index-', 'inner-use-index-'])
      assert.ok(
        world.cache.entries().some((e) => e.key.startsWith(prefix)),
        `${prefix}* saved`,
      );
    assert.deepEqual(await dirsOf(), [], 'nothing left in RUNNER_TEMP');
  });

  /** A registry-path that runs `before` (shell), then the registry under test in its place. */
  async function registryWrapper(name: string, before: string): Promise<string> {
    const path = join(world.dir, name);
    await writeFile(path, `#!/bin/sh\n${before}\nexec ${REGISTRY_UNDER_TEST.binary()} "$@"\n`);
    await chmod(path, 0o755);
    return path;
  }

  test('the step cancelled while the registry starts: post knows its pid and stops it', async () => {
    const pidFile = join(world.dir, 'cancelled-registry.pid');
    // The registry's parent is the main step: it is killed after the spawn and before /v2/ can answer.
    const registry = await registryWrapper('cancelling-registry', `echo $$ > '${pidFile}'\n/bin/sleep 1\nkill -9 $PPID`);
    const runner = await world.runner('cancelled-at-start', DAEMON_JSON);
    try {
      const { main, post } = await runner.job(runner.inputs({ 'registry-path': registry, 'cache-key': 'cancelled-at-start' }));
      assert.notEqual(main.exitCode, 0, 'main was killed');
      assert.equal(post.exitCode, 0, post.stdout);
      assert.ok(!isRunning(Number(readFileSync(pidFile, 'utf8'))), 'the registry was stopped by post');
      assert.deepEqual(await readdir(runner.runnerTemp), []);
    } finally {
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0;
      if (pid && isRunning(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('a server that takes the mirror port first is never taken for the mirror', async () => {
    const impostorPidFile = join(world.dir, 'impostor.pid');
    const impostor = join(world.dir, 'impostor.cjs');
    // Answers /v2/ like a registry on the address of the config it is given.
    await writeFile(
      impostor,
      `const addr = /addr: (\\S+):(\\d+)/.exec(require('node:fs').readFileSync(process.argv[2], 'utf8'));
require('node:http').createServer((req, res) => res.writeHead(200, { 'docker-distribution-api-version': 'registry/2.0' }).end('{}')).listen(Number(addr[2]), addr[1]);`,
    );
    // What a process could do between the action's check that the port is free and the registry's start.
    const registry = await registryWrapper(
      'port-taken-registry',
      `'${process.execPath}' '${impostor}' "$2" &\necho $! > '${impostorPidFile}'\nwhile ! /usr/bin/curl -s -o /dev/null http://$(/bin/sed -n 's/^ *addr: //p' "$2")/v2/; do /bin/sleep 0.1; done`,
    );
    const runner = await world.runner('port-taken', DAEMON_JSON);
    try {
      const { main, post } = await runner.job(runner.inputs({ 'registry-path': registry, 'cache-key': 'port-taken' }));
      assert.equal(main.outputs.mirror, '', 'no mirror');
      assert.match(main.warnings.join('\n'), /could not set up the cache: the registry exited with 1 at start: .*address already in use/);
      await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
    } finally {
      const pid = existsSync(impostorPidFile) ? Number(readFileSync(impostorPidFile, 'utf8')) : 0;
      if (pid && isRunning(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
