// The post step: give the daemon and the other clients back their own configs, then stop the mirrors; report what
// the job pulled and from where, and save what is new. Saving never fails the job.
import * as core from '@actions/core';
import { readFile, rm } from 'node:fs/promises';
import { parseAccessLog } from './access-log.js';
import { backgroundRestoreFacts, finishRestore, heldImages, linkedAt, restoreOutcome, type RestoreProgress } from './background-restore.js';
import { withDeadline } from './bounded.js';
import { imagesInStorage } from './cache-index.js';
import { stopGate } from './gate.js';
import { failOnErrorInput, getInputs, runnerArch, type Inputs } from './context.js';
import { imagesPulledSince, restoreDaemon, restoreRegistryHosts } from './daemon.js';
import { readQuota, type Credentials, type Quota } from './docker-hub.js';
import { warn } from './log.js';
import { cacheServiceOf } from './cache-entry.js';
import { saveStorage } from './persistence.js';
import { thrashOf } from './thrash.js';
import { pruneForJob, PRUNE_MS } from './prune.js';
import { containerImages, finishPrefetch, normalRef, prefetchUsage, type PrefetchResult } from './prefetch.js';
import { mirrorPlans, stopMirrors } from './mirrors.js';
import { removeRegistriesConf } from './registries-conf.js';
import { removeClientConfigs } from './client-config.js';
import { renderReport, writeReport } from './report.js';
import { reportFacts } from './report-facts.js';
import { accountUsage, mergeUsage } from './usage.js';
import { state, type MirrorState, type RegistryHostsFile, type RestoreState } from './state.js';
import { displayName, DOCKER_HUB, qualifiedRepository } from './images.js';
import { askUpstreams, decideSaves, type UpstreamOf } from './upstream-check.js';
import { commandPath } from './processes.js';
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
      warn(`${what}: ${(e as Error).message}`);
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

  // The background restore writes into the storage the registries serve: it finishes, or is stopped, first. It
  // stops itself cache-timeout after it started; with no mirror to report on, there is nothing to wait for.
  const restore = state.restore();
  const restoreWaitMs = (r: RestoreState) => (mirrors.length ? r.started + r.timeoutMs + 5_000 - Date.now() : 0);
  const restoreProgress = restore
    ? await core.group('Finishing the background restore', () =>
        attempt('finishing the background restore', () => finishRestore(restore.pid, restore.progress, restoreWaitMs(restore))),
      )
    : null;
  const prefetch = state.prefetch();
  const hostsFiles = state.registryHosts();
  // The prefetch pulls through the daemon and its mirror: it stops first.
  const prefetched = prefetch
    ? await core.group('Stopping the prefetch', () =>
        attempt('finishing the prefetch', () => finishPrefetch(prefetch.pid, prefetch.log, 2_000)),
      )
    : null;
  for (const m of mirrors.filter((m) => m.offline))
    problems.push(
      `The upstream of ${m.registry} (${m.upstream}) could not be reached when the job started: the cache served what it holds, offline.`,
    );
  // Every client leaves the mirrors before they stop: a port a config still names once nothing listens on it is any
  // local process's to take, and to serve the daemon whatever manifest it likes for a tag.
  await core.group("Taking the mirrors out of the clients' configs", async () => {
    if (cacheState)
      await attempt('removing the client configs of the outputs', () => removeClientConfigs(workDir(cacheState.workDir).clients));
    if (hostsFiles.length) await attempt('removing the hosts.toml files written into certs.d', () => restoreRegistryHosts(hostsFiles));
    const registriesConf = state.registriesConf();
    if (registriesConf) await attempt('removing the registries.conf drop-in', () => removeRegistriesConf(registriesConf));
  });
  const daemon = state.daemon();
  const daemonRestored = daemon
    ? await core.group(`Restoring ${daemon.configPath}`, () => attempt(`restoring ${daemon.configPath}`, () => restoreDaemon(daemon)))
    : undefined;
  await core.group('Stopping the registries', async () => {
    const gate = state.gate();
    if (gate) await attempt("stopping the mirrors' front", () => stopGate(gate));
    if (mirrors.length)
      await attempt(mirrors.length === 1 ? 'stopping the registry' : 'stopping the registries', () => stopMirrors(mirrors));
  });

  // Main records the cache stage once the inputs were good and the work directory made; before that, nothing to do.
  if (cacheState) {
    const dir = workDir(cacheState.workDir);
    const baseline = await attempt('reading what the cache held at start', () => readBaseline(dir));
    const prefetchRun = prefetch && prefetched ? { results: prefetched, jobStarted: prefetch.jobStarted } : null;
    if (baseline && mirrors.length && inputs) {
      const restoreRun = restore && restoreProgress ? { progress: restoreProgress, started: restore.started } : null;
      await attempt('reporting and saving', () =>
        reportAndSave({ dir, baseline, mirrors, hostsFiles, inputs, restore: restoreRun, prefetch: prefetchRun, quota, problems, attempt }),
      );
    }
    await attempt('removing the work directory', () => rm(dir.root, { recursive: true, force: true }));
  }
  if (daemonRestored === null && failOnErrorInput())
    core.setFailed(`pull-cache-action could not put ${daemon!.configPath} back: see the warnings above`);
}

/** What the post step reports on and saves: the job's mirrors and what main recorded. */
interface FinishedJob {
  dir: WorkDir;
  baseline: Baseline;
  mirrors: MirrorState[];
  hostsFiles: RegistryHostsFile[];
  inputs: Inputs;
  restore: { progress: RestoreProgress; started: number } | null;
  prefetch: { results: PrefetchResult[]; jobStarted: number } | null;
  quota: Promise<Quota | 'unlimited' | null>;
  /** The report's warnings so far; `attempt` adds to them. */
  problems: string[];
  attempt: Attempt;
}

async function reportAndSave(job: FinishedJob): Promise<void> {
  const { dir, baseline, mirrors, inputs, prefetch, attempt } = job;
  const outcome = job.restore ? restoreOutcome(baseline.restored, job.restore.progress) : baseline.restored;
  const restored = { ...outcome, thrash: thrashOf(outcome, new Date()) };
  if (restored.indexLimited)
    warn(
      `${restored.indexLimited}: the restore worker did not get the index before cache-timeout either; the job pulled from the upstream, and nothing was saved, so the next run restores the cache as it is.`,
    );
  for (const problem of job.restore?.progress.entries.flatMap((r) => (r.refused ? [r.refused] : [])) ?? [])
    warn(`refused a cache entry: ${problem}`);
  for (const limited of job.restore?.progress.entries.flatMap((r) => (r.limited ? [r.limited] : [])) ?? [])
    warn(`gave up restoring a cache entry: ${limited}; its blobs came from the upstream`);
  const after = await scanStorage(dir.storage);
  const manifests = await readManifests(dir.storage, after);
  // Each mirror's log names repositories as its registry does; the cache names them as docker does.
  const served = await attempt('reading what the registries served', () =>
    Promise.all(
      mirrors.map(async (m) =>
        parseAccessLog(await readFile(m.accessLog, 'utf8')).map((r) => ({
          ...r,
          repository: qualifiedRepository(m.registry, r.repository),
        })),
      ),
    ),
  );
  // Prefetched images the job ran without pulling are the job's too.
  const ranByJob = new Set(prefetch ? (await containerImages(prefetch.jobStarted)).map(normalRef) : []);
  const restoredAt = job.restore ? linkedAt(job.restore.progress) : new Map<string, number>();
  const usages = served?.map((requests) => accountUsage(requests, baseline.storage, after, manifests, ranByJob, restoredAt)) ?? null;
  const usage = usages && mergeUsage(usages);
  const prefetchUsed = prefetch && prefetchUsage(prefetch.results, usage?.images.map((i) => displayName(i.key)) ?? []);
  for (const failed of prefetchUsed?.failed ?? []) warn(`prefetching ${failed.ref} failed: ${failed.error}`);
  const stored = imagesInStorage(after, manifests);
  const decision = decideSaves(
    stored,
    await askUpstreams(stored, (registry) => upstreamOf(mirrors, registry, inputs), inputs.cachePrivate),
    restored.images,
  );
  // What only the prefetch pulled was not used by the job: it must not look recently used, or it is prefetched forever.
  const used = usage?.images.map((i) => i.key).filter((key) => key && !decision.unrefreshed.has(key));
  const images = { seen: decision.images, used: new Set(used) };
  const run = { id: process.env.GITHUB_RUN_ID || 'local', attempt: process.env.GITHUB_RUN_ATTEMPT || '1' };
  const scope = { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() };
  // An unfinished restore leaves entries untried: an index saved now would lose their images, so nothing is saved.
  const saved =
    inputs.save && restored.finished
      ? await core.group('Saving the cache', () =>
          attempt('saving the cache', () =>
            withDeadline('saving the cache', inputs.cacheTimeoutSeconds * 1000, (signal) =>
              saveStorage(cacheServiceOf(process.env), scope, restored, after, images, run, signal),
            ),
          ),
        )
      : null;
  // Only with a github-token: without one, no REST call is made.
  const pruned = inputs.githubToken
    ? await core.group('Pruning the cache', () =>
        pruneForJob({
          ...scope,
          token: inputs.githubToken,
          service: cacheServiceOf(process.env),
          maxAgeDays: inputs.maxAgeDays,
          registries: inputs.registries,
          restored,
          saved,
          timeoutMs: Math.min(PRUNE_MS, inputs.cacheTimeoutSeconds * 1000),
        }),
      )
    : null;
  const facts = reportFacts({
    inputs,
    baseline,
    restored,
    background: job.restore && backgroundRestoreFacts(restored, job.restore.progress, job.restore.started, await heldImages(dir.root)),
    mirrors,
    usages,
    decision,
    saved,
    pruned,
    quota: await job.quota,
    prefetch: prefetchUsed,
    unpigz: onPath('unpigz'),
    pulled: await imagesPulledSince(baseline.started),
    viaHostsToml: job.hostsFiles.filter((f) => !f.buildkitOnly).map((f) => f.registry),
    builtInBuildkit: state.builtInBuildkit(),
    problems: job.problems,
  });
  await core.group('Report', () => attempt('writing the report', () => writeReport(renderReport(facts))));
}

/** dockerd decompresses layers with unpigz when it finds it (about 20% faster pulls here); its PATH is the system's. */
function onPath(command: string): boolean {
  try {
    return Boolean(commandPath(command));
  } catch {
    return false;
  }
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
