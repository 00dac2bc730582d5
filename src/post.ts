// The post step: stop the mirrors, give the daemon back its own config, report what the job pulled and
// from where, and save what is new. Saving never fails the job.
import * as core from '@actions/core';
import { access, constants, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { imagesInStorage } from './cache-index.js';
import { failOnErrorInput, getInputs, runnerArch, type Inputs } from './context.js';
import { imagesPulledSince, restoreDaemon, restoreRegistryHosts } from './daemon.js';
import { readQuota, type Credentials, type Quota } from './docker-hub.js';
import { saveStorage, withDeadline } from './persistence.js';
import { containerImages, finishPrefetch, normalRef, prefetchUsage, type PrefetchResult } from './prefetch.js';
import { mirrorPlans, stopMirrors } from './mirrors.js';
import { removeRegistriesConf } from './registries-conf.js';
import { accountUsage, aroundTheCache, mergeUsage, parseAccessLog, renderReport, writeReport, type RegistryRow, type Usage } from './report.js';
import { state, type MirrorState, type RegistryHostsFile } from './state.js';
import { displayName, DOCKER_HUB, qualifiedRepository } from './images.js';
import { askUpstreams, decideSaves, type UpstreamOf } from './upstream-check.js';
import { readManifests, scanStorage } from './storage.js';
import { readBaseline, workDir, type Baseline, type WorkDir } from './work-dir.js';

type Attempt = <T>(what: string, fn: () => Promise<T>) => Promise<T | null>;

export async function post(): Promise<void> {
  const problems: string[] = [];
  const attempt: Attempt = async (what, fn) => {
    try {
      return await fn();
    } catch (e) {
      problems.push(`${what}: ${(e as Error).message}`);
      core.warning(`pull-cache-action: ${what}: ${(e as Error).message}`);
      return null;
    }
  };
  const mainError = state.mainError();
  if (mainError) problems.push(`The cache was not used in this job: ${mainError}`);

  const cacheState = state.cache();
  const inputs = cacheState ? await attempt('reading the inputs', async () => getInputs()) : null;
  const mirrors = state.mirrors();
  const hub = mirrors.find((m) => m.registry === DOCKER_HUB && !m.offline);
  // The quota costs two round trips to Docker Hub: ask while the rest of post runs.
  const quota = inputs && hub ? readQuota(hub.upstream, pulledWith(hub, inputs)) : Promise.resolve(null);

  // The prefetch pulls through the registry: stop it first.
  const prefetch = state.prefetch();
  const prefetched = prefetch ? await attempt('finishing the prefetch', () => finishPrefetch(prefetch.pid, prefetch.log, 2_000)) : null;
  for (const m of mirrors.filter((m) => m.offline)) problems.push(`The upstream of ${m.registry} (${m.upstream}) could not be reached when the job started: the cache served what it holds, offline.`);
  if (mirrors.length) await attempt(mirrors.length === 1 ? 'stopping the registry' : 'stopping the registries', () => stopMirrors(mirrors));
  const hostsFiles = state.registryHosts();
  if (hostsFiles.length) await attempt('removing the hosts.toml files written into certs.d', () => restoreRegistryHosts(hostsFiles));
  const registriesConf = state.registriesConf();
  if (registriesConf) await attempt('removing the registries.conf drop-in', () => removeRegistriesConf(registriesConf));
  const daemon = state.daemon();
  const daemonRestored = daemon ? await attempt(`restoring ${daemon.configPath}`, () => restoreDaemon(daemon)) : undefined;

  // Main records the cache stage once the inputs were good and the work directory made; before that, nothing to do.
  if (cacheState) {
    const dir = workDir(cacheState.workDir);
    const baseline = await attempt('reading what the cache held at start', () => readBaseline(dir));
    const prefetchRun = prefetch && prefetched ? { results: prefetched, jobStarted: prefetch.jobStarted } : null;
    if (baseline && mirrors.length && inputs) await reportAndSave(dir, baseline, mirrors, hostsFiles, inputs, prefetchRun, quota, problems, attempt);
    await rm(dir.root, { recursive: true, force: true });
  }
  if (daemonRestored === null && failOnErrorInput()) core.setFailed(`pull-cache-action could not put ${daemon!.configPath} back: see the warnings above`);
}

async function reportAndSave(
  dir: WorkDir,
  baseline: Baseline,
  mirrors: MirrorState[],
  hostsFiles: RegistryHostsFile[],
  inputs: Inputs,
  prefetch: { results: PrefetchResult[]; jobStarted: number } | null,
  quota: Promise<Quota | 'unlimited' | null>,
  problems: string[],
  attempt: Attempt,
): Promise<void> {
  const after = await scanStorage(dir.storage);
  const manifests = await readManifests(dir.storage, after);
  // Each mirror's log names repositories as its registry does; the cache names them as docker does.
  const served = await attempt('reading what the registries served', () =>
    Promise.all(mirrors.map(async (m) => parseAccessLog(await readFile(m.accessLog, 'utf8')).map((r) => ({ ...r, repository: qualifiedRepository(m.registry, r.repository) })))),
  );
  // Prefetched images the job ran without pulling are the job's too.
  const ranByJob = new Set(prefetch ? (await containerImages(prefetch.jobStarted)).map(normalRef) : []);
  const usages = served?.map((requests) => accountUsage(requests, baseline.storage, after, manifests, ranByJob));
  const usage = usages ? mergeUsage(usages) : null;
  const prefetchUsed = prefetch && prefetchUsage(prefetch.results, usage?.images.map((i) => displayName(i.key)) ?? []);
  for (const failed of prefetchUsed?.failed ?? []) core.warning(`pull-cache-action: prefetching ${failed.ref} failed: ${failed.error}`);
  const stored = imagesInStorage(after, manifests);
  const decision = decideSaves(stored, await askUpstreams(stored, (registry) => upstreamOf(mirrors, registry, inputs), inputs.cachePrivate), baseline.restored.images);
  // What only the prefetch pulled was not used by the job: it must not look recently used, or it is prefetched forever.
  const used = usage?.images.map((i) => i.key).filter((key) => key && !decision.unrefreshed.has(key));
  const job = { seen: decision.images, used: new Set(used) };
  const run = { id: process.env.GITHUB_RUN_ID || 'local', attempt: process.env.GITHUB_RUN_ATTEMPT || '1' };
  const scope = { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() };
  const saved = inputs.save
    ? await attempt('saving the cache', () => withDeadline('saving the cache', inputs.cacheTimeoutSeconds * 1000, (signal) => saveStorage(scope, baseline.restored, after, job, run, signal)))
    : null;
  const markdown = renderReport({
    upstream: inputs.upstream,
    registries: registryRows(mirrors, usages ?? null),
    usage,
    restoredKey: baseline.restored.restoredKey,
    restoredBlobs: Object.keys(baseline.storage.blobs).length,
    restoredBytes: Object.values(baseline.storage.blobs).reduce((a, b) => a + b, 0),
    missingEntries: baseline.restored.missingEntries,
    damagedBlobs: baseline.restored.damaged.length,
    refused: baseline.restored.refused,
    dropped: baseline.restored.dropped,
    budget: { maxBytes: inputs.maxSize, maxAgeDays: inputs.maxAgeDays },
    saved: saved && { entries: saved.entries.length, bytes: saved.bytes, indexKey: saved.indexKey, deferred: saved.deferred, stopped: saved.stopped },
    saveDisabled: !inputs.save,
    withheld: decision.withheld,
    stale: decision.stale,
    unverified: decision.unverified,
    quota: await quota,
    pullsAs: mirrors.find((m) => m.registry === DOCKER_HUB)?.pullsAs ?? '',
    prefetch: prefetchUsed ?? null,
    unpigz: await onPath('unpigz'),
    aroundTheCache: aroundTheCache(await imagesPulledSince(baseline.started), mirrors, hostsFiles.map((f) => f.registry)),
    builtInBuildkit: state.builtInBuildkit(),
    problems,
  });
  await attempt('writing the report', () => writeReport(markdown));
}

/** dockerd decompresses layers with unpigz when it finds it (about 20% faster pulls here); its PATH is the system's. */
async function onPath(command: string): Promise<boolean> {
  const dirs = new Set([...(process.env.PATH ?? '').split(':'), '/usr/local/bin', '/usr/bin', '/bin']);
  for (const dir of dirs) if (dir && (await access(join(dir, command), constants.X_OK).then(() => true, () => false))) return true;
  return false;
}

/** Each mirror and what the job pulled through it. */
function registryRows(mirrors: MirrorState[], usages: Usage[] | null): RegistryRow[] {
  const none = { blobs: 0, bytes: 0 };
  return mirrors.map((m, i) => ({
    registry: m.registry,
    upstream: m.upstream,
    mirror: m.url,
    offline: m.offline,
    images: usages?.[i].images.filter((u) => u.key).length ?? 0,
    fromCache: usages?.[i].fromCache ?? none,
    fromUpstream: usages?.[i].fromUpstream ?? none,
  }));
}

/** The upstream each registry's mirror pulled from, and as whom. */
function upstreamOf(mirrors: MirrorState[], registry: string, inputs: Inputs): UpstreamOf | undefined {
  const mirror = mirrors.find((m) => m.registry === registry);
  return mirror && { upstream: mirror.upstream, offline: mirror.offline, credentials: pulledWith(mirror, inputs) };
}

/** The credentials a mirror pulled with: its plan's, unless the upstream refused them and it went anonymous. */
function pulledWith(mirror: MirrorState, inputs: Inputs): Credentials | null {
  return mirror.pullsAs ? (mirrorPlans(inputs).find((p) => p.registry === mirror.registry)?.credentials ?? null) : null;
}
