// npm run bench: the time to get a job's images, side by side in one run, for
//   direct      docker pull from the upstream, through a throttle standing in for the internet (also at 20 MB/s,
//               a self-hosted runner's link);
//   floor       docker pull from a plain registry on loopback that already holds the images;
//   save/load   restore a `docker save` tarball from the Actions cache, then docker load (what
//               ScribeMD/docker-cache and satackey/action-docker-layer-caching do);
//   this action cold (empty cache; with the default registry 3.x and with 2.8.3, which fetches each missed blob
//               twice), warm (cache restored; also with prefetch off, with an upstream at 20 MB/s, and a job that
//               pulls 1 of the 5 cached images), and changed (one image gained a new top layer since the run that
//               saved the cache), each a real job: main step, pulls, post step;
// the same for a 1 GB cache (a workload of its own: cold, warm, save/load), so the restore's time shows;
// and, on a warm cache, a job whose first docker command comes after N seconds of other work (a child process
// spinning one core, standing in for `npm ci`): how long that command blocks, with prefetch, without, and save/load;
// and what each extra registry listed in `registries` adds to the main and post steps (bench/registries.ts).
// Every variant of the action reports how long its main step blocks the job. The report ends with the figures
// against issue 13's targets, each met or missed.
// Real parts throughout (the tests' helpers): a dockerd per variant and repetition (fresh data-root), a Distribution
// registry as the upstream, the local Twirp cache service on Azurite used by the real @actions/cache, and the
// bundled action (dist/index.js) run as the Actions runner runs it. Prints medians and ratios as tables.
import * as cache from '@actions/cache';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem, type as osType } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { DOCKERD_BINARY, startDockerd } from '../test/helpers/dockerd.js';
import type { StepResult } from '../test/helpers/runner.js';
import { run } from '../test/helpers/process.js';
import { REGISTRY_RELEASES, REGISTRY_UNDER_TEST } from '../test/helpers/registry-under-test.js';
import { REGISTRY_BINARY, startUpstream, type Upstream } from '../test/helpers/upstream.js';
import { startWorld, type Runner, type World } from '../test/helpers/world.js';
import { benchRegistries } from './registries.js';
import { startThrottle, type Throttle } from './throttle.js';
import { activity, mainPhases, postPhases, readTrace, stepProcesses, union, type MainPhases, type PostPhases } from './timeline.js';
import { installTrace } from './trace.mjs';
import { cacheServiceOf } from '../src/cache-entry.js';
import { contentOf, holdersOf } from '../src/cache-index.js';
import { runnerArch } from '../src/context.js';
import { restoreIndex } from '../src/persistence.js';
import type { CallRecord } from '../test/helpers/cache-service.js';
import { buildWorkload, FULL, LARGE, medianImage, pushWorkload, QUICK, setChanged, type BuiltImage, type Workload } from './workload.js';

const MB = 1_000_000;
/** The platform the action's index keys name on this machine. */
const ARCH = runnerArch();
const TRACE_MODULE = fileURLToPath(new URL('./trace.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------- flags

const USAGE = `usage: npm run bench -- [--reps N] [--bandwidth MBps] [--latency ms] [--quick] [--storage-driver overlay2|vfs]
                        [--json FILE] [--time-limit s] [--cpu-prof DIR] [--work s,s] [--only v,v] [--before FILE]
  --reps N            repetitions, medians reported (default 3; --quick: 1); the 1 GB variants: the lesser of N and 2
  --bandwidth MBps    the throttled upstream's bandwidth, MB (10^6 bytes) a second, each direction (default 50)
  --latency ms        the throttled upstream's added round-trip time (default 20)
  --quick             small images, 1 repetition, no 1 GB variants unless --only names them: the CI version
  --storage-driver D  the daemons' storage driver (default overlay2, vfs when overlay2 cannot start)
  --json FILE         also write every sample, the workload and the machine as JSON
  --time-limit s      stop starting repetitions after this many seconds (default 900); the run reports what it has
  --cpu-prof DIR      write a V8 CPU profile of every step of the action (main, post, prefetch worker) into DIR
  --before FILE       another build of the action (an older commit's dist/index.js): its warm, partial-use,
                      20 MB/s and 1 GB jobs run beside this build's as the *-before variants, in the same run
  --work s,s          seconds of other work (one core busy) before the job's first docker command, one scenario
                      each (default 5,20; --quick: auto); auto: this run's restore + floor seconds, rounded up (the
                      warm main step or the save/load restoreCache, the longer, plus the floor's images ready);
                      its repetitions: the lesser of --reps and 2
  --only v,v          run only these variants (direct direct-20 floor saveload-warm saveload-partial
                      saveload-changed cold cold-2.8 warm warm-noprefetch warm-partial warm-20 changed cold-1g
                      warm-1g saveload-1g), and neither the other-work scenario nor the extra registries; the warm,
                      partial, 20 MB/s and changed jobs restore what cold saved, warm-1g what cold-1g saved (the
                      cold job runs unmeasured when --only does not name it)`;

const OPTIONS = {
  reps: { type: 'string' },
  bandwidth: { type: 'string', default: '50' },
  latency: { type: 'string', default: '20' },
  quick: { type: 'boolean', default: false },
  'storage-driver': { type: 'string', default: 'overlay2' },
  json: { type: 'string' },
  'time-limit': { type: 'string', default: '900' },
  'cpu-prof': { type: 'string' },
  work: { type: 'string' },
  only: { type: 'string' },
  before: { type: 'string' },
  help: { type: 'boolean', default: false },
} as const;

const { values: flags } = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
})();
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
const usageError = (message: string): never => {
  console.error(`bench: ${message}\n${USAGE}`);
  process.exit(2);
};
const positive = (name: string, value: string, min: number, max: number): number => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) usageError(`--${name} must be a number from ${min} to ${max}, got ${value}`);
  return n;
};
const REPS = Math.round(positive('reps', flags.reps ?? (flags.quick ? '1' : '3'), 1, 20));
const BANDWIDTH = positive('bandwidth', flags.bandwidth!, 0.1, 10_000) * MB;
/** The upstream link of a self-hosted runner: direct-20 and warm-20 pull through a throttle of their own at this rate. */
const SLOW_BANDWIDTH = 20 * MB;
const LATENCY = positive('latency', flags.latency!, 0, 1000);
const TIME_LIMIT_MS = positive('time-limit', flags['time-limit']!, 30, 7200) * 1000;
const SPEC = flags.quick ? QUICK : FULL;
/** Seconds of other work before the job's first docker command, one scenario each; auto: restore + floor of this run. */
const WORK: (number | 'auto')[] = [
  ...new Set(
    (flags.work ?? (flags.quick ? 'auto' : '5,20')).split(',').map((w) => {
      const n = Number(w.trim());
      return w.trim() === 'auto'
        ? 'auto'
        : Number.isFinite(n) && n >= 0 && n <= 600
          ? n
          : usageError(`--work takes seconds from 0 to 600 or auto, got ${w}`);
    }),
  ),
];
/** Repetitions of the other-work scenario (it is long: a job per variant and N). */
const WORK_REPS = Math.min(REPS, 2);
/** Repetitions of the 1 GB variants (each job moves 1 GB through the cache or the daemon). */
const LARGE_REPS = Math.min(REPS, 2);
if (!['overlay2', 'vfs'].includes(flags['storage-driver']!)) usageError('--storage-driver must be overlay2 or vfs');

const began = Date.now();
const loadAtStart = loadavg()[0];
/** The 1-minute load average every 5 s while the bench runs (its own daemons count too). */
const loadSamples: number[] = [];
setInterval(() => loadSamples.push(loadavg()[0]), 5_000).unref();
const progress = (message: string) =>
  process.stderr.write(`[bench ${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);

// ---------------------------------------------------------------- measurements

const VARIANTS = [
  'direct',
  'direct-20',
  'floor',
  'saveload-warm',
  'saveload-partial',
  'saveload-changed',
  'cold',
  'cold-2.8',
  'warm',
  'warm-noprefetch',
  'warm-partial',
  'warm-partial-noprefetch',
  'warm-20',
  'changed',
  'warm-before',
  'warm-partial-before',
  'warm-20-before',
  'cold-1g',
  'warm-1g',
  'warm-1g-before',
  'saveload-1g',
] as const;
type Variant = (typeof VARIANTS)[number];
/** The 1 GB cache's variants: a workload of their own, measured after the others. */
const LARGE_VARIANTS: Variant[] = ['cold-1g', 'warm-1g', 'warm-1g-before', 'saveload-1g'];
/** The variants of the --before build: run only when it is given. */
const BEFORE_VARIANTS: Variant[] = ['warm-before', 'warm-partial-before', 'warm-20-before', 'warm-1g-before'];
/** The other build's bundle (--before), as an absolute path. */
const BEFORE = flags.before === undefined ? undefined : resolve(flags.before);
if (BEFORE && !existsSync(BEFORE)) usageError(`--before names ${BEFORE}, which does not exist`);
/** The jobs that restore what the repetition's cold job saved: the cold job runs, unmeasured if need be, before them. */
const RESTORE_COLD: Variant[] = [
  'warm',
  'warm-noprefetch',
  'warm-partial',
  'warm-partial-noprefetch',
  'warm-20',
  'changed',
  'warm-before',
  'warm-partial-before',
  'warm-20-before',
];
/** The registry release of the cold-2.8 variant: the one before 3.0's single fetch per missed blob. */
const REGISTRY_2_8 = '2.8.3';
/** The variants this run measures (--only), in VARIANTS' order; by default all of them (--quick: but the 1 GB ones). */
const ONLY: Variant[] =
  flags.only === undefined
    ? VARIANTS.filter((v) => !(flags.quick && LARGE_VARIANTS.includes(v)) && (BEFORE || !BEFORE_VARIANTS.includes(v)))
    : (flags.only.split(',').map((v) => v.trim()) as Variant[]);
for (const v of ONLY) if (!VARIANTS.includes(v)) usageError(`--only names variant ${v}, not one of ${VARIANTS.join(', ')}`);
for (const v of ONLY) if (BEFORE_VARIANTS.includes(v) && !BEFORE) usageError(`--only names ${v}: give the other build with --before FILE`);
const want = (v: Variant) => ONLY.includes(v);
/** The save/load cache keys: the tarball of the default workload, and of the 1 GB one. */
const SAVELOAD_KEY = 'docker-cache-base';
const SAVELOAD_1G_KEY = 'docker-cache-1g';
/** Images ready, warm job / floor, as the action restored before issue 13 (BENCHMARKS.md, Results): the no-other-work target. */
const TODAY_WARM_OVER_FLOOR = 1.16;
const LABELS: Record<Variant, string> = {
  direct: 'direct: docker pull from the throttled upstream',
  'direct-20': `direct, upstream at ${SLOW_BANDWIDTH / MB} MB/s`,
  floor: 'floor: docker pull from a local registry',
  'saveload-warm': 'save/load, warm: restore tarball + docker load',
  'saveload-partial': 'save/load, job using 1 of the 5 images: restore + load all',
  'saveload-changed': 'save/load, changed: restore + load + pull new image',
  cold: `this action, cold job (empty cache), registry ${REGISTRY_UNDER_TEST.version}`,
  'cold-2.8': `this action, cold job (empty cache), registry ${REGISTRY_2_8}`,
  warm: 'this action, warm job (cache restored)',
  'warm-noprefetch': 'this action, warm job, prefetch: false',
  'warm-partial': 'this action, warm job using 1 of the 5 cached images',
  'warm-partial-noprefetch': 'this action, warm job using 1 of the 5, prefetch: false',
  'warm-20': `this action, warm job, upstream at ${SLOW_BANDWIDTH / MB} MB/s`,
  changed: 'this action, changed job (one new top layer)',
  'cold-1g': 'this action, cold job, 1 GB workload',
  'warm-1g': 'this action, warm job, 1 GB cache restored',
  'warm-before': 'the --before build, warm job',
  'warm-partial-before': 'the --before build, warm job using 1 of the 5 cached images',
  'warm-20-before': `the --before build, warm job, upstream at ${SLOW_BANDWIDTH / MB} MB/s`,
  'warm-1g-before': 'the --before build, warm job, 1 GB cache restored',
  'saveload-1g': 'save/load, warm, 1 GB: restore tarball + docker load',
};

interface Sample {
  /** Time to images ready: restore (main step or restoreCache) plus pulls or load, ms. */
  ready: number;
  /** How long the job's setup step blocks it before its next step: the action's main step, save/load's restoreCache + docker load, ms; NaN for plain pulls. */
  blocks: number;
  /** The restore part (main step, or restoreCache), ms. */
  restore: number;
  /** The pull or load part, ms. */
  pull: number;
  /** The post step (or what a save/load action's post does), ms; null: no post. */
  post: number | null;
  /** Bytes through the cache service: restored (down) and saved (up). */
  cacheDown: number;
  cacheUp: number;
  /** Entries created. */
  entriesUp: number;
  /** Calls to the cache service in the job (main and post): per Twirp method, and `upload`/`download` for the signed URLs' requests. */
  calls?: Record<string, number>;
  /** After an action job that saved: how many entries each image of the saved index is spread over, one number an image. */
  entriesPerImage?: number[];
  /** What the cache service holds for this variant after the job, bytes. */
  stored: number | null;
  /** Bytes from the upstream (through the throttle) and blob GETs it served. */
  upstream: number;
  upstreamBlobGets: number;
  main?: MainPhases;
  postPhases?: PostPhases;
  /** save/load: parts of the restore and of the save. */
  parts?: Record<string, number>;
}

const samples: Record<Variant, Sample[]> = Object.fromEntries(VARIANTS.map((v) => [v, []])) as unknown as Record<Variant, Sample[]>;

/** The other-work scenario: variants, for each N seconds of other work. */
type WorkVariant = 'prefetch' | 'noprefetch' | 'saveload';
const WORK_VARIANTS: WorkVariant[] = ['prefetch', 'noprefetch', 'saveload'];
interface WorkSample {
  /** How long the job's docker command blocked: its pulls after the work (save/load: restore + docker load, before it), ms. */
  blocking: number;
  /** The job from its start (main step, or restoreCache) to images ready, other work included, ms. */
  ready: number;
  /** The other work as run, ms. */
  work: number;
}
/** By seconds of other work (--work, auto resolved once the variants ran). */
const workSamples = new Map<number, Record<WorkVariant, WorkSample[]>>();

function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** The median of a figure over a variant's samples. */
const med = (v: Variant, f: (x: Sample) => number | null | undefined) => median(samples[v].map((x) => f(x) ?? NaN));
/** A variant's post step, null when it has none. */
const postOf = (v: Variant) => (samples[v].some((x) => x.post !== null) ? med(v, (x) => x.post) : null);

/**
 * Restore + floor seconds (ms) of this run, the other work the issue asks for: the warm job's main step or the
 * save/load restoreCache of the same images, the longer (a restore in the background still takes the second),
 * plus the floor's images ready.
 */
function restorePlusFloor(): number {
  return (
    Math.max(
      med('warm', (x) => x.blocks),
      med('saveload-warm', (x) => x.restore),
    ) + med('floor', (x) => x.ready)
  );
}
// ---------------------------------------------------------------- the world

let world: World | undefined;
let floor: Upstream | undefined;
const throttles: Throttle[] = [];
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  (cleaning ??= (async () => {
    for (const throttle of throttles) await throttle.stop().catch(() => {});
    await floor?.stop().catch(() => {});
    await world?.stop().catch(() => {});
  })());
process.once('SIGINT', () => {
  progress('interrupted: stopping what the bench started');
  void cleanup().then(() => process.exit(130));
});
process.once('SIGTERM', () => void cleanup().then(() => process.exit(143)));

/** Whether a daemon with this storage driver starts here (overlay2 needs a kernel and a filesystem that allow it). */
async function storageDriverWorks(driver: string, dir: string): Promise<boolean> {
  try {
    const d = await startDockerd(dir, { extraArgs: [`--storage-driver=${driver}`] });
    const ok = (await d.info()).Driver === driver;
    await d.stop();
    return ok;
  } catch {
    return false;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A fresh runner: a new dockerd on an empty data-root. The disk first writes back what the last variant left dirty
 * (its extracted layers), so no variant pays for the one before it.
 */
async function fresh(world: World, name: string): Promise<Runner> {
  await run('sync', [], { timeoutMs: 120_000 });
  const runner = await world.runner(name);
  liveRunners.add(runner);
  return runner;
}

/** Runners not discarded yet (a variant that failed half-way leaves its own). */
const liveRunners = new Set<Runner>();

async function discard(runner: Runner): Promise<void> {
  liveRunners.delete(runner);
  await runner.stop();
  await rm(dirname(runner.runnerTemp), { recursive: true, force: true });
}

function cacheSnapshot(world: World) {
  return new Map(world.cache.entries().map((e) => [`${e.key}\0${e.version}`, e]));
}

function cacheDelta(before: ReturnType<typeof cacheSnapshot>, after: ReturnType<typeof cacheSnapshot>) {
  let down = 0;
  let up = 0;
  let entries = 0;
  for (const [id, e] of after) {
    const was = before.get(id);
    down += (e.downloads - (was?.downloads ?? 0)) * e.sizeBytes;
    if (!was && e.finalized) {
      up += e.sizeBytes;
      entries++;
    }
  }
  return { down, up, entries };
}

function storedUnder(world: World, prefix: string): number {
  return world.cache
    .entries()
    .filter((e) => e.key.startsWith(prefix))
    .reduce((s, e) => s + e.sizeBytes, 0);
}

/** The calls of a job, counted by Twirp method, and the signed URLs' uploads (each PUT) and downloads. */
function callCounts(calls: CallRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const c of calls) counts[c.call] = (counts[c.call] ?? 0) + 1;
  return counts;
}

/**
 * How many entries each image of the newest index under `prefix` is spread over: the index read back from the cache
 * service by the action's own code, as the next job reads it.
 */
async function entriesPerImage(world: World, prefix: string): Promise<number[] | undefined> {
  const workDir = await mkdtemp(join(tmpdir(), 'bench-index-'));
  try {
    const scope = { workDir, prefix, arch: ARCH };
    const restored = await restoreIndex(
      cacheServiceOf(world.cache.env),
      scope,
      { maxBytes: 0, maxAgeDays: 0 },
      ['docker.io'],
      new Date(),
      AbortSignal.timeout(30_000),
    );
    const index = restored.index;
    if (!index) return undefined;
    const holders = holdersOf(index.entries);
    return index.images.map((image) => new Set(contentOf(image).flatMap((d) => holders.get(d) ?? [])).size);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function upstreamCounters(world: World, throttle: Throttle) {
  await new Promise((r) => setTimeout(r, 150)); // the access log line follows the response
  return { bytes: throttle.bytes().down, blobGets: (await world.upstream.blobRequests()).length };
}

async function pullAll(runner: Runner, refs: string[]): Promise<number> {
  const t = performance.now();
  for (const ref of refs) await runner.pull(ref);
  return performance.now() - t;
}

async function docker(runner: Runner, args: string[]): Promise<number> {
  const t = performance.now();
  const r = await runner.dockerd.docker(args, { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return performance.now() - t;
}

/** @actions/cache logs with core.info on stdout; the bench's own stdout is for the results. */
async function quietly<T>(log: string, fn: () => Promise<T>): Promise<T> {
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    appendFileSync(log, chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    return await fn();
  } finally {
    process.stdout.write = write;
  }
}

/** The job's other work before its first docker command (a stand-in for `npm ci`): one core busy for `seconds`. */
async function busyWork(seconds: number): Promise<number> {
  const t = performance.now();
  const r = await run(process.execPath, ['-e', `const end = Date.now() + ${seconds * 1000}; while (Date.now() < end);`], {
    timeoutMs: seconds * 1000 + 60_000,
  });
  if (r.code !== 0) throw new Error(`the busy work failed: ${r.stderr}`);
  return performance.now() - t;
}

/**
 * Runs `attempt` (told whether it is the second try), and once more from scratch when it failed because dockerd
 * 20.10 lost a layer extraction ("Error processing tar file(signal: killed)": its untar child gets its parent-death
 * signal when the Go thread that started it ends, golang/go#27505, fixed in moby 23.0 by moby/moby#44215), more often
 * on a busy machine. That is the daemon's fault, not the variant's.
 */
async function againIfExtractionKilled(what: string, attempt: (again: boolean) => Promise<void>): Promise<void> {
  for (let n = 1; ; n++) {
    try {
      await attempt(n > 1);
      return;
    } catch (error) {
      // A pull that failed that way falls back to Docker Hub and reports that instead: the daemon's log tells.
      const logs = await Promise.all([...liveRunners].map((r) => readFile(r.dockerd.logFile, 'utf8').catch(() => '')));
      for (const runner of [...liveRunners]) await discard(runner).catch(() => {});
      if (n < 2 && [(error as Error).message, ...logs].some((text) => /Error processing tar file\(signal: killed\)/.test(text))) {
        progress(
          `${what}: dockerd's layer extraction was killed (${(error as Error).message.split('\n')[0].slice(0, 160)}); running it again`,
        );
        continue;
      }
      throw error;
    }
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  progress(`workload ${SPEC.name}, ${REPS} repetition(s), upstream ${BANDWIDTH / MB} MB/s, ${LATENCY} ms RTT`);
  const driver = await storageDriver();
  const b = await setUp(driver);
  await primeToolCache(b);
  const seed = ['saveload-warm', 'saveload-partial', 'saveload-changed'].some((v) => want(v as Variant))
    ? await seedSaveLoad(b, refsOn(b.floor.host, b.workload.images), SAVELOAD_KEY)
    : {};
  const { repsDone, warmKey } = await measureVariants(b);
  const large = await measureLarge(b);
  const { work, workRepsDone } = await measureOtherWork(b, warmKey);
  const gunzipMs = gunzipAlone(b.workload);
  const registries = flags.only === undefined ? await benchRegistries(REPS, progress) : '';
  const machine = await describeMachine(driver);
  process.stdout.write(render({ workload: b.workload, large, driver, seed, gunzipMs, repsDone, work, workRepsDone, machine }) + registries);
  if (flags.json) {
    const largeJson = large && { workload: describeWorkload(large.workload), seed: large.seed, repsDone: large.repsDone };
    await writeFile(
      flags.json,
      JSON.stringify(
        {
          flags,
          machine,
          driver,
          seed,
          gunzipMs,
          repsDone,
          workload: describeWorkload(b.workload),
          large: largeJson,
          samples,
          work: Object.fromEntries(workSamples),
        },
        null,
        2,
      ),
    );
  }
}

/** --storage-driver, or vfs where overlay2 does not start. */
async function storageDriver(): Promise<string> {
  const driver = flags['storage-driver']!;
  if (driver === 'overlay2' && !(await storageDriverWorks('overlay2', await mkdtemp(join(tmpdir(), 'pull-cache-bench-probe-'))))) {
    progress('overlay2 does not start here; the daemons use vfs');
    return 'vfs';
  }
  return driver;
}

/** What every stage works with: the world, the upstream behind its two throttles, the floor, the default workload. */
interface Bench {
  w: World;
  /** The upstream at --bandwidth, and at SLOW_BANDWIDTH. */
  th: Throttle;
  slow: Throttle;
  floor: Upstream;
  workload: Workload;
  /** The cache service's HOST:PORT, to tell its calls from the rest in a trace. */
  apiHost: string;
  /** The bench process's own trace (save/load runs @actions/cache in it), and @actions/cache's log. */
  benchTrace: string;
  cacheLog: string;
  /** Where save/load writes and restores its tarball. */
  tarball: string;
  /** The environment that traces a step of the action into `file`. */
  traceEnv: (file: string) => Record<string, string>;
  /** The inputs that run the cold-2.8 variant's registry instead of the one under test. */
  registry28: Record<string, string>;
}

/** Builds the workload and starts the world: the upstream with its throttles, the floor, the cache service. */
async function setUp(driver: string): Promise<Bench> {
  const buildStart = performance.now();
  const workload = buildWorkload(SPEC);
  progress(
    `built ${workload.unique.layers} layers, ${(workload.unique.compressed / MB).toFixed(1)} MB compressed, ${(workload.unique.uncompressed / MB).toFixed(1)} MB uncompressed, in ${((performance.now() - buildStart) / 1000).toFixed(1)} s`,
  );

  const w = (world = await startWorld('pull-cache-bench', { dockerdArgs: [`--storage-driver=${driver}`] }));
  const f = (floor = await startUpstream(join(w.dir, 'floor')));
  const throttle = async (bytesPerSecond: number) => {
    const t = await startThrottle({ targetPort: w.upstream.port, bytesPerSecond, rttMs: LATENCY });
    throttles.push(t);
    return t;
  };
  const th = await throttle(BANDWIDTH);
  const slow = await throttle(SLOW_BANDWIDTH);
  await Promise.all([pushWorkload(w.upstream.url, workload), pushWorkload(f.url, workload)]);
  progress(
    `upstream ${w.upstream.url} behind the throttles at ${th.url} and ${slow.url} (${SLOW_BANDWIDTH / MB} MB/s); floor registry ${f.url}`,
  );

  // The bench process runs @actions/cache itself for save/load, against the same cache service.
  const saveloadDir = join(w.dir, 'saveload');
  await mkdir(join(saveloadDir, 'temp'), { recursive: true });
  Object.assign(process.env, w.cache.env, { RUNNER_TEMP: join(saveloadDir, 'temp'), GITHUB_WORKSPACE: saveloadDir });
  const benchTrace = join(w.dir, 'bench-trace.log');
  installTrace(benchTrace);

  const profile: Record<string, string> = flags['cpu-prof'] ? { BENCH_CPU_PROFILE_DIR: resolve(flags['cpu-prof']) } : {};
  if (flags['cpu-prof']) await mkdir(resolve(flags['cpu-prof']), { recursive: true });
  return {
    w,
    th,
    slow,
    floor: f,
    workload,
    apiHost: new URL(w.cache.env.ACTIONS_RESULTS_URL).host,
    benchTrace,
    cacheLog: join(w.dir, 'actions-cache.log'),
    tarball: join(saveloadDir, 'docker-images.tar'),
    traceEnv: (file) => ({ NODE_OPTIONS: `--import ${TRACE_MODULE}`, BENCH_TRACE_FILE: file, ...profile }),
    registry28: { 'registry-version': REGISTRY_2_8, 'registry-sha256': w.release.sha256Of(REGISTRY_2_8) },
  };
}

/** The references of these images on a registry at `host`. */
const refsOn = (host: string, images: BuiltImage[]) => images.map((i) => `${host}/${i.repository}:${i.tag}`);
/** How a job names the images (docker.io, through the mirror). */
const jobRefs = (workload: Workload) => workload.images.map((i) => i.ref);

/**
 * Puts the registry binaries in the tool cache, as on a runner where the action ran before: every measured main
 * step then finds its own there.
 */
async function primeToolCache(b: Bench): Promise<void> {
  for (const registry of [{}, ...(want('cold-2.8') ? [b.registry28] : [])]) {
    const runner = await fresh(b.w, 'prime');
    const { main, post } = await runner.job(runner.inputs({ upstream: b.th.url, save: 'false', 'cache-key': 'bench-prime', ...registry }));
    if (main.exitCode !== 0 || main.warnings.length || post.exitCode !== 0)
      throw new Error(`the priming job failed:\n${main.stdout}\n${main.stderr}\n${post.stdout}\n${post.stderr}`);
    await discard(runner);
  }
}

/**
 * The save/load cache its jobs restore: the images pulled from `refs`, `docker save`d into one tarball, saved under
 * `key` (that first save is measured too).
 */
async function seedSaveLoad(b: Bench, refs: string[], key: string): Promise<Record<string, number>> {
  const seed: Record<string, number> = {};
  const runner = await fresh(b.w, `${key}-seed`);
  await pullAll(runner, refs);
  seed.dockerSave = await docker(runner, ['save', '-o', b.tarball, ...refs]);
  seed.tarBytes = (await stat(b.tarball)).size;
  const before = cacheSnapshot(b.w);
  const t = performance.now();
  await quietly(b.cacheLog, () => cache.saveCache([b.tarball], key));
  seed.saveCache = performance.now() - t;
  seed.entryBytes = cacheDelta(before, cacheSnapshot(b.w)).up;
  await discard(runner);
  await rm(b.tarball, { force: true });
  progress(
    `save/load cache ${key}: docker save ${(seed.tarBytes / MB).toFixed(1)} MB tar in ${(seed.dockerSave / 1000).toFixed(1)} s, saved as ${(seed.entryBytes / MB).toFixed(1)} MB in ${(seed.saveCache / 1000).toFixed(1)} s`,
  );
  return seed;
}

// ---------------------------------------------------------------- the stages

/** The variants, repetition after repetition, until --reps or the time limit; returns the last repetition's cache key. */
async function measureVariants(b: Bench): Promise<{ repsDone: number; warmKey: string }> {
  /** The cache key of the last repetition's jobs: the warm cache the other-work scenario restores. */
  let warmKey = '';
  let repsDone = 0;
  for (let rep = 1; rep <= REPS; rep++) {
    if (Date.now() - began > TIME_LIMIT_MS) {
      progress(`time limit reached: stopping after ${repsDone} repetition(s)`);
      break;
    }
    await againIfExtractionKilled(`rep ${rep}`, async (again) => {
      const { got, key } = await repetition(b, `rep ${rep}/${REPS}`, again ? `r${rep}-again` : `r${rep}`);
      for (const [v, sample] of Object.entries(got)) samples[v as Variant].push(sample);
      warmKey = key;
    });
    repsDone++;
  }
  if (!repsDone && ONLY.some((v) => !LARGE_VARIANTS.includes(v))) throw new Error('no repetition finished within the time limit');
  return { repsDone, warmKey };
}

/** Logs a variant's sample as it comes. */
function logSample(what: string, v: Variant, s: Sample): void {
  progress(
    `${what} ${v.padEnd(16)} ready ${(s.ready / 1000).toFixed(2)} s${s.post !== null ? `, post ${(s.post / 1000).toFixed(2)} s` : ''}, upstream ${(s.upstream / MB).toFixed(1)} MB, cache ↓${(s.cacheDown / MB).toFixed(1)} ↑${(s.cacheUp / MB).toFixed(1)} MB`,
  );
}

/** One repetition of the default workload's variants (`tag` names its jobs and cache keys). */
async function repetition(b: Bench, what: string, tag: string): Promise<{ got: Partial<Record<Variant, Sample>>; key: string }> {
  const { w, workload } = b;
  const got: Partial<Record<Variant, Sample>> = {};
  const note = (v: Variant, s: Sample) => {
    got[v] = s;
    logSample(what, v, s);
  };
  const pulls = (runner: Runner) => pullAll(runner, jobRefs(workload));
  await setChanged(w.upstream.url, workload, false);

  // direct and floor: plain pulls on a fresh daemon; direct-20 through the slower link.
  if (want('direct')) note('direct', await plainPulls(b, `direct-${tag}`, refsOn(b.th.host, workload.images), b.th));
  if (want('floor')) note('floor', await plainPulls(b, `floor-${tag}`, refsOn(b.floor.host, workload.images), b.th));
  if (want('direct-20')) note('direct-20', await plainPulls(b, `direct-20-${tag}`, refsOn(b.slow.host, workload.images), b.slow));

  // save/load, warm: the tarball restored, then loaded; partial: the same, for a job that needs one of its images.
  // Their post saves nothing (the key was an exact hit).
  if (want('saveload-warm')) note('saveload-warm', await saveloadJob(b, `saveload-warm-${tag}`, SAVELOAD_KEY));
  if (want('saveload-partial'))
    note(
      'saveload-partial',
      await saveloadJob(b, `saveload-partial-${tag}`, SAVELOAD_KEY, refsOn(b.floor.host, [medianImage(workload)])[0]),
    );

  // This action: a cold job on an empty cache, then warm ones restoring what it saved.
  const key = `bench-${tag}-${process.pid}`;
  if (want('cold') || RESTORE_COLD.some(want)) {
    const cold = await actionJob(b, `cold-${tag}`, key, {}, pulls);
    if (want('cold')) note('cold', cold);
    else progress(`${what} cold job filled the cache (not measured)`);
  }
  // The same cold job on 2.8 (a key of its own: its cache starts empty too).
  if (want('cold-2.8')) note('cold-2.8', await actionJob(b, `cold-2.8-${tag}`, `${key}-2.8`, b.registry28, pulls));
  if (want('warm')) note('warm', await actionJob(b, `warm-${tag}`, key, {}, pulls));
  // Releases before prefetch do not declare the input: set it only to turn it off.
  if (want('warm-noprefetch')) note('warm-noprefetch', await actionJob(b, `warm-noprefetch-${tag}`, key, { prefetch: 'false' }, pulls));
  // Partial use: the job pulls one of the five images the cache holds. It saves nothing, so the jobs after it still
  // restore a cache whose last run pulled all five (what prefetch pulls).
  for (const variant of ['warm-partial', 'warm-partial-noprefetch'] as const) {
    const inputs: Record<string, string> = variant === 'warm-partial' ? { save: 'false' } : { save: 'false', prefetch: 'false' };
    if (want(variant))
      note(variant, await actionJob(b, `${variant}-${tag}`, key, inputs, (runner) => pullAll(runner, [medianImage(workload).ref])));
  }
  if (want('warm-20')) note('warm-20', await actionJob(b, `warm-20-${tag}`, key, {}, pulls, b.slow));
  // The other build's jobs restore the same cache, right after this build's.
  if (want('warm-before')) note('warm-before', await actionJob(b, `warm-before-${tag}`, key, {}, pulls, b.th, BEFORE));
  const partialPull = (runner: Runner) => pullAll(runner, [medianImage(workload).ref]);
  if (want('warm-partial-before'))
    note('warm-partial-before', await actionJob(b, `warm-partial-before-${tag}`, key, { save: 'false' }, partialPull, b.th, BEFORE));
  if (want('warm-20-before')) note('warm-20-before', await actionJob(b, `warm-20-before-${tag}`, key, {}, pulls, b.slow, BEFORE));

  // Since that run, one image gained a new top layer upstream.
  await setChanged(w.upstream.url, workload, true);
  if (want('changed')) note('changed', await actionJob(b, `changed-${tag}`, key, {}, pulls));
  if (want('saveload-changed')) note('saveload-changed', await saveloadChangedJob(b, tag));
  return { got, key };
}

/**
 * The 1 GB cache: its own workload (built and pushed only for these variants), its own save/load tarball and, in
 * each repetition, its own cold job to fill the action's cache; then the warm job and save/load.
 */
async function measureLarge(b: Bench): Promise<{ workload: Workload; seed: Record<string, number>; repsDone: number } | undefined> {
  if (!LARGE_VARIANTS.some(want)) return undefined;
  const buildStart = performance.now();
  const workload = buildWorkload(LARGE);
  await pushWorkload(b.w.upstream.url, workload);
  progress(
    `1 GB workload: ${workload.unique.layers} layers, ${(workload.unique.compressed / MB).toFixed(1)} MB compressed, built and pushed in ${((performance.now() - buildStart) / 1000).toFixed(1)} s`,
  );
  // Its tarball's images come straight from the upstream on loopback: only their save is measured.
  const seed = want('saveload-1g') ? await seedSaveLoad(b, refsOn(b.w.upstream.host, workload.images), SAVELOAD_1G_KEY) : {};
  const pulls = (runner: Runner) => pullAll(runner, jobRefs(workload));
  let repsDone = 0;
  for (let rep = 1; rep <= LARGE_REPS; rep++) {
    // The first repetition always runs; more only within a quarter more than the time limit.
    if (rep > 1 && Date.now() - began > TIME_LIMIT_MS * 1.25) {
      progress(`time limit reached: the 1 GB variants stop after ${repsDone} repetition(s)`);
      break;
    }
    await againIfExtractionKilled(`1 GB, rep ${rep}`, async (again) => {
      const what = `1 GB rep ${rep}/${LARGE_REPS}`;
      const tag = `1g-r${rep}${again ? '-again' : ''}`;
      const key = `bench-${tag}-${process.pid}`;
      const got: Partial<Record<Variant, Sample>> = {};
      if (want('cold-1g') || want('warm-1g') || want('warm-1g-before')) {
        got['cold-1g'] = await actionJob(b, `cold-${tag}`, key, {}, pulls);
        logSample(what, 'cold-1g', got['cold-1g']);
        if (!want('cold-1g')) delete got['cold-1g'];
      }
      if (want('warm-1g')) logSample(what, 'warm-1g', (got['warm-1g'] = await actionJob(b, `warm-${tag}`, key, {}, pulls)));
      if (want('warm-1g-before'))
        logSample(what, 'warm-1g-before', (got['warm-1g-before'] = await actionJob(b, `warm-before-${tag}`, key, {}, pulls, b.th, BEFORE)));
      if (want('saveload-1g'))
        logSample(what, 'saveload-1g', (got['saveload-1g'] = await saveloadJob(b, `saveload-${tag}`, SAVELOAD_1G_KEY)));
      for (const [v, sample] of Object.entries(got)) samples[v as Variant].push(sample);
    });
    repsDone++;
  }
  return { workload, seed, repsDone };
}

/**
 * A job whose first docker command comes after N seconds of other work, on a warm cache (the last repetition's
 * changed job saved it: it holds every image as the upstream has it now): how long that command blocks. The
 * action's jobs pull the workload after the work (prefetch, on by default, has been pulling since the main step);
 * save/load's restore and docker load block in their own step before the work, and the images are there after it.
 * Runs only without --only. Returns the seconds of work measured (auto resolved).
 */
async function measureOtherWork(b: Bench, warmKey: string): Promise<{ work: number[]; workRepsDone: number }> {
  if (flags.only !== undefined) return { work: [], workRepsDone: 0 };
  const auto = Math.ceil(restorePlusFloor() / 1000);
  if (WORK.includes('auto') && !Number.isFinite(auto))
    throw new Error('--work auto needs the warm, save/load warm and floor variants of this run');
  const work = [...new Set(WORK.map((n) => (n === 'auto' ? auto : n)))];
  if (WORK.includes('auto')) progress(`other work: auto is ${auto} s (restore + floor: ${(restorePlusFloor() / 1000).toFixed(2)} s)`);
  for (const n of work) workSamples.set(n, { prefetch: [], noprefetch: [], saveload: [] });
  let workRepsDone = 0;
  for (let rep = 1; rep <= WORK_REPS; rep++) {
    // Its first repetition always runs; more only within a quarter more than the time limit.
    if (rep > 1 && Date.now() - began > TIME_LIMIT_MS * 1.25) {
      progress(`time limit reached: the other-work scenario stops after ${workRepsDone} repetition(s)`);
      break;
    }
    for (const n of work) {
      await againIfExtractionKilled(`other work ${n} s, rep ${rep}`, async (again) => {
        const got = await afterOtherWork(b, warmKey, n, `work${n}-r${rep}${again ? '-again' : ''}`);
        for (const v of WORK_VARIANTS) workSamples.get(n)![v].push(got[v]);
        progress(
          `other work ${n} s, rep ${rep}/${WORK_REPS}: docker blocks ${WORK_VARIANTS.map((v) => `${v} ${(got[v].blocking / 1000).toFixed(2)} s`).join(', ')}`,
        );
      });
    }
    workRepsDone++;
  }
  return { work, workRepsDone };
}

/** One repetition of the other-work scenario for n seconds of work: each variant's job. */
async function afterOtherWork(b: Bench, warmKey: string, n: number, tag: string): Promise<Record<WorkVariant, WorkSample>> {
  const got: Partial<Record<WorkVariant, WorkSample>> = {};
  for (const variant of ['prefetch', 'noprefetch'] as const) {
    let work = 0;
    const job = await actionJob(b, `${variant}-${tag}`, warmKey, variant === 'noprefetch' ? { prefetch: 'false' } : {}, async (runner) => {
      work = await busyWork(n);
      return pullAll(runner, jobRefs(b.workload));
    });
    got[variant] = { blocking: job.pull, ready: job.restore + work + job.pull, work };
  }
  const runner = await fresh(b.w, `saveload-${tag}`);
  const { restore, load } = await restoreAndLoad(b, runner, SAVELOAD_KEY);
  const work = await busyWork(n);
  await rm(b.tarball, { force: true });
  await discard(runner);
  got.saveload = { blocking: restore + load, ready: restore + load + work, work };
  return got as Record<WorkVariant, WorkSample>;
}

/** What decompressing the layers costs alone (one core, zlib), to tell it from extraction in the floor's pulls, ms. */
function gunzipAlone(workload: Workload): number {
  const t = performance.now();
  for (const l of new Set(workload.images.flatMap((i) => i.layerData))) gunzipSync(l.data);
  return performance.now() - t;
}

// ---------------------------------------------------------------- the jobs

/** direct, floor: plain pulls of `refs` on a fresh daemon; `th` is the link whose bytes count as upstream. */
async function plainPulls(b: Bench, name: string, refs: string[], th: Throttle): Promise<Sample> {
  const runner = await fresh(b.w, name);
  const up = await upstreamCounters(b.w, th);
  const ms = await pullAll(runner, refs);
  const up2 = await upstreamCounters(b.w, th);
  await discard(runner);
  return {
    ready: ms,
    blocks: NaN,
    restore: NaN,
    pull: ms,
    post: null,
    cacheDown: 0,
    cacheUp: 0,
    entriesUp: 0,
    stored: null,
    upstream: up2.bytes - up.bytes,
    upstreamBlobGets: up2.blobGets - up.blobGets,
  };
}

/** save/load's restore: the tarball saved under `key` from the Actions cache (restoreCache), then docker load. */
async function restoreAndLoad(b: Bench, runner: Runner, key: string) {
  await rm(b.tarball, { force: true });
  const t0 = performance.now();
  const w0 = Date.now();
  const hit = await quietly(b.cacheLog, () => cache.restoreCache([b.tarball], key));
  const restore = performance.now() - t0;
  const w1 = Date.now();
  if (hit !== key) throw new Error(`save/load: the tarball was not restored (${hit})`);
  const load = await docker(runner, ['load', '-i', b.tarball]);
  return { restore, load, w0, w1 };
}

/**
 * save/load on a warm cache: the tarball under `key` restored and loaded, then the job's images are ready (`needed`:
 * the one it checks is there; by default all of them). Its post saves nothing (the key was an exact hit).
 */
async function saveloadJob(b: Bench, name: string, key: string, needed?: string): Promise<Sample> {
  const runner = await fresh(b.w, name);
  const before = cacheSnapshot(b.w);
  const { restore, load, w0, w1 } = await restoreAndLoad(b, runner, key);
  if (needed) await docker(runner, ['image', 'inspect', needed]);
  const a = activity(await readTrace(b.benchTrace), b.apiHost, w0, w1);
  const d = cacheDelta(before, cacheSnapshot(b.w));
  await rm(b.tarball, { force: true });
  await discard(runner);
  return {
    ready: restore + load,
    blocks: restore + load,
    restore,
    pull: load,
    post: null,
    cacheDown: d.down,
    cacheUp: d.up,
    entriesUp: d.entries,
    stored: storedUnder(b.w, key),
    upstream: 0,
    upstreamBlobGets: 0,
    parts: { download: union(a.transfer), untar: union(a.tar), load },
  };
}

/**
 * save/load, changed: the last run's tarball restored and loaded, the changed image pulled, and the post step
 * saves a new tarball of everything under a new key.
 */
async function saveloadChangedJob(b: Bench, tag: string): Promise<Sample> {
  const { w, workload, tarball } = b;
  const changedRef = refsOn(b.th.host, [workload.changed])[0];
  const runner = await fresh(w, `saveload-changed-${tag}`);
  const before = cacheSnapshot(w);
  const up = await upstreamCounters(w, b.th);
  const { restore, load } = await restoreAndLoad(b, runner, SAVELOAD_KEY);
  const pull = await pullAll(runner, [changedRef]);
  const up2 = await upstreamCounters(w, b.th);
  await rm(tarball, { force: true });
  const refs = [
    ...refsOn(
      b.floor.host,
      workload.images.filter((i) => i.ref !== workload.changed.ref),
    ),
    changedRef,
  ];
  const dockerSave = await docker(runner, ['save', '-o', tarball, ...refs]);
  const s0 = performance.now();
  const w0 = Date.now();
  const key = `docker-cache-${tag}-${process.pid}`;
  const id = await quietly(b.cacheLog, () => cache.saveCache([tarball], key));
  const saveCache = performance.now() - s0;
  if (!(id > 0)) throw new Error('save/load: the new tarball was not saved');
  const a = activity(await readTrace(b.benchTrace), b.apiHost, w0, Date.now());
  const d = cacheDelta(before, cacheSnapshot(w));
  const tarBytes = (await stat(tarball)).size;
  await rm(tarball, { force: true });
  await discard(runner);
  return {
    ready: restore + load + pull,
    blocks: restore + load,
    restore,
    pull: load + pull,
    post: dockerSave + saveCache,
    cacheDown: d.down,
    cacheUp: d.up,
    entriesUp: d.entries,
    stored: storedUnder(w, SAVELOAD_KEY) + storedUnder(w, key),
    upstream: up2.bytes - up.bytes,
    upstreamBlobGets: up2.blobGets - up.blobGets,
    parts: { load, pull, dockerSave, saveCache, tarZstd: union(a.tar), upload: union(a.transfer), tarBytes },
  };
}

/**
 * A job of this action on a fresh runner, as the Actions runner runs it: main step, the job's own steps (`steps`,
 * which returns how long its docker commands took), post step. `extra` adds inputs; `th` is the upstream's link.
 */
async function actionJob(
  b: Bench,
  name: string,
  key: string,
  extra: Record<string, string>,
  steps: (runner: Runner) => Promise<number>,
  th = b.th,
  action?: string,
): Promise<Sample> {
  const { w } = b;
  const runner = await fresh(w, name);
  const trace = join(w.dir, `trace-${name}.log`);
  const before = cacheSnapshot(w);
  const callsBefore = w.cache.calls.length;
  const up = await upstreamCounters(w, th);
  let pull = 0;
  const { main, post } = await runner.job(
    runner.inputs({ upstream: th.url, 'cache-key': key, ...extra }),
    async (m: StepResult) => {
      if (m.exitCode !== 0 || m.warnings.length || !m.outputs.mirror)
        throw new Error(`main step failed (exit ${m.exitCode}): ${m.warnings.join('; ')}\n${m.stdout}\n${m.stderr}`);
      pull = await steps(runner);
    },
    b.traceEnv(trace),
    { action },
  );
  if (post.exitCode !== 0 || post.warnings.length)
    throw new Error(`post step failed (exit ${post.exitCode}): ${post.warnings.join('; ')}\n${post.stdout}\n${post.stderr}`);
  const calls = callCounts(w.cache.calls.slice(callsBefore));
  const up2 = await upstreamCounters(w, th);
  const d = cacheDelta(before, cacheSnapshot(w));
  const { main: mainEvents, post: postEvents } = stepProcesses(await readTrace(trace));
  await discard(runner);
  const spread = d.entries ? await entriesPerImage(w, key) : undefined;
  return {
    ready: main.ms + pull,
    blocks: main.ms,
    restore: main.ms,
    pull,
    post: post.ms,
    cacheDown: d.down,
    cacheUp: d.up,
    entriesUp: d.entries,
    calls,
    entriesPerImage: spread,
    stored: storedUnder(w, `${key}-`),
    upstream: up2.bytes - up.bytes,
    upstreamBlobGets: up2.blobGets - up.blobGets,
    main: mainEvents ? mainPhases(mainEvents, main.ms, b.apiHost) : undefined,
    postPhases: postEvents ? postPhases(postEvents, post.ms, b.apiHost) : undefined,
  };
}
// ---------------------------------------------------------------- report

function describeWorkload(workload: Workload) {
  return {
    images: workload.images.map((i) => ({ ref: i.ref, layers: i.layers.length, compressed: i.compressed, uncompressed: i.uncompressed })),
    unique: workload.unique,
    change: {
      ref: workload.changed.ref,
      layer: workload.spec.change.layer.id,
      compressed: workload.layers.get(workload.spec.change.layer.id)!.size,
    },
  };
}

const s = (ms: number | null | undefined) => (ms === null || ms === undefined || !Number.isFinite(ms) ? '–' : (ms / 1000).toFixed(2));
const mb = (bytes: number | null | undefined) =>
  bytes === null || bytes === undefined || !Number.isFinite(bytes) ? '–' : (bytes / MB).toFixed(1);
const x = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '–');

function table(head: string[], rows: (string | number)[][]): string {
  return (
    [
      `| ${head.join(' | ')} |`,
      `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ].join('\n') + '\n'
  );
}

/** The machine and the software measured, for the report. */
async function describeMachine(driver: string): Promise<Record<string, string>> {
  const first = async (command: string, args: string[]) => {
    const r = await run(command, args, { timeoutMs: 10_000 });
    return r.code === 0 ? r.stdout.trim().split('\n')[0] : `(${command} failed)`;
  };
  const hash = createHash('sha256')
    .update(await readFile(join(ROOT, 'dist/index.js')))
    .digest('hex')
    .slice(0, 12);
  const dirty = (await run('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'dist'], { timeoutMs: 10_000 })).stdout.trim();
  return {
    CPUs: `${availableParallelism()} × ${cpus()[0]?.model ?? '?'}`,
    Memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    Kernel: `${osType()} ${release()}`,
    dockerd: `${await first(DOCKERD_BINARY, ['--version'])}, storage driver ${driver}, unpigz ${existsSync('/usr/bin/unpigz') ? 'present' : 'absent'}`,
    'Registry (upstream and floor)': await first(REGISTRY_BINARY, ['--version']),
    'Registry (the action’s)': `${REGISTRY_UNDER_TEST.version}: ${await first(REGISTRY_UNDER_TEST.binary(), ['--version'])}; cold-2.8: ${REGISTRY_2_8}: ${await first(REGISTRY_RELEASES[REGISTRY_2_8].binary(), ['--version'])} (served as the release tarballs by the tests' release stand-in)`,
    zstd: (await first('zstd', ['--version'])).match(/v\d+\.\d+\.\d+/)?.[0] ?? '?',
    Node: process.version,
    Action: `commit ${await first('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'])}${dirty ? ' with uncommitted changes to src/ or dist/' : ''}, dist/index.js sha256 ${hash}…`,
    'Load average (1 min)': `${loadAtStart.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at the end; during the run (every 5 s) median ${median(loadSamples).toFixed(2)}, max ${Math.max(...loadSamples, 0).toFixed(2)}`,
    Command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  };
}

/** What the report is made of, besides the samples. */
interface Report {
  workload: Workload;
  /** The 1 GB variants' workload and save/load seed, when they ran. */
  large?: { workload: Workload; seed: Record<string, number>; repsDone: number };
  driver: string;
  seed: Record<string, number>;
  gunzipMs: number;
  repsDone: number;
  /** Seconds of other work measured (auto resolved). */
  work: number[];
  workRepsDone: number;
  machine: Record<string, string>;
}

function render(r: Report): string {
  return [
    `\n## Machine\n\n${table(['What', 'Value'], Object.entries(r.machine))}`,
    renderWorkload(r),
    renderResults(r),
    renderRatios(r),
    renderOverhead(),
    renderCalls(),
    renderWhereTimeGoes(r),
    renderOtherWork(r),
    renderTargets(r),
  ].join('');
}

function renderWorkload(r: Report): string {
  const one = (workload: Workload, seed: Record<string, number>) => {
    let out = `\n## Workload (${workload.spec.name})\n\n`;
    out += table(
      ['Image', 'Layers', 'Compressed (MB)', 'Uncompressed (MB)'],
      workload.images.map((i) => [i.ref, i.layers.length, mb(i.compressed), mb(i.uncompressed)]),
    );
    out += `\nUnique: ${workload.unique.layers} layers, ${mb(workload.unique.compressed)} MB as pulled (gzip), ${mb(workload.unique.uncompressed)} MB uncompressed. `;
    out += `\`docker save\` of the five images: ${mb(seed.tarBytes)} MB tar, ${mb(seed.entryBytes)} MB in the cache (zstd by @actions/cache). `;
    return out;
  };
  const change = r.workload.layers.get(r.workload.spec.change.layer.id)!;
  let out = one(r.workload, r.seed);
  out += `Changed job: ${r.workload.changed.ref} gains a new top layer of ${mb(change.size)} MB compressed (${mb(change.uncompressed)} MB uncompressed). `;
  out += `Partial use: the job pulls ${medianImage(r.workload).ref} (the median image by size) of the five.\n`;
  out += `Upstream through the throttle: ${BANDWIDTH / MB} MB/s each way (the 20 MB/s variants: ${SLOW_BANDWIDTH / MB} MB/s), ${LATENCY} ms round trip. Storage driver: ${r.driver}. MB = 10^6 bytes. Medians of ${r.repsDone} repetition(s).\n`;
  if (r.large) {
    out += one(r.large.workload, r.large.seed);
    out += `Its save/load tarball was saved once, before its repetitions (docker save ${s(r.large.seed.dockerSave)} s + saveCache ${s(r.large.seed.saveCache)} s). `;
    out += `The 1 GB variants: medians of ${r.large.repsDone} repetition(s), run after the others.\n`;
  }
  return out;
}

function renderResults(r: Report): string {
  let out = `\n## Results\n\n`;
  out += table(
    [
      'Variant',
      'Images ready (s)',
      'min–max (s)',
      'Main step blocks (s)',
      'restore (s)',
      'pull/load (s)',
      'Post step (s)',
      'Cache ↓ (MB)',
      'Cache ↑ (MB)',
      'Cache stored (MB)',
      'Upstream (MB)',
      'Upstream blob GETs',
    ],
    VARIANTS.filter((v) => samples[v].length).map((v) => [
      LABELS[v],
      s(med(v, (x) => x.ready)),
      `${s(Math.min(...samples[v].map((x) => x.ready)))}–${s(Math.max(...samples[v].map((x) => x.ready)))}`,
      s(med(v, (x) => x.blocks)),
      s(med(v, (x) => x.restore)),
      s(med(v, (x) => x.pull)),
      s(postOf(v)),
      mb(med(v, (x) => x.cacheDown)),
      mb(med(v, (x) => x.cacheUp)),
      mb(med(v, (x) => x.stored)),
      mb(med(v, (x) => x.upstream)),
      med(v, (x) => x.upstreamBlobGets),
    ]),
  );
  out += `\nMain step blocks = how long the step before the job's own waits: the action's main step from start to exit, or save/load's restoreCache + docker load. `;
  out += `restore = the action's main step (the registry binary already in the tool cache) or @actions/cache restoreCache of the tarball; `;
  out += `the save/load post is docker save + saveCache (after a warm exact-key hit those actions save nothing). `;
  out += `The first save/load save (docker save ${s(r.seed.dockerSave)} s + saveCache ${s(r.seed.saveCache)} s) happens once, before the repetitions.\n`;
  return out;
}

function renderRatios(r: Report): string {
  const ready = (v: Variant) => med(v, (x) => x.ready);
  const warm = ready('warm');
  const changedUp = med('changed', (x) => x.cacheUp);
  const slUp = med('saveload-changed', (x) => x.cacheUp);
  return (
    `\n## Ratios\n\n` +
    table(
      ['Ratio', 'Value'],
      [
        ['warm / floor (images ready)', x(warm, ready('floor'))],
        ['warm / direct (images ready)', x(warm, ready('direct'))],
        ['warm / save-load warm (images ready)', x(warm, ready('saveload-warm'))],
        ['warm with prefetch: false / floor (images ready)', x(ready('warm-noprefetch'), ready('floor'))],
        ['warm with prefetch: false / save-load warm (images ready)', x(ready('warm-noprefetch'), ready('saveload-warm'))],
        ['changed / save-load changed (images ready)', x(ready('changed'), ready('saveload-changed'))],
        ['changed job upload bytes, ours / save-load', `${x(changedUp, slUp)} (${mb(changedUp)} MB vs ${mb(slUp)} MB)`],
        [
          'changed job post step, ours / save-load',
          `${x(postOf('changed')!, postOf('saveload-changed')!)} (${s(postOf('changed'))} s vs ${s(postOf('saveload-changed'))} s)`,
        ],
        [
          'cache stored, ours after cold / save-load tarball',
          `${x(
            med('cold', (x) => x.stored),
            r.seed.entryBytes,
          )} (${mb(med('cold', (x) => x.stored))} MB vs ${mb(r.seed.entryBytes)} MB)`,
        ],
        ...(['cold', 'cold-2.8'] as const).flatMap((v) => {
          const registry = v === 'cold' ? REGISTRY_UNDER_TEST.version : REGISTRY_2_8;
          return [
            [
              `cold upstream bytes / direct upstream bytes, registry ${registry}`,
              x(
                med(v, (x) => x.upstream),
                med('direct', (x) => x.upstream),
              ),
            ],
            [
              `cold / direct (images ready), registry ${registry}`,
              x(
                med(v, (x) => x.ready),
                ready('direct'),
              ),
            ],
          ];
        }),
        ['partial use: warm, 1 of 5 images / save-load (images ready)', x(ready('warm-partial'), ready('saveload-partial'))],
        ['partial use, prefetch: false / save-load (images ready)', x(ready('warm-partial-noprefetch'), ready('saveload-partial'))],
        ['warm / the --before build (images ready)', x(ready('warm'), ready('warm-before'))],
        [
          'warm / the --before build (main step blocks)',
          x(
            med('warm', (x) => x.blocks),
            med('warm-before', (x) => x.blocks),
          ),
        ],
        ['partial use: warm / the --before build (images ready)', x(ready('warm-partial'), ready('warm-partial-before'))],
        [`${SLOW_BANDWIDTH / MB} MB/s: warm / the --before build (images ready)`, x(ready('warm-20'), ready('warm-20-before'))],
        ['1 GB: warm / the --before build (images ready)', x(ready('warm-1g'), ready('warm-1g-before'))],
        [
          '1 GB: warm / the --before build (main step blocks)',
          x(
            med('warm-1g', (x) => x.blocks),
            med('warm-1g-before', (x) => x.blocks),
          ),
        ],
        [`warm / direct, upstream at ${SLOW_BANDWIDTH / MB} MB/s (images ready)`, x(ready('warm-20'), ready('direct-20'))],
        ['warm / save-load warm, 1 GB (images ready)', x(ready('warm-1g'), ready('saveload-1g'))],
        [
          'warm / save-load warm, 1 GB (main step blocks)',
          x(
            med('warm-1g', (x) => x.blocks),
            med('saveload-1g', (x) => x.blocks),
          ),
        ],
      ],
    )
  );
}

/** Calls to the cache service per job, what costs the repository's rate limits (200 uploads a minute), and how entries split images. */
function renderCalls(): string {
  const jobs: [Variant, string][] = [
    ['cold', 'cold job (empty cache, saves everything)'],
    ['warm', 'warm job (restores everything, saves nothing)'],
    ['changed', 'changed job (one new top layer)'],
    ['cold-1g', 'cold job, 1 GB workload'],
    ['warm-1g', 'warm job, 1 GB workload'],
  ];
  const rows = jobs
    .filter(([v]) => samples[v].length)
    .map(([v, label]) => {
      const calls = (name: string) => med(v, (x) => x.calls?.[name] ?? 0);
      const spread = samples[v].find((x) => x.entriesPerImage)?.entriesPerImage;
      return [
        label,
        calls('GetCacheEntryDownloadURL'),
        calls('CreateCacheEntry'),
        calls('FinalizeCacheEntryUpload'),
        calls('upload'),
        calls('download'),
        mb(med(v, (x) => x.cacheUp)),
        spread
          ? `${Math.min(...spread)}–${Math.max(...spread)} (mean ${(spread.reduce((a, b) => a + b, 0) / spread.length).toFixed(1)})`
          : '',
      ];
    });
  if (!rows.length) return '';
  return (
    `\n## Calls to the cache service, per job\n\n` +
    table(
      [
        'Job',
        'Look-ups',
        'Creates',
        'Finalizes',
        'Signed-URL uploads',
        'Signed-URL downloads',
        'Cache ↑ (MB)',
        'Entries an image (saved index)',
      ],
      rows,
    )
  );
}

function renderOverhead(): string {
  const changedUp = med('changed', (x) => x.cacheUp);
  return (
    `\n## The action's own overhead\n\n` +
    table(
      ['Step', 'Time (s)', 'Cache ↑ (MB)', 'Entries saved'],
      [
        ['main step, empty cache (cold job)', s(med('cold', (x) => x.restore)), '', ''],
        ['main step, cache restored (warm job)', s(med('warm', (x) => x.restore)), '', ''],
        ['post step, nothing new (warm job)', s(postOf('warm')), mb(med('warm', (x) => x.cacheUp)), med('warm', (x) => x.entriesUp)],
        ['post step, saving a new cache (cold job)', s(postOf('cold')), mb(med('cold', (x) => x.cacheUp)), med('cold', (x) => x.entriesUp)],
        ['post step, saving one new layer (changed job)', s(postOf('changed')), mb(changedUp), med('changed', (x) => x.entriesUp)],
      ],
    )
  );
}

function renderWhereTimeGoes(r: Report): string {
  const steps = ['cold', 'warm', 'changed'] as const;
  /** A row of a phase table: one phase's medians for each step, from the phases `of` a sample. */
  const phaseRow =
    <P>(of: (x: Sample) => P | undefined) =>
    (label: string, f: (p: P) => number, format: (n: number) => string | number = s) => [
      label,
      ...steps.map((v) => format(med(v, (x) => (of(x) ? f(of(x)!) : NaN)))),
    ];
  const mainRow = phaseRow((x) => x.main);
  const postRow = phaseRow((x) => x.postPhases);
  const count = (n: number) => n;
  const part = (v: Variant, k: string) => med(v, (x) => x.parts?.[k] ?? NaN);
  let out = `\n## Where the time goes\n\n`;
  out += `Main step (medians; the phases come from a timeline of the step's process: its children, HTTP requests and log lines):\n\n`;
  out += table(
    ['Phase', 'cold (s)', 'warm (s)', 'changed (s)'],
    [
      mainRow('node start, bundle load, process exit', (p) => p.boot),
      mainRow('restore: index, entries, verify, links, scan, baseline (upstream probe alongside)', (p) => p.restore),
      mainRow('  of which tar + unzstd running', (p) => p.restoreTar),
      mainRow('  of which downloads from the blob store', (p) => p.restoreTransfer),
      mainRow('  of which cache service API calls', (p) => p.restoreApi),
      mainRow('  of which the upstream probe (alongside)', (p) => p.restoreNet),
      mainRow('  of which none of those (re-hashing every blob, links, storage scan, baseline)', (p) => p.restoreOther),
      mainRow('  entries restored (tar runs)', (p) => p.entriesRestored, count),
      mainRow('  serial, after the last entry landed: verify (re-hash), links, scan, baseline', (p) => p.afterLastEntry),
      mainRow('registry start (spawn to answering)', (p) => p.registryStart),
      mainRow('daemon reload (merge, SIGHUP, docker info until live)', (p) => p.daemonReload),
      mainRow('  docker info calls', (p) => p.dockerInfoCalls, count),
    ],
  );
  out += `\nPost step:\n\n`;
  out += table(
    ['Phase', 'cold (s)', 'warm (s)', 'changed (s)'],
    [
      postRow('node start, bundle load, registry stop, process exit', (p) => p.boot),
      postRow('daemon.json back + reload, scan, usage, upstream calls', (p) => p.stopAndRestore),
      postRow('save (first to last tar or cache call)', (p) => p.save),
      postRow('  of which tar + zstd running', (p) => p.saveTar),
      postRow('  of which uploads to the blob store', (p) => p.saveTransfer),
      postRow('  of which cache service API calls', (p) => p.saveApi),
      postRow('  entries saved (tar runs)', (p) => p.entriesSaved, count),
      postRow('calls to the upstream and other HTTP (whole step)', (p) => p.net),
      postRow('  number of such calls', (p) => p.netCalls, count),
    ],
  );
  out += `\nPulls and loads (the daemon's side):\n\n`;
  out += table(
    ['What', 'Time (s)'],
    [
      ['floor: pulls from a local registry (loopback download, gunzip, extraction)', s(med('floor', (x) => x.pull))],
      ['  gunzip of every unique layer alone (zlib, one core, in the bench process)', s(r.gunzipMs)],
      ['warm job: pulls through the mirror (restored cache, tags checked upstream), prefetch on', s(med('warm', (x) => x.pull))],
      ['warm job: the same with prefetch: false', s(med('warm-noprefetch', (x) => x.pull))],
      ['cold job: pulls through the mirror filling the cache', s(med('cold', (x) => x.pull))],
      ['direct: pulls from the throttled upstream', s(med('direct', (x) => x.pull))],
      ['save/load warm: restoreCache download', s(part('saveload-warm', 'download'))],
      ['save/load warm: restoreCache tar + unzstd', s(part('saveload-warm', 'untar'))],
      ['save/load warm: docker load (extraction, no decompression)', s(part('saveload-warm', 'load'))],
      ['save/load changed: pull of the changed image after docker load', s(part('saveload-changed', 'pull'))],
      ['save/load post: docker save', s(part('saveload-changed', 'dockerSave'))],
      ['save/load post: saveCache (tar + zstd, upload)', s(part('saveload-changed', 'saveCache'))],
      ['  of which tar + zstd running', s(part('saveload-changed', 'tarZstd'))],
      ['  of which upload', s(part('saveload-changed', 'upload'))],
    ],
  );
  return out;
}

function renderOtherWork(r: Report): string {
  const floorReady = med('floor', (x) => x.ready);
  const wm = (n: number, v: WorkVariant, f: (x: WorkSample) => number) => median(workSamples.get(n)![v].map(f));
  let out = `\n## Docker after other work (warm cache)\n\n`;
  out += `A warm job whose first docker command (\`docker pull\` of the five images) comes after N s of other work (a child process `;
  out += `spinning one core, standing in for \`npm ci\`). Blocks = from that command to all images ready. The action's main step runs `;
  out += `before the work; save/load's restore + \`docker load\` block in their own step before the work, so its blocking time is `;
  out += `restore + load. Floor: the plain local-registry pull above, no overlap. Medians of ${r.workRepsDone} repetition(s).\n\n`;
  out += table(
    [
      'Other work (s)',
      'Floor (s)',
      'Blocks, prefetch on (s)',
      'Blocks, prefetch: false (s)',
      'Blocks, save/load: restore + load (s)',
      'prefetch / floor',
      'prefetch / prefetch: false',
      'Job to images ready: prefetch on / off / save/load (s)',
    ],
    r.work
      .filter((n) => workSamples.get(n)!.prefetch.length)
      .map((n) => {
        const on = wm(n, 'prefetch', (x) => x.blocking);
        const off = wm(n, 'noprefetch', (x) => x.blocking);
        return [
          n,
          s(floorReady),
          s(on),
          s(off),
          s(wm(n, 'saveload', (x) => x.blocking)),
          x(on, floorReady),
          x(on, off),
          WORK_VARIANTS.map((v) => s(wm(n, v, (x) => x.ready))).join(' / '),
        ];
      }),
  );
  return out;
}

/** Issue 13's targets, each against this run's figures: met, missed, or not measured (variants not run). */
function renderTargets(r: Report): string {
  const ready = (v: Variant) => med(v, (x) => x.ready);
  const verdict = (value: number, met: (v: number) => boolean) =>
    Number.isFinite(value) ? (met(value) ? 'met' : 'missed') : 'not measured';
  const ratio = (a: number, b: number, goal: string, met: (v: number) => boolean) => [x(a, b), goal, verdict(a / b, met)];
  const mainStep = (v: Variant, workload: Workload | undefined) => {
    const blocks = med(v, (x) => x.blocks);
    return [
      `main step blocks, warm job, ${workload ? `${mb(workload.unique.compressed)} MB` : '1 GB'} cache (${v})`,
      `${s(blocks)} s`,
      '≤ 0.60 s',
      verdict(blocks, (b) => b <= 600),
    ];
  };
  const floorReady = ready('floor');
  const needed = restorePlusFloor();
  // The shortest other work measured that is at least restore + floor.
  const n = r.work.filter((n) => n * 1000 >= needed && workSamples.get(n)?.prefetch.length).sort((a, b) => a - b)[0];
  const blocks = n === undefined ? NaN : median(workSamples.get(n)!.prefetch.map((x) => x.blocking));
  const partial = medianImage(r.workload).ref;
  let out = `\n## Targets (issue 13)\n\n`;
  out += table(
    ['Target', 'Measured', 'Goal', 'Result'],
    [
      mainStep('warm', r.workload),
      mainStep('warm-1g', r.large?.workload),
      [
        `other work ≥ restore + floor (${s(needed)} s): first docker command blocks / floor${n === undefined ? '' : ` (${n} s of work)`}`,
        ...ratio(blocks, floorReady, '≤ 0.10×', (v) => v <= 0.1),
      ],
      BEFORE
        ? [
            'no other work: images ready, warm / the --before build',
            ...ratio(ready('warm'), ready('warm-before'), '≤ 1.00× (ties within 10%)', (v) => v <= 1.1),
          ]
        : [
            'no other work: images ready, warm / floor',
            ...ratio(
              ready('warm'),
              floorReady,
              `≤ ${TODAY_WARM_OVER_FLOOR.toFixed(2)}× (before issue 13)`,
              (v) => v <= TODAY_WARM_OVER_FLOOR,
            ),
          ],
      [
        `partial use (${partial}): images ready, save/load / warm`,
        ...ratio(ready('saveload-partial'), ready('warm-partial'), '≥ 3.00×', (v) => v >= 3),
      ],
      [
        `partial use (${partial}), prefetch: false: images ready, save/load / warm`,
        ...ratio(ready('saveload-partial'), ready('warm-partial-noprefetch'), '≥ 3.00×', (v) => v >= 3),
      ],
      [
        `upstream at ${SLOW_BANDWIDTH / MB} MB/s: images ready, warm / direct`,
        ...ratio(ready('warm-20'), ready('direct-20'), '≤ 0.50× (2× faster)', (v) => v <= 0.5),
      ],
    ],
  );
  out += `\nrestore + floor = the warm main step or the save/load restoreCache, the longer, plus the floor's images ready (\`--work auto\` runs exactly that, rounded up). `;
  out += `${TODAY_WARM_OVER_FLOOR.toFixed(2)}× is warm / floor in BENCHMARKS.md's Results, before the restore moved to the background; read differences under about 10% as ties.\n`;
  return out;
}

const watchdog = setTimeout(() => {
  progress(`still running after ${(TIME_LIMIT_MS * 3) / 1000} s: giving up`);
  void cleanup().then(() => process.exit(3));
}, TIME_LIMIT_MS * 3);
watchdog.unref();

try {
  await main();
} catch (error) {
  progress(`failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
} finally {
  await cleanup();
  progress('done');
}
