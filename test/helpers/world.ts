// The world a job of the action lives in, made of real parts: an upstream registry standing in for Docker
// Hub, the Actions cache service, the release downloads, and per job a fresh runner (its own dockerd,
// RUNNER_TEMP and daemon.json). Every end-to-end test builds its scenario from these.
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WORK_DIR_PREFIX } from '../../src/work-dir.js';
import { startCacheService, type CacheService } from './cache-service.js';
import { startDockerd, type Dockerd } from './dockerd.js';
import { startHub, type Hub, type HubOptions } from './hub.js';
import { startHubNamespace, type HubNamespace, type HubNamespaceOptions } from './hub-namespace.js';
import { startReleaseServer, type ReleaseServer } from './release-server.js';
import { runJob, runStep, type StepOptions, type StepResult } from './runner.js';
import { startUpstream, type AccessLogLine, type Upstream } from './upstream.js';

export interface World {
  dir: string;
  /** The registry the images live in (with the hub, the registry behind its front). */
  upstream: Upstream;
  /** The Docker Hub stand-in, when the world was started with one: the action's upstream is then hub.url. */
  hub?: Hub;
  /**
   * With `hubNamespace`: the network namespace where the hub answers as registry-1.docker.io and auth.docker.io
   * (hub-namespace.ts). Every runner's dockerd and every step run inside it; the cache service, Azurite and the
   * release server are exposed inside at their own addresses; the action's upstream is left at its default.
   */
  hubNamespace?: HubNamespace;
  /** With `registries`: the stand-in of each other registry, by host (reached under its real name inside the namespace). */
  registries: Record<string, Upstream>;
  cache: CacheService;
  release: ReleaseServer;
  /** Shared by every job, as on a self-hosted runner: the registry binary is downloaded once. */
  toolCache: string;
  /** A fresh runner: new dockerd (empty data-root) with `daemonJson` as its config file, new RUNNER_TEMP. */
  runner(name: string, daemonJson?: string): Promise<Runner>;
  stop(): Promise<void>;
}

export interface Runner {
  dockerd: Dockerd;
  runnerTemp: string;
  /** The step's `with:` that points the action at this world; `extra` adds or overrides inputs. */
  inputs(extra?: Record<string, string>): Record<string, string>;
  /** Runs main, then the job's steps, then post, as the Actions runner does. */
  job(
    inputs: Record<string, string>,
    steps?: (main: StepResult) => Promise<void>,
    env?: Record<string, string>,
    options?: Pick<StepOptions, 'killMainAfterMs' | 'action'>,
  ): Promise<{ main: StepResult; post: StepResult }>;
  /**
   * Runs only a job's main step, with a RUNNER_TEMP of its own; `post` runs its post step later. Jobs sharing this
   * runner's dockerd (as on a self-hosted host) interleave this way.
   */
  startJob(inputs: Record<string, string>, env?: Record<string, string>): Promise<StartedJob>;
  /** `docker pull` on this runner's daemon; throws with the daemon's words when it fails. */
  pull(image: string): Promise<void>;
  stop(): Promise<void>;
}

export interface StartedJob {
  main: StepResult;
  runnerTemp: string;
  post(): Promise<StepResult>;
}

export interface WorldOptions {
  /** More dockerd flags for every runner's daemon, e.g. ['--storage-driver=overlay2'] (the last one given wins). */
  dockerdArgs?: string[];
  /** The dockerd every runner runs (default: the test dockerd, Debian's 20.10 or TEST_DOCKERD): another engine release. */
  dockerd?: string;
  /** Stand in for Docker Hub as it really behaves (token auth, private repositories, rate limits) instead of an open registry. */
  hub?: HubOptions;
  /**
   * Put the Docker Hub stand-in (with `hub`'s options) under Docker Hub's real names in a network namespace and run
   * every runner's dockerd and every step inside it; inputs() then leaves `upstream` at its default
   * (https://registry-1.docker.io).
   */
  hubNamespace?: boolean | Pick<HubNamespaceOptions, 'name'>;
  /** Registries other than Docker Hub (ghcr.io, quay.io, ...), each an upstream of its own under its real name; needs hubNamespace. */
  registries?: string[];
}

export async function startWorld(name: string, options: WorldOptions = {}): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const nsOptions = options.hubNamespace ? (options.hubNamespace === true ? {} : options.hubNamespace) : undefined;
  if (options.registries?.length && !nsOptions)
    throw new Error('world: registries are reached under their real names, which needs hubNamespace');
  const registries = Object.fromEntries(
    await Promise.all((options.registries ?? []).map(async (host) => [host, await startUpstream(join(dir, `upstream-${host}`))] as const)),
  );
  const registryUrls = Object.fromEntries(Object.entries(registries).map(([host, upstream]) => [host, upstream.url]));
  const hubNamespace = nsOptions
    ? await startHubNamespace(join(dir, 'hub-namespace'), { ...nsOptions, hub: options.hub ?? {}, registries: registryUrls })
    : undefined;
  const hub = hubNamespace ? hubNamespace.hub : options.hub ? await startHub(join(dir, 'hub'), options.hub) : undefined;
  const parts = Promise.all([
    hub ? hub.registry : startUpstream(join(dir, 'upstream')),
    startCacheService(join(dir, 'cache-service')),
    startReleaseServer(),
  ]);
  // A namespace left behind outlives this process; delete it if the rest of the world does not come up.
  if (hubNamespace) void parts.catch(() => hubNamespace.stop().catch(() => {}));
  const [upstream, cache, release] = await parts;
  /** Stops what every world has besides its Docker Hub: the cache service, the release server, the other registries. */
  const stopShared = () => [cache.stop(), release.stop(), ...Object.values(registries).map((r) => r.stop())];
  if (hubNamespace) {
    try {
      const ports = [new URL(cache.env.ACTIONS_RESULTS_URL).port, cache.storagePort, cache.api.port, new URL(release.baseUrl).port];
      await hubNamespace.expose(...ports.map(Number));
    } catch (error) {
      await Promise.allSettled([hubNamespace.stop(), ...stopShared()]);
      throw error;
    }
  }
  const toolCache = join(dir, 'tool-cache');
  const runners: Runner[] = [];
  let jobs = 0;
  return {
    dir,
    upstream,
    hub,
    hubNamespace,
    registries,
    cache,
    release,
    toolCache,
    async runner(runnerName, daemonJson = '{}\n') {
      const base = join(dir, 'runners', runnerName);
      const runnerTemp = join(base, 'temp');
      await mkdir(runnerTemp, { recursive: true });
      await writeFile(join(base, 'daemon.json'), daemonJson);
      const dockerd = await startDockerd(join(base, 'dockerd'), {
        configFile: join(base, 'daemon.json'),
        extraArgs: options.dockerdArgs,
        binary: options.dockerd,
        netns: hubNamespace,
      });
      const stepOptions = (
        inputs: Record<string, string>,
        env: Record<string, string>,
        options: Pick<StepOptions, 'killMainAfterMs' | 'action'>,
        temp: string,
      ): StepOptions => ({
        ...options,
        inputs,
        dir: join(base, `job-${++jobs}`),
        wrap: hubNamespace?.wrap,
        env: {
          ...hubNamespace?.env,
          ...cache.env,
          DOCKER_HOST: dockerd.host,
          RUNNER_TEMP: temp,
          RUNNER_TOOL_CACHE: toolCache,
          GITHUB_WORKSPACE: join(base, 'workspace'),
          GITHUB_RUN_ID: String(1000 + jobs),
          GITHUB_RUN_ATTEMPT: '1',
          // The runner marks each job's processes with it, and ends those still running when the job ends.
          RUNNER_TRACKING_ID: `github_${randomUUID()}`,
          ...env,
        },
      });
      const runner: Runner = {
        dockerd,
        runnerTemp,
        inputs: (extra = {}) => ({
          ...(hubNamespace ? {} : { upstream: hub?.url ?? upstream.url }),
          'daemon-config': dockerd.configFile,
          // As root the action would write its drop-in into the machine's /etc/containers: this runner's own instead.
          'registries-conf-d': join(base, 'containers', 'registries.conf.d'),
          'registry-version': release.version,
          'registry-download-url': release.baseUrl,
          'registry-sha256': release.sha256,
          ...extra,
        }),
        job: (inputs, steps, env = {}, options = {}) => runJob(stepOptions(inputs, env, options, runnerTemp), steps),
        async startJob(inputs, env = {}) {
          const temp = await mkdtemp(join(base, 'temp-'));
          const options = stepOptions(inputs, env, {}, temp);
          const main = await runStep('main', options, {});
          return { main, runnerTemp: temp, post: () => runStep('post', options, main.state) };
        },
        async pull(image) {
          const pulled = await dockerd.docker(['pull', image], { timeoutMs: 120_000 });
          if (pulled.code !== 0) {
            // The mirror's side of it, while the action's work directory is still there.
            const workDirs = (await readdir(runnerTemp).catch(() => [])).filter((name) => name.startsWith(WORK_DIR_PREFIX));
            const log = (
              await Promise.all(workDirs.map((name) => readFile(join(runnerTemp, name, 'registry.log'), 'utf8').catch(() => '')))
            ).join('\n');
            const errors = log
              .split('\n')
              .filter((l) => /level=(error|warning|panic)/.test(l))
              .slice(-8)
              .join('\n');
            throw new Error(
              `docker pull ${image} failed: ${pulled.stderr || pulled.stdout}${errors ? `\nthe mirror's log:\n${errors}` : ''}`,
            );
          }
        },
        stop: () => dockerd.stop(),
      };
      runners.push(runner);
      return runner;
    },
    async stop() {
      await Promise.allSettled(runners.map((r) => r.stop()));
      await Promise.allSettled([hubNamespace ? hubNamespace.stop() : hub ? hub.stop() : upstream.stop(), ...stopShared()]);
      if (!process.env.KEEP_TEST_DIRS) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The upstream's blob downloads made while `during` ran. */
export async function upstreamBlobFetches(upstream: Upstream, during: () => Promise<unknown>): Promise<AccessLogLine[]> {
  const before = (await upstream.blobRequests()).length;
  await during();
  await new Promise((resolve) => setTimeout(resolve, 200)); // the access log line follows the response
  return (await upstream.blobRequests()).slice(before);
}
