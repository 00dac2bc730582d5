// The post step: stop the registry, give the daemon back its own config, report what the job pulled and
// from where, and save what is new. Saving never fails the job.
import * as core from '@actions/core';
import { access, constants, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { imageKey, imagesInStorage, type CachedImage } from './cache-index.js';
import { failOnErrorInput, getInputs, runnerArch, type Inputs } from './context.js';
import { restoreDaemon } from './daemon.js';
import { anonymouslyPullable, readQuota, type Quota } from './docker-hub.js';
import { mapBounded, saveStorage, withDeadline } from './persistence.js';
import { containerImages, finishPrefetch, PREFETCH_AGENT, prefetchUsage, type PrefetchResult } from './prefetch.js';
import { stopRegistry } from './registry.js';
import { accountUsage, parseAccessLog, renderReport, writeReport } from './report.js';
import { state, type RegistryState } from './state.js';
import { displayName } from './images.js';
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
  const registry = state.registry();
  // The quota costs two round trips to Docker Hub: ask while the rest of post runs.
  const quota = inputs && registry && !registry.offline ? readQuota(inputs.upstream, registry.pullsAs ? { username: registry.pullsAs, password: inputs.dockerhubToken } : null) : Promise.resolve(null);

  // The prefetch pulls through the registry: stop it first.
  const prefetch = state.prefetch();
  const prefetched = prefetch ? await attempt('finishing the prefetch', () => finishPrefetch(prefetch.pid, prefetch.log, 2_000)) : null;
  if (registry?.offline) problems.push('The upstream could not be reached when the job started: the cache served what it holds, offline.');
  if (registry) await attempt('stopping the registry', () => stopRegistry(registry.pid, registry.configPath));
  const daemon = state.daemon();
  const daemonRestored = daemon ? await attempt(`restoring ${daemon.configPath}`, () => restoreDaemon(daemon)) : undefined;

  // Main records the cache stage once the inputs were good and the work directory made; before that, nothing to do.
  if (cacheState) {
    const dir = workDir(cacheState.workDir);
    const baseline = await attempt('reading what the cache held at start', () => readBaseline(dir));
    const prefetchRun = prefetch && prefetched ? { results: prefetched, jobStarted: prefetch.jobStarted } : null;
    if (baseline && registry && inputs) await reportAndSave(dir, baseline, registry, inputs, prefetchRun, quota, problems, attempt);
    await rm(dir.root, { recursive: true, force: true });
  }
  if (daemonRestored === null && failOnErrorInput()) core.setFailed(`pull-cache-action could not put ${daemon!.configPath} back: see the warnings above`);
}

async function reportAndSave(
  dir: WorkDir,
  baseline: Baseline,
  registry: RegistryState,
  inputs: Inputs,
  prefetch: { results: PrefetchResult[]; jobStarted: number } | null,
  quota: Promise<Quota | 'unlimited' | null>,
  problems: string[],
  attempt: Attempt,
): Promise<void> {
  const after = await scanStorage(dir.storage);
  const manifests = await readManifests(dir.storage, after);
  const requests = await attempt('reading what the registry served', async () => parseAccessLog(await readFile(dir.registry.accessLog, 'utf8')));
  const usage = requests && accountUsage(requests, baseline.storage, after, manifests);
  const jobAsked = (requests ?? []).filter((r) => r.kind === 'manifests' && !r.agent.includes(PREFETCH_AGENT)).map((r) => displayName(imageKey(r)));
  const prefetchUsed = prefetch && prefetchUsage(prefetch.results, jobAsked, await containerImages(prefetch.jobStarted));
  for (const failed of prefetchUsed?.failed ?? []) core.warning(`pull-cache-action: prefetching ${failed.ref} failed: ${failed.error}`);
  // What the job pulled with credentials may be private: only what anyone may pull goes into a cache forks can read.
  const seen = imagesInStorage(after, manifests);
  const cacheable = registry.pullsAs && !inputs.cachePrivate && !registry.offline ? await publicOnly(inputs.upstream, seen) : { images: seen, withheld: [] };
  // What only the prefetch pulled was not used by the job: it must not look recently used, or it is prefetched forever.
  const prefetchOnly = new Set(prefetchUsed?.unused.map((u) => u.ref));
  const job = { seen: cacheable.images, used: new Set(usage?.images.map((i) => i.key).filter((key) => !prefetchOnly.has(displayName(key)))) };
  const run = { id: process.env.GITHUB_RUN_ID || 'local', attempt: process.env.GITHUB_RUN_ATTEMPT || '1' };
  const scope = { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() };
  const saved = inputs.save
    ? await attempt('saving the cache', () => withDeadline('saving the cache', inputs.cacheTimeoutSeconds * 1000, saveStorage(scope, baseline.restored, after, job, run)))
    : null;
  const markdown = renderReport({
    upstream: inputs.upstream,
    usage,
    restoredKey: baseline.restored.restoredKey,
    restoredBlobs: Object.keys(baseline.storage.blobs).length,
    restoredBytes: Object.values(baseline.storage.blobs).reduce((a, b) => a + b, 0),
    missingEntries: baseline.restored.missingEntries,
    damagedBlobs: baseline.restored.damaged.length,
    dropped: baseline.restored.dropped,
    budget: { maxBytes: inputs.maxSize, maxAgeDays: inputs.maxAgeDays },
    saved: saved && { entries: saved.entries.length, bytes: saved.bytes, indexKey: saved.indexKey, deferred: saved.deferred, stopped: saved.stopped },
    saveDisabled: !inputs.save,
    withheld: cacheable.withheld,
    quota: await quota,
    pullsAs: registry.pullsAs,
    prefetch: prefetchUsed ?? null,
    unpigz: await onPath('unpigz'),
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

/** Splits images into those anyone may pull anonymously and the rest (named by imageKey). */
async function publicOnly(upstream: string, images: Omit<CachedImage, 'lastUsed'>[]): Promise<{ images: Omit<CachedImage, 'lastUsed'>[]; withheld: string[] }> {
  const pullable = await mapBounded(images, 8, (image) => anonymouslyPullable(upstream, image.repository, image.reference));
  return { images: images.filter((_, i) => pullable[i]), withheld: images.filter((_, i) => !pullable[i]).map(imageKey) };
}
