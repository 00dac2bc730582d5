// Prefetch: right after the mirror is up, pull in the background what the last run pulled, so the daemon's
// download and extraction overlap the job's own first steps. A detached worker (this bundle, started again
// with --prefetch and the path of its plan) pulls a few images at a time and writes one JSON line per image.
import { request } from 'node:http';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { whenInPlace } from './background-restore.js';
import { imageKey, type CacheIndex } from './cache-index.js';
import { displayName, withoutHubHost } from './images.js';
import { mapBounded, pollUntil } from './bounded.js';
import { commandOutput, isRunning, startWorker } from './processes.js';

/** The argument that makes this bundle the prefetch worker; the path of its plan follows it. */
const PREFETCH_ARGUMENT = '--prefetch';

export interface PrefetchPlan {
  refs: string[];
  concurrency: number;
  log: string;
  /** The background restore's progress file: each image is pulled once the cache can serve it. */
  restoreProgress?: string;
  waitMs?: number;
}

export interface PrefetchResult {
  ref: string;
  ok: boolean;
  /** Epoch milliseconds. */
  started: number;
  ended: number;
  error?: string;
}

/**
 * Each prefetched tag costs a manifest request upstream, which Docker Hub counts as a pull: a restored index could
 * otherwise spend the whole quota. More than any job pulls.
 */
export const MAX_PREFETCH = 64;

/** What the run that saved the index pulled (its images were used at the moment it was saved), as docker references. */
export function prefetchRefs(index: CacheIndex | null, restored: { repository: string; reference: string }[]): string[] {
  if (!index) return [];
  const pulledLast = new Set(index.images.filter((i) => i.lastUsed === index.created).map(imageKey));
  return restored
    .map(imageKey)
    .filter((key) => pulledLast.has(key))
    .map(displayName)
    .slice(0, MAX_PREFETCH);
}

/**
 * Starts the worker detached (it outlives the main step) and returns its pid. Its plan goes in a file beside its
 * log, and its environment is the daemon's address alone: it has no use for the job's tokens.
 */
export async function startPrefetch(plan: PrefetchPlan): Promise<number> {
  const planFile = join(dirname(plan.log), 'prefetch-plan.json');
  await writeFile(planFile, JSON.stringify(plan));
  return startWorker('prefetch worker', [PREFETCH_ARGUMENT, planFile]).pid!;
}

/** The plan's path when this process is the prefetch worker (`node index.js --prefetch PLAN`); undefined otherwise. */
export function prefetchPlanFile(argv: string[]): string | undefined {
  return argv[2] === PREFETCH_ARGUMENT ? argv[3] : undefined;
}

/**
 * What the daemon puts in its requests to the mirror for the prefetch's pulls (`UpstreamClient(...)` carries the
 * API client's User-Agent): the report tells the job's own requests from the prefetch's by it.
 */
export const PREFETCH_AGENT = 'pull-cache-action-prefetch';

/** The worker: pulls each image of its plan through the daemon (and so the mirror), a few at a time. */
export async function runPrefetch(planFile: string): Promise<void> {
  const plan = JSON.parse(await readFile(planFile, 'utf8')) as PrefetchPlan;
  await mapBounded(plan.refs, plan.concurrency, async (ref) => {
    if (plan.restoreProgress) await whenInPlace(plan.restoreProgress, ref, plan.waitMs ?? 0);
    const started = Date.now();
    const error = await pull(ref).then(
      () => undefined,
      (e: Error) => e.message,
    );
    const result: PrefetchResult = { ref, ok: !error, started, ended: Date.now(), ...(error ? { error } : {}) };
    await appendFile(plan.log, `${JSON.stringify(result)}\n`);
  });
}

/** `docker pull` by the Engine API (POST /images/create), so the pull carries our User-Agent. */
async function pull(ref: string, timeoutMs = 15 * 60_000): Promise<void> {
  const host = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
  const target = host.startsWith('unix://')
    ? { socketPath: host.slice('unix://'.length) }
    : host.startsWith('tcp://') && !process.env.DOCKER_TLS_VERIFY
      ? { host: new URL(host).hostname, port: Number(new URL(host).port) }
      : null;
  if (!target) throw new Error(`DOCKER_HOST ${host} is not a unix socket or plain tcp address`);
  await new Promise<void>((resolve, reject) => {
    const req = request(
      {
        ...target,
        method: 'POST',
        path: `/images/create?fromImage=${encodeURIComponent(ref)}`,
        headers: { 'user-agent': PREFETCH_AGENT },
        timeout: timeoutMs,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body = (body + chunk).slice(-4096)));
        res.on('end', () => {
          const error = res.statusCode !== 200 ? body.trim() : /"error":\s*"((?:[^"\\]|\\.)*)"/.exec(body)?.[1];
          if (error) reject(new Error(error));
          else resolve();
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Waits (bounded) for the worker, then stops it and the pulls it started; returns what it did. */
export async function finishPrefetch(pid: number, log: string, waitMs: number): Promise<PrefetchResult[]> {
  await pollUntil(async () => !(await isRunning(pid, process.argv[1])), waitMs, 100);
  if (await isRunning(pid, process.argv[1])) process.kill(-pid, 'SIGKILL'); // its process group: the worker and anything it started
  const text = await readFile(log, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as PrefetchResult);
}

export interface PrefetchUsage {
  used: string[];
  unused: { ref: string; ms: number }[];
  failed: { ref: string; error: string }[];
}

/** Which prefetched images the job went on to use (`jobImages`, as accountUsage found them, by display name). */
export function prefetchUsage(results: PrefetchResult[], jobImages: string[]): PrefetchUsage {
  const used: string[] = [];
  const unused: PrefetchUsage['unused'] = [];
  for (const r of results.filter((r) => r.ok)) {
    if (jobImages.includes(r.ref)) used.push(r.ref);
    else unused.push({ ref: r.ref, ms: r.ended - r.started });
  }
  return { used, unused, failed: results.filter((r) => !r.ok).map((r) => ({ ref: r.ref, error: r.error ?? '' })) };
}

/** A reference as the user typed it (`alpha`, `docker.io/library/alpha:1`) in the form prefetch uses (`alpha:latest`, `alpha:1`). */
export function normalRef(image: string): string {
  const name = displayName(withoutHubHost(image));
  return /@|:[^/]*$/.test(name) ? name : `${name}:latest`;
}

/** Images of the containers the job created (what `docker run` and compose used without pulling). */
export async function containerImages(sinceMs: number): Promise<string[]> {
  const out = await commandOutput('docker', ['ps', '--all', '--no-trunc', '--format', '{{.Image}}\t{{.CreatedAt}}'], {
    kind: 'docker',
    timeout: 10_000,
  }).catch(() => '');
  return out
    .split('\n')
    .map((line) => line.split('\t'))
    .filter(([, created]) => dockerTime(created ?? '') >= sinceMs - 1000)
    .map(([image]) => image);
}

/** `2026-11-29 19:14:15 +0000 UTC`, as docker ps prints CreatedAt, in epoch milliseconds (NaN otherwise). */
export function dockerTime(text: string): number {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) ([+-]\d\d)(\d\d)/.exec(text);
  return m ? Date.parse(`${m[1]}T${m[2]}${m[3]}:${m[4]}`) : NaN;
}
