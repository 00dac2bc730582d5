// The post step: stop the registry, give the daemon back its own config, report what the job pulled and
// from where, and save what is new. Saving never fails the job.
import * as core from '@actions/core';
import { readFile, rm } from 'node:fs/promises';
import { failOnErrorInput, getInputs, runnerArch, type Inputs } from './context.js';
import { imagesInStorage } from './cache-index.js';
import { restoreDaemon } from './daemon.js';
import { saveStorage, type Saved } from './persistence.js';
import { stopRegistry } from './registry.js';
import { accountUsage, parseAccessLog, renderReport, writeReport, type Usage } from './report.js';
import { state } from './state.js';
import { readManifests, scanStorage } from './storage.js';
import { readBaseline, workDir, type Baseline, type WorkDir } from './work-dir.js';

export async function post(): Promise<void> {
  const problems: string[] = [];
  const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | null> => {
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

  const registry = state.registry();
  if (registry?.offline) problems.push('The upstream could not be reached when the job started: the cache served what it holds, offline.');
  if (registry) await attempt('stopping the registry', () => stopRegistry(registry.pid, registry.configPath));
  const daemon = state.daemon();
  const daemonRestored = daemon ? await attempt(`restoring ${daemon.configPath}`, () => restoreDaemon(daemon)) : undefined;

  const cacheState = state.cache();
  const inputs = await attempt('reading the inputs', async () => getInputs());
  if (cacheState) {
    const dir = workDir(cacheState.workDir);
    const baseline = await attempt('reading what the cache held at start', () => readBaseline(dir));
    if (baseline && registry && inputs) await reportAndSave(dir, baseline, inputs, problems, attempt);
    await rm(dir.root, { recursive: true, force: true });
  }
  if (daemonRestored === null && failOnErrorInput()) core.setFailed(`pull-cache-action could not put ${daemon!.configPath} back: see the warnings above`);
}

async function reportAndSave(
  dir: WorkDir,
  baseline: Baseline,
  inputs: Inputs,
  problems: string[],
  attempt: <T>(what: string, fn: () => Promise<T>) => Promise<T | null>,
): Promise<void> {
  const after = await scanStorage(dir.storage);
  const manifests = await readManifests(dir.storage, after);
  const usage: Usage | null = await attempt('reading what the registry served', async () =>
    accountUsage(parseAccessLog(await readFile(dir.registry.accessLog, 'utf8')), baseline.storage, after, manifests),
  );
  const job = { seen: imagesInStorage(after, manifests), used: new Set(usage?.images.map((i) => i.key)) };
  const run = { id: process.env.GITHUB_RUN_ID || 'local', attempt: process.env.GITHUB_RUN_ATTEMPT || '1' };
  const scope = { workDir: dir.root, prefix: inputs.cacheKey, arch: runnerArch() };
  const saved: Saved | null = inputs.save ? await attempt('saving the cache', () => saveStorage(scope, baseline.restored, baseline.storage, after, job, run)) : null;
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
    problems,
  });
  await attempt('writing the report', () => writeReport(markdown));
}
