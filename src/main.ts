// The main step: restore the cache, start a mirror per registry on it, point the daemon and the other
// clients at them. Any failure is a warning and the job pulls directly, unless fail-on-error is set.
import * as core from '@actions/core';
import { join } from 'node:path';
import { withDeadline } from './bounded.js';
import { writeClientConfigs } from './client-config.js';
import { failOnErrorInput, getInputs, runnerArch } from './context.js';
import { pointDaemon } from './daemon.js';
import { DOCKER_HUB, splitRepository } from './images.js';
import { listenAddress, mirrorPlans, probeUpstreams, startMirrors } from './mirrors.js';
import { NOTHING_RESTORED, restoreStorage, type Restored } from './persistence.js';
import { prefetchRefs, startPrefetch } from './prefetch.js';
import { installRegistry } from './registry-binary.js';
import { useRegistriesConf } from './registries-conf.js';
import { state } from './state.js';
import { scanStorage } from './storage.js';
import { createWorkDir, writeBaseline } from './work-dir.js';

export async function main(): Promise<void> {
  const jobStarted = Date.now();
  state.markMainStarted();
  for (const output of ['mirror', 'mirrors', 'hosts-dir', 'buildkitd-config', 'k3s-registries', 'registries-conf', 'restored-key']) core.setOutput(output, '');
  try {
    const inputs = getInputs();
    const address = await listenAddress(inputs.listen);
    const dir = await createWorkDir();
    const scope = { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() };
    state.setCache({ workDir: dir.root, restoredKey: '' });

    const budget = { maxBytes: inputs.maxSize, maxAgeDays: inputs.maxAgeDays };
    const plans = mirrorPlans(inputs);
    const [restored, binary, probes] = await Promise.all([
      restoreOrStartEmpty(() => withDeadline('restoring the cache', inputs.cacheTimeoutSeconds * 1000, (signal) => restoreStorage(scope, budget, inputs.registries, new Date(), signal))),
      installRegistry(inputs, join(dir.root, 'download')),
      probeUpstreams(plans),
    ]);
    const storage = await scanStorage(dir.storage);
    await writeBaseline(dir, { started: jobStarted, restored, storage });
    state.setCache({ workDir: dir.root, restoredKey: restored.restoredKey });
    core.setOutput('restored-key', restored.restoredKey);

    const options = { binary, dir, address, port: inputs.port, restoredImages: restored.images.map((i) => i.repository) };
    const mirrors = await startMirrors(plans, probes, options, state.setMirrors);
    await writeClientConfigs(dir.clients, mirrors);
    core.setOutput('mirrors', JSON.stringify(Object.fromEntries(mirrors.map((m) => [m.registry, m.url]))));
    core.setOutput('hosts-dir', dir.clients.hostsDir);
    core.setOutput('buildkitd-config', dir.clients.buildkitdConfig);
    core.setOutput('k3s-registries', dir.clients.k3sRegistries);
    core.setOutput('registries-conf', await useRegistriesConf(inputs.registriesConfDir, dir.root, mirrors, state.setRegistriesConf));

    const hub = mirrors.find((m) => m.registry === DOCKER_HUB);
    const daemonPulls = await pointDaemon(inputs.daemonConfig, mirrors, { daemon: state.setDaemon, registryHosts: state.setRegistryHosts, builtInBuildkit: state.setBuiltInBuildkit });
    if (hub) core.setOutput('mirror', hub.url);

    // dockerd mirrors Docker Hub only: what it pulls from elsewhere would not come through the cache.
    const hubImages = restored.images.filter((image) => splitRepository(image.repository).registry === DOCKER_HUB);
    const refs = inputs.prefetch && daemonPulls ? prefetchRefs(restored.index, hubImages) : [];
    if (refs.length) {
      const log = join(dir.root, 'prefetch.log');
      state.setPrefetch({ pid: await startPrefetch({ refs, concurrency: inputs.prefetchConcurrency, log }), log, jobStarted });
      core.info(`Prefetching in the background what the last run pulled: ${refs.join(', ')}`);
    }
  } catch (e) {
    const message = `pull-cache-action could not set up the cache: ${(e as Error).message}. The job goes on pulling directly.`;
    state.setMainError((e as Error).message);
    if (failOnErrorInput()) core.setFailed(message);
    else core.warning(message);
  }
}

/** A cache that cannot be restored is an empty cache, not a failed step. */
async function restoreOrStartEmpty(restore: () => Promise<Restored>): Promise<Restored> {
  try {
    return await restore();
  } catch (e) {
    core.warning(`Restoring the cache failed (${(e as Error).message}); starting with an empty cache.`);
    return NOTHING_RESTORED;
  }
}
