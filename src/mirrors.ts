// One Distribution proxy per registry host (a proxy serves one upstream), each on its own port, with its
// own root in the shared storage: the mirrors the job's clients pull through.
import * as core from '@actions/core';
import type { Inputs, Listen } from './context.js';
import { probeUpstream, type Credentials, type UpstreamProbe } from './docker-hub.js';
import { DOCKER_HUB, splitRepository } from './images.js';
import { warn } from './log.js';
import { commandOutput } from './processes.js';
import { assertPortFree, freePort, startRegistry, stopRegistry } from './registry.js';
import type { MirrorState } from './state.js';
import { prepareRegistryRoot } from './storage.js';
import type { WorkDir } from './work-dir.js';

export interface MirrorPlan {
  registry: string;
  /** The registry's API endpoint the proxy pulls from. */
  upstream: string;
  credentials: Credentials | null;
}

/** What each listed registry's proxy pulls from, and as whom. */
export function mirrorPlans(
  inputs: Pick<Inputs, 'registries' | 'registryUpstreams' | 'upstream' | 'registryCredentials' | 'dockerhubUsername' | 'dockerhubToken'>,
): MirrorPlan[] {
  return inputs.registries.map((registry) =>
    registry === DOCKER_HUB
      ? {
          registry,
          upstream: inputs.upstream,
          credentials: inputs.dockerhubUsername ? { username: inputs.dockerhubUsername, password: inputs.dockerhubToken } : null,
        }
      : {
          registry,
          upstream: inputs.registryUpstreams[registry] ?? `https://${registry}`,
          credentials: inputs.registryCredentials[registry] ?? null,
        },
  );
}

/** Whether each upstream answers and takes its credentials; Docker Hub's are checked against a repository scope it knows. */
export function probeUpstreams(plans: MirrorPlan[]): Promise<UpstreamProbe[]> {
  return Promise.all(plans.map((p) => probeUpstream(p.upstream, p.credentials, p.registry === DOCKER_HUB ? undefined : '')));
}

/**
 * The address the mirrors listen on: loopback, or the Docker bridge's gateway (docker0's IPv4 address), which
 * containers reach. Read with `ip`, not os.networkInterfaces(): that leaves out a docker0 without carrier,
 * as it is while no container runs.
 */
export async function listenAddress(listen: Listen, showDocker0 = ipAddrShowDocker0): Promise<string> {
  if (listen === 'loopback') return '127.0.0.1';
  const gateway = firstIPv4(await showDocker0());
  if (!gateway)
    throw new Error(
      'listen is docker-bridge, but this runner has no docker0 interface with an IPv4 address (the Docker bridge): use listen: loopback',
    );
  return gateway;
}

function ipAddrShowDocker0(): Promise<string> {
  return commandOutput('ip', ['-4', '-o', 'addr', 'show', 'dev', 'docker0'], { timeout: 5_000 }).catch(() => '');
}

/** The first address of `ip -4 -o addr show` output ("3: docker0    inet 172.17.0.1/16 brd ..."). */
export function firstIPv4(ipOutput: string): string {
  return /\binet (\d{1,3}(?:\.\d{1,3}){3})\//.exec(ipOutput)?.[1] ?? '';
}

export interface MirrorsOptions {
  binary: string;
  dir: WorkDir;
  address: string;
  /** The port of each registry's proxy where it is set (docker.io's `port` input, or one behind a front); a free one otherwise. */
  ports: ReadonlyMap<string, number>;
  /** The repository of each image restored: a registry that cannot be reached still serves its images. */
  restoredImages: string[];
}

/**
 * Starts each registry's proxy, all at once. A registry whose upstream cannot be reached serves what the
 * cache holds for it, offline; with nothing to serve it gets no mirror. `running` gets the mirrors spawned so
 * far (in the order of the plans) as soon as each process exists, before it answers, and again when one that
 * failed to start is gone: post stops whatever main left running, whenever main was cut off.
 * Throws only when no mirror starts.
 */
export async function startMirrors(
  plans: MirrorPlan[],
  probes: UpstreamProbe[],
  o: MirrorsOptions,
  running: (mirrors: MirrorState[]) => void,
): Promise<MirrorState[]> {
  const slots: (MirrorState | undefined)[] = plans.map(() => undefined);
  const report = () => running(slots.filter((m): m is MirrorState => m !== undefined));
  const outcomes = await Promise.allSettled(
    plans.map(async (plan, i) => {
      try {
        return await startMirror(plan, probes[i], o, (spawned) => {
          slots[i] = spawned;
          report();
        });
      } catch (e) {
        // A registry that did not come up was stopped, or exited: nothing of it is left for post to stop.
        if (slots[i]) {
          slots[i] = undefined;
          report();
        }
        throw e;
      }
    }),
  );
  const mirrors = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failures = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [{ registry: plans[i].registry, error: o.reason as Error }] : []));
  if (!mirrors.length) throw failures[0].error;
  for (const { registry, error } of failures)
    warn(`no mirror for ${registry}: ${error.message}. Pulls from ${registry} go to it directly.`);
  return mirrors;
}

async function startMirror(
  plan: MirrorPlan,
  probe: UpstreamProbe,
  o: MirrorsOptions,
  spawned: (mirror: MirrorState) => void,
): Promise<MirrorState> {
  const { registry, upstream } = plan;
  const cached = o.restoredImages.filter((r) => splitRepository(r).registry === registry).length;
  // A proxy exits at start when its upstream is down; serving the restored storage as it is keeps cached images pulling.
  if (!probe.reachable && cached === 0) throw new Error(`${upstream} cannot be reached and the cache holds nothing to serve`);
  if (!probe.reachable)
    warn(`${upstream} cannot be reached: the mirror serves what the cache holds (${cached} image${cached === 1 ? '' : 's'}), offline.`);
  // With credentials it refuses, a 2.8 proxy answers "manifest unknown" even for public images: go anonymous.
  if (probe.credentials === 'refused') {
    warn(
      registry === DOCKER_HUB
        ? `${upstream} refused dockerhub-username "${plan.credentials!.username}" with the given dockerhub-token: check both inputs. The cache pulls anonymously in this job (public images, anonymous rate limit).`
        : `${upstream} refused the registry-credentials of ${registry} (user "${plan.credentials!.username}"): check them. The cache pulls from ${registry} anonymously in this job (public images only).`,
    );
  }
  const pullsAs = probe.credentials === 'refused' ? null : plan.credentials;
  const asked = o.ports.get(registry);
  const port = asked ? (await assertPortFree(asked, o.address), asked) : await freePort(o.address);
  const files = o.dir.registry(registry);
  const options = {
    address: o.address,
    port,
    storageDir: await prepareRegistryRoot(o.dir.storage, registry),
    upstream: probe.reachable ? upstream : null,
    username: pullsAs?.username ?? '',
    password: pullsAs?.password ?? '',
  };
  const mirror = (pid: number, url: string): MirrorState => ({
    registry,
    upstream,
    pid,
    url,
    configPath: files.config,
    accessLog: files.accessLog,
    offline: !probe.reachable,
    pullsAs: pullsAs?.username ?? '',
  });
  const { pid, url } = await startRegistry(o.binary, files, options, (pid) => spawned(mirror(pid, `http://${o.address}:${port}`)));
  core.info(`Registry mirror of ${registry} listening on ${url} (pid ${pid}), ${probe.reachable ? `proxying ${upstream}` : 'offline'}`);
  return mirror(pid, url);
}

/** Stops every mirror; a mirror that cannot be stopped does not keep the others running. */
export async function stopMirrors(mirrors: MirrorState[]): Promise<void> {
  const outcomes = await Promise.allSettled(mirrors.map((m) => stopRegistry(m.pid, m.configPath)));
  const failed = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`${mirrors[i].registry}: ${(o.reason as Error).message}`] : []));
  if (failed.length) throw new Error(failed.join('; '));
}
