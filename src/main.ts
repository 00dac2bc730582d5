// The main step: restore the cache, start the registry on it, point the daemon at it. Any failure is a
// warning and the job pulls directly, unless fail-on-error is set.
import * as core from '@actions/core';
import { join } from 'node:path';
import { failOnErrorInput, getInputs, runnerArch } from './context.js';
import { useMirror } from './daemon.js';
import { probeUpstream } from './docker-hub.js';
import { NOTHING_RESTORED, restoreStorage, withDeadline, type Restored } from './persistence.js';
import { prefetchRefs, startPrefetch } from './prefetch.js';
import { installRegistry } from './registry-binary.js';
import { assertPortFree, freeLoopbackPort, registryConfig, startRegistry } from './registry.js';
import { state } from './state.js';
import { scanStorage } from './storage.js';
import { createWorkDir, workDir, writeBaseline } from './work-dir.js';

export async function main(): Promise<void> {
  const jobStarted = Date.now();
  state.markMainStarted();
  core.setOutput('mirror', '');
  core.setOutput('restored-key', '');
  try {
    const inputs = getInputs();
    const dir = workDir();
    await createWorkDir(dir);
    const scope = { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() };
    state.setCache({ workDir: dir.root, restoredKey: '' });

    const budget = { maxBytes: inputs.maxSize, maxAgeDays: inputs.maxAgeDays };
    const credentials = inputs.dockerhubUsername ? { username: inputs.dockerhubUsername, password: inputs.dockerhubToken } : null;
    const [restored, binary, probe] = await Promise.all([
      restoreOrStartEmpty(() => withDeadline('restoring the cache', inputs.cacheTimeoutSeconds * 1000, restoreStorage(scope, budget, new Date()))),
      installRegistry(inputs, join(dir.root, 'download')),
      probeUpstream(inputs.upstream, credentials),
    ]);
    const online = probe.reachable;
    const storage = await scanStorage(dir.storage);
    await writeBaseline(dir, { restored, storage });
    state.setCache({ workDir: dir.root, restoredKey: restored.restoredKey });
    core.setOutput('restored-key', restored.restoredKey);

    // A proxy exits at start when its upstream is down; serving the restored storage as it is keeps cached images pulling.
    if (!online && restored.images.length === 0) throw new Error(`${inputs.upstream} cannot be reached and the cache holds nothing to serve`);
    if (!online) core.warning(`${inputs.upstream} cannot be reached: the mirror serves what the cache holds (${restored.images.length} image${restored.images.length === 1 ? '' : 's'}), offline.`);
    // With credentials it refuses, a 2.8 proxy answers "manifest unknown" even for public images: go anonymous.
    if (probe.credentials === 'refused') {
      core.warning(`${inputs.upstream} refused dockerhub-username "${inputs.dockerhubUsername}" with the given dockerhub-token: check both inputs. The cache pulls anonymously in this job (public images, anonymous rate limit).`);
    }
    const pullsAs = probe.credentials === 'refused' ? null : credentials;
    const port = inputs.port ? (await assertPortFree(inputs.port), inputs.port) : await freeLoopbackPort();
    const upstream = online ? inputs.upstream : null;
    const config = registryConfig({ port, storageDir: dir.storage, upstream, username: pullsAs?.username ?? '', password: pullsAs?.password ?? '' });
    const registry = await startRegistry(binary, dir.registry, config, port);
    state.setRegistry({ pid: registry.pid, port, configPath: dir.registry.config, offline: !online, pullsAs: pullsAs?.username ?? '' });
    core.info(`Registry mirror listening on ${registry.url} (pid ${registry.pid}), ${online ? `proxying ${inputs.upstream}` : 'offline'}`);

    await useMirror(inputs.daemonConfig, registry.url, state.setDaemon);
    core.info(`dockerd now pulls Docker Hub images through ${registry.url}`);
    core.setOutput('mirror', registry.url);

    const refs = inputs.prefetch ? prefetchRefs(restored.index, restored.images) : [];
    if (refs.length) {
      const log = join(dir.root, 'prefetch.log');
      state.setPrefetch({ pid: startPrefetch({ refs, concurrency: inputs.prefetchConcurrency, log }), log, jobStarted });
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
