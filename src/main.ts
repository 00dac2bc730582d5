// The main step: restore the cache's index, start a mirror per registry, point the daemon and the other clients at
// them, and leave the cache's entries to restore in the background behind the mirrors. Any failure is a warning
// and the job pulls directly, unless fail-on-error is set.
import * as core from '@actions/core';
import { join } from 'node:path';
import { startRestore } from './background-restore.js';
import { cacheServiceOf } from './cache-entry.js';
import { RateLimited, waitsTold } from './rate-limit.js';
import { withDeadline } from './bounded.js';
import { writeClientConfigs } from './client-config.js';
import { getInputs, runnerArch, type Inputs } from './context.js';
import { pointDaemon } from './daemon.js';
import { gatedImages, planFronts, startGate, stopGate, throughFronts } from './gate.js';
import { DOCKER_HUB, splitRepository } from './images.js';
import { failOrWarn, warn } from './log.js';
import { listenAddress, mirrorPlans, probeUpstreams, startMirrors, type MirrorPlan } from './mirrors.js';
import { NOTHING_RESTORED, restoredBytes, restoreIndex, type Restored } from './persistence.js';
import { prefetchRefs, startPrefetch } from './prefetch.js';
import { formatBytes } from './report.js';
import { installRegistry } from './registry-binary.js';
import { useRegistriesConf } from './registries-conf.js';
import type { UpstreamProbe } from './docker-hub.js';
import { state, type MirrorState } from './state.js';
import { scanStorage } from './storage.js';
import { createWorkDir, writeBaseline, type WorkDir } from './work-dir.js';

/** The index look-up holds the job up: past this, a rate-limited look-up gives up and the job goes on. */
const INDEX_WAIT_MS = 5_000;

const OUTPUTS = ['mirror', 'mirrors', 'hosts-dir', 'buildkitd-config', 'k3s-registries', 'registries-conf', 'restored-key'];

export async function main(): Promise<void> {
  const jobStarted = Date.now();
  state.markMainStarted();
  for (const output of OUTPUTS) core.setOutput(output, '');
  try {
    const inputs = getInputs();
    const address = await listenAddress(inputs.listen);
    const dir = await createWorkDir();
    state.setCache({ workDir: dir.root, restoredKey: '' });
    const plans = mirrorPlans(inputs);
    const { restored, binary, probes } = await core.group('Restoring the cache index', () =>
      restoreIndexAndPrepare(inputs, dir, plans, jobStarted),
    );
    const restoreProgress = restored.entries.length || restored.indexLimited ? await restoreInBackground(inputs, dir, restored) : null;
    // The fronts hold pulls of the images being restored: with the index still to come, none is known.
    const started = { binary, probes, restored, restoreProgress: restored.entries.length ? restoreProgress : null };
    const mirrors = await core.group('Starting the mirrors', () => startMirrorsBehindFronts(inputs, dir, address, plans, started));
    const daemonPulls = await core.group('Pointing the clients at the mirrors', () => pointClients(inputs, dir, mirrors));
    if (inputs.prefetch && daemonPulls) await prefetchLastRun(inputs, dir, restored, restoreProgress, jobStarted);
  } catch (e) {
    state.setMainError((e as Error).message);
    failOrWarn(`could not set up the cache: ${(e as Error).message}. The job goes on pulling directly.`);
  }
}

/** The index (a small entry), the registry binary and a look at each upstream, at once; then the baseline. */
async function restoreIndexAndPrepare(inputs: Inputs, dir: WorkDir, plans: MirrorPlan[], jobStarted: number) {
  const { scope, budget, registries } = indexScope(inputs, dir);
  const service = cacheServiceOf(process.env);
  const [restored, binary, probes] = await Promise.all([
    restoreOrStartEmpty(() =>
      withDeadline('restoring the cache index', inputs.cacheTimeoutSeconds * 1000, (signal) =>
        restoreIndex(service && { ...service, maxWaitMs: INDEX_WAIT_MS }, scope, budget, registries, new Date(), signal),
      ),
    ),
    installRegistry(inputs, join(dir.root, 'download')),
    probeUpstreams(plans),
  ]);
  await writeBaseline(dir, { started: jobStarted, restored, storage: await scanStorage(dir.storage) });
  state.setCache({ workDir: dir.root, restoredKey: restored.restoredKey });
  core.setOutput('restored-key', restored.restoredKey);
  return { restored, binary, probes };
}

/**
 * A cache that cannot be restored is an empty cache, not a failed step. When the service rate-limited the index's
 * look-up, the cache is still there: the restore worker keeps looking it up, and restores the entries once it has
 * it; until then the job pulls from the upstream. If it never gets it, this job saves nothing, or its index would
 * hide the images of the one it missed.
 */
async function restoreOrStartEmpty(restore: () => Promise<Restored>): Promise<Restored> {
  try {
    return await restore();
  } catch (e) {
    if (e instanceof RateLimited) {
      core.info(`${e.message}: starting with an empty cache; the cache restores in the background once the service answers.`);
      return { ...NOTHING_RESTORED, finished: false, indexLimited: e.message };
    }
    warn(`restoring the cache failed (${(e as Error).message}); starting with an empty cache.`);
    return NOTHING_RESTORED;
  }
}

/** Starts the entries' restore behind the mirrors (the job goes on while they download); returns its progress file. */
async function restoreInBackground(inputs: Inputs, dir: WorkDir, restored: Restored): Promise<string> {
  const progress = join(dir.root, 'restore-progress.jsonl');
  const timeoutMs = inputs.cacheTimeoutSeconds * 1000;
  // The worker waits as long as main's look-up was told before it looks the index up again.
  const lateIndex = restored.indexLimited ? { lateIndex: { ...indexScope(inputs, dir), waitsTold: waitsTold() } } : {};
  const sizes = restored.index?.blobs ?? {};
  const plan = { workDir: dir.root, ...lateIndex, entries: restored.entries, images: restored.images, sizes, progress, timeoutMs };
  // The index came from the cache service, or was rate-limited by it: there is one.
  const service = cacheServiceOf(process.env)!;
  state.setRestore({ pid: await startRestore(plan, service), progress, started: Date.now(), timeoutMs });
  const size = `${formatBytes(restoredBytes(restored))} in ${restored.entries.length} cache entries`;
  if (!restored.indexLimited)
    core.info(`Restoring ${restored.images.length} images (${size}) in the background, most recently used first.`);
  return progress;
}

/** Where the index is looked up, and what of it is selected. */
function indexScope(inputs: Inputs, dir: WorkDir) {
  return {
    scope: { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() },
    budget: { maxBytes: inputs.maxSize, maxAgeDays: inputs.maxAgeDays },
    registries: inputs.registries,
  };
}

/**
 * A registry per upstream. While the cache restores, a front holds each mirror's port, so that a pull of an image
 * on its way waits for it; it starts first and loads while the registries start behind it. Without its front a
 * mirror still serves: a pull that comes before its image goes to the upstream instead.
 */
async function startMirrorsBehindFronts(
  inputs: Inputs,
  dir: WorkDir,
  address: string,
  plans: MirrorPlan[],
  {
    binary,
    probes,
    restored,
    restoreProgress,
  }: { binary: string; probes: UpstreamProbe[]; restored: Restored; restoreProgress: string | null },
): Promise<MirrorState[]> {
  const fronts = restoreProgress
    ? await planFronts(
        plans.map((p) => p.registry),
        address,
        inputs.port,
      )
    : [];
  if (restoreProgress) {
    const deadline = Date.now() + inputs.cacheTimeoutSeconds * 1000;
    await startGate(
      { workDir: dir.root, fronts, images: gatedImages(restored.images), progress: restoreProgress, deadline },
      state.setGate,
    );
  }
  const ports = new Map(fronts.length ? fronts.map((f) => [f.registry, f.target]) : inputs.port ? [[DOCKER_HUB, inputs.port]] : []);
  const direct = await startMirrors(
    plans,
    probes,
    { binary, dir, address, ports, restoredImages: restored.images.map((i) => i.repository) },
    state.setMirrors,
  );
  if (!fronts.length) return direct;
  const mirrors = await throughFronts(direct, dir.root, address).catch(async (e: Error) => {
    warn(`${e.message}; pulls of images still being restored go to the upstream.`);
    await stopGate(state.gate()!);
    return direct;
  });
  state.setMirrors(mirrors);
  return mirrors;
}

/** The client configs and the outputs that name them, then dockerd; whether dockerd now pulls through the cache. */
async function pointClients(inputs: Inputs, dir: WorkDir, mirrors: MirrorState[]): Promise<boolean> {
  await writeClientConfigs(dir.clients, mirrors);
  core.setOutput('mirrors', JSON.stringify(Object.fromEntries(mirrors.map((m) => [m.registry, m.url]))));
  core.setOutput('hosts-dir', dir.clients.hostsDir);
  core.setOutput('buildkitd-config', dir.clients.buildkitdConfig);
  core.setOutput('k3s-registries', dir.clients.k3sRegistries);
  core.setOutput('registries-conf', await useRegistriesConf(inputs.registriesConfDir, dir.root, mirrors, state.setRegistriesConf));
  const records = { daemon: state.setDaemon, registryHosts: state.setRegistryHosts, builtInBuildkit: state.setBuiltInBuildkit };
  const daemonPulls = await pointDaemon(inputs.daemonConfig, mirrors, records);
  const hub = mirrors.find((m) => m.registry === DOCKER_HUB);
  if (hub) core.setOutput('mirror', hub.url);
  return daemonPulls;
}

/** Pulls in the background what the last run pulled, each image once the restore has it in place. */
async function prefetchLastRun(
  inputs: Inputs,
  dir: WorkDir,
  restored: Restored,
  restoreProgress: string | null,
  jobStarted: number,
): Promise<void> {
  // dockerd mirrors Docker Hub only: what it pulls from elsewhere would not come through the cache.
  const hubImages = restored.images.filter((image) => splitRepository(image.repository).registry === DOCKER_HUB);
  const refs = prefetchRefs(restored.index, hubImages);
  if (!refs.length) return;
  const log = join(dir.root, 'prefetch.log');
  const waitForRestore = restoreProgress ? { restoreProgress, waitMs: inputs.cacheTimeoutSeconds * 1000 } : {};
  const pid = await startPrefetch({ refs, concurrency: inputs.prefetchConcurrency, log, ...waitForRestore });
  state.setPrefetch({ pid, log, jobStarted });
  core.info(`Prefetching in the background what the last run pulled: ${refs.join(', ')}`);
}
