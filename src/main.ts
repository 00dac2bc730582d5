// The main step: restore the cache's index, start a mirror per registry, point the daemon and the other clients at
// them, and leave the cache's entries to restore in the background behind the mirrors. Any failure is a warning
// and the job pulls directly, unless fail-on-error is set.
import * as core from '@actions/core';
import { join } from 'node:path';
import { startRestore } from './background-restore.js';
import { withDeadline } from './bounded.js';
import { writeClientConfigs } from './client-config.js';
import { getInputs, runnerArch } from './context.js';
import { pointDaemon } from './daemon.js';
import { gatedImages, planFronts, startGate, stopGate, throughFronts } from './gate.js';
import { DOCKER_HUB, splitRepository } from './images.js';
import { failOrWarn, warn } from './log.js';
import { listenAddress, mirrorPlans, probeUpstreams, startMirrors } from './mirrors.js';
import { NOTHING_RESTORED, restoredBytes, restoreIndex, type Restored } from './persistence.js';
import { prefetchRefs, startPrefetch } from './prefetch.js';
import { formatBytes } from './report.js';
import { installRegistry } from './registry-binary.js';
import { useRegistriesConf } from './registries-conf.js';
import { state } from './state.js';
import { scanStorage } from './storage.js';
import { createWorkDir, writeBaseline } from './work-dir.js';

export async function main(): Promise<void> {
  const jobStarted = Date.now();
  state.markMainStarted();
  for (const output of ['mirror', 'mirrors', 'hosts-dir', 'buildkitd-config', 'k3s-registries', 'registries-conf', 'restored-key'])
    core.setOutput(output, '');
  try {
    const inputs = getInputs();
    const address = await listenAddress(inputs.listen);
    const dir = await createWorkDir();
    const scope = { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() };
    state.setCache({ workDir: dir.root, restoredKey: '' });

    const budget = { maxBytes: inputs.maxSize, maxAgeDays: inputs.maxAgeDays };
    const plans = mirrorPlans(inputs);
    const timeoutMs = inputs.cacheTimeoutSeconds * 1000;
    const [restored, binary, probes] = await Promise.all([
      restoreOrStartEmpty(() =>
        withDeadline('restoring the cache index', timeoutMs, (signal) =>
          restoreIndex(scope, budget, inputs.registries, new Date(), signal),
        ),
      ),
      installRegistry(inputs, join(dir.root, 'download')),
      probeUpstreams(plans),
    ]);
    const storage = await scanStorage(dir.storage);
    await writeBaseline(dir, { started: jobStarted, restored, storage });
    state.setCache({ workDir: dir.root, restoredKey: restored.restoredKey });
    core.setOutput('restored-key', restored.restoredKey);
    // The entries come in behind the mirrors: the job goes on while they download.
    const restoreProgress = join(dir.root, 'restore-progress.jsonl');
    if (restored.entries.length) {
      const plan = {
        workDir: dir.root,
        entries: restored.entries,
        images: restored.images,
        sizes: restored.index!.blobs,
        progress: restoreProgress,
        timeoutMs,
      };
      state.setRestore({ pid: await startRestore(plan), progress: restoreProgress, started: Date.now(), timeoutMs });
      core.info(
        `Restoring ${restored.images.length} images (${formatBytes(restoredBytes(restored))} in ${restored.entries.length} cache entries) in the background, most recently used first.`,
      );
    }

    // While the restore runs, a front holds each mirror's port, so that a pull of an image on its way waits for it.
    // It starts first and loads while the registries start behind it.
    const fronts = restored.entries.length
      ? await planFronts(
          plans.map((p) => p.registry),
          address,
          inputs.port,
        )
      : [];
    if (fronts.length) {
      const plan = {
        workDir: dir.root,
        fronts,
        images: gatedImages(restored.images),
        progress: restoreProgress,
        deadline: Date.now() + timeoutMs,
      };
      await startGate(plan, state.setGate);
    }
    const ports = new Map(fronts.length ? fronts.map((f) => [f.registry, f.target]) : inputs.port ? [[DOCKER_HUB, inputs.port]] : []);
    const options = { binary, dir, address, ports, restoredImages: restored.images.map((i) => i.repository) };
    let mirrors = await startMirrors(plans, probes, options, state.setMirrors);
    if (fronts.length) {
      const direct = mirrors;
      // Without its front a mirror still serves: a pull that comes before its image goes to the upstream instead.
      mirrors = await throughFronts(mirrors, dir.root, address).catch(async (e: Error) => {
        warn(`${e.message}; pulls of images still being restored go to the upstream.`);
        await stopGate(state.gate()!);
        return direct;
      });
      state.setMirrors(mirrors);
    }
    await writeClientConfigs(dir.clients, mirrors);
    core.setOutput('mirrors', JSON.stringify(Object.fromEntries(mirrors.map((m) => [m.registry, m.url]))));
    core.setOutput('hosts-dir', dir.clients.hostsDir);
    core.setOutput('buildkitd-config', dir.clients.buildkitdConfig);
    core.setOutput('k3s-registries', dir.clients.k3sRegistries);
    core.setOutput('registries-conf', await useRegistriesConf(inputs.registriesConfDir, dir.root, mirrors, state.setRegistriesConf));

    const hub = mirrors.find((m) => m.registry === DOCKER_HUB);
    const daemonPulls = await pointDaemon(inputs.daemonConfig, mirrors, {
      daemon: state.setDaemon,
      registryHosts: state.setRegistryHosts,
      builtInBuildkit: state.setBuiltInBuildkit,
    });
    if (hub) core.setOutput('mirror', hub.url);

    // dockerd mirrors Docker Hub only: what it pulls from elsewhere would not come through the cache.
    const hubImages = restored.images.filter((image) => splitRepository(image.repository).registry === DOCKER_HUB);
    const refs = inputs.prefetch && daemonPulls ? prefetchRefs(restored.index, hubImages) : [];
    if (refs.length) {
      const log = join(dir.root, 'prefetch.log');
      const waitForRestore = restored.entries.length ? { restoreProgress, waitMs: timeoutMs } : {};
      state.setPrefetch({
        pid: await startPrefetch({ refs, concurrency: inputs.prefetchConcurrency, log, ...waitForRestore }),
        log,
        jobStarted,
      });
      core.info(`Prefetching in the background what the last run pulled: ${refs.join(', ')}`);
    }
  } catch (e) {
    state.setMainError((e as Error).message);
    failOrWarn(`could not set up the cache: ${(e as Error).message}. The job goes on pulling directly.`);
  }
}

/** A cache that cannot be restored is an empty cache, not a failed step. */
async function restoreOrStartEmpty(restore: () => Promise<Restored>): Promise<Restored> {
  try {
    return await restore();
  } catch (e) {
    warn(`restoring the cache failed (${(e as Error).message}); starting with an empty cache.`);
    return NOTHING_RESTORED;
  }
}
