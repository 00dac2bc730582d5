// npm run bench: the time to get a job's images, side by side in one run, for
//   direct      docker pull from the upstream, through a throttle standing in for the internet;
//   floor       docker pull from a plain registry on loopback that already holds the images;
//   save/load   restore a `docker save` tarball from the Actions cache, then docker load (what
//               ScribeMD/docker-cache and satackey/action-docker-layer-caching do);
//   this action cold (empty cache; with the default registry 3.x and with 2.8.3, which fetches each missed blob
//               twice), warm (cache restored; also with prefetch off), and changed (one image gained a new top layer
//               since the run that saved the cache), each a real job: main step, pulls, post step;
// and, on a warm cache, a job whose first docker command comes after N seconds of other work (a child process
// spinning one core, standing in for `npm ci`): how long that command blocks, with prefetch, without, and save/load;
// and what each extra registry listed in `registries` adds to the main and post steps (bench/registries.ts).
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
import { buildWorkload, FULL, pushWorkload, QUICK, setChanged, type Workload } from './workload.js';

const MB = 1_000_000;
const TRACE_MODULE = fileURLToPath(new URL('./trace.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------- flags

const USAGE = `usage: npm run bench -- [--reps N] [--bandwidth MBps] [--latency ms] [--quick] [--storage-driver overlay2|vfs]
                        [--json FILE] [--time-limit s] [--cpu-prof DIR] [--work s,s] [--only v,v]
  --reps N            repetitions, medians reported (default 3; --quick: 1)
  --bandwidth MBps    the throttled upstream's bandwidth, MB (10^6 bytes) a second, each direction (default 50)
  --latency ms        the throttled upstream's added round-trip time (default 20)
  --quick             small images, 1 repetition: the CI version
  --storage-driver D  the daemons' storage driver (default overlay2, vfs when overlay2 cannot start)
  --json FILE         also write every sample, the workload and the machine as JSON
  --time-limit s      stop starting repetitions after this many seconds (default 600); the run reports what it has
  --cpu-prof DIR      write a V8 CPU profile of every step of the action (main, post, prefetch worker) into DIR
  --work s,s          seconds of other work (one core busy) before the job's first docker command, one scenario
                      each (default 5,20; --quick: 2); its repetitions: the lesser of --reps and 2
  --only v,v          run only these variants (direct floor saveload-warm saveload-changed cold cold-2.8 warm
                      warm-noprefetch changed), and neither the other-work scenario nor the extra registries;
                      warm and changed restore what cold saved`;

const OPTIONS = {
  reps: { type: 'string' },
  bandwidth: { type: 'string', default: '50' },
  latency: { type: 'string', default: '20' },
  quick: { type: 'boolean', default: false },
  'storage-driver': { type: 'string', default: 'overlay2' },
  json: { type: 'string' },
  'time-limit': { type: 'string', default: '600' },
  'cpu-prof': { type: 'string' },
  work: { type: 'string' },
  only: { type: 'string' },
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
const positive = (name: string, value: string, min: number, max: number): number => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) {
    console.error(`bench: --${name} must be a number from ${min} to ${max}, got ${value}\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const REPS = Math.round(positive('reps', flags.reps ?? (flags.quick ? '1' : '3'), 1, 20));
const BANDWIDTH = positive('bandwidth', flags.bandwidth!, 0.1, 10_000) * MB;
const LATENCY = positive('latency', flags.latency!, 0, 1000);
const TIME_LIMIT_MS = positive('time-limit', flags['time-limit']!, 30, 7200) * 1000;
const SPEC = flags.quick ? QUICK : FULL;
/** Seconds of other work before the job's first docker command, one scenario each. */
const WORK = [...new Set((flags.work ?? (flags.quick ? '2' : '5,20')).split(',').map((w) => positive('work', w.trim(), 0, 600)))];
/** Repetitions of the other-work scenario (it is long: a job per variant and N). */
const WORK_REPS = Math.min(REPS, 2);
if (!['overlay2', 'vfs'].includes(flags['storage-driver']!)) {
  console.error(`bench: --storage-driver must be overlay2 or vfs\n${USAGE}`);
  process.exit(2);
}

const began = Date.now();
const loadAtStart = loadavg()[0];
/** The 1-minute load average every 5 s while the bench runs (its own daemons count too). */
const loadSamples: number[] = [];
setInterval(() => loadSamples.push(loadavg()[0]), 5_000).unref();
const progress = (message: string) => process.stderr.write(`[bench ${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);

// ---------------------------------------------------------------- measurements

type Variant = 'direct' | 'floor' | 'saveload-warm' | 'saveload-changed' | 'cold' | 'cold-2.8' | 'warm' | 'warm-noprefetch' | 'changed';
const VARIANTS: Variant[] = ['direct', 'floor', 'saveload-warm', 'saveload-changed', 'cold', 'cold-2.8', 'warm', 'warm-noprefetch', 'changed'];
/** The registry release of the cold-2.8 variant: the one before 3.0's single fetch per missed blob. */
const REGISTRY_2_8 = '2.8.3';
/** The variants this run measures (--only), in VARIANTS' order; all of them by default. */
const ONLY = flags.only === undefined ? VARIANTS : (flags.only.split(',').map((v) => v.trim()) as Variant[]);
for (const v of ONLY) {
  if (!VARIANTS.includes(v)) {
    console.error(`bench: --only names variant ${v}, not one of ${VARIANTS.join(', ')}\n${USAGE}`);
    process.exit(2);
  }
}
const want = (v: Variant) => ONLY.includes(v);
const LABELS: Record<Variant, string> = {
  direct: 'direct: docker pull from the throttled upstream',
  floor: 'floor: docker pull from a local registry',
  'saveload-warm': 'save/load, warm: restore tarball + docker load',
  'saveload-changed': 'save/load, changed: restore + load + pull new image',
  cold: `this action, cold job (empty cache), registry ${REGISTRY_UNDER_TEST.version}`,
  'cold-2.8': `this action, cold job (empty cache), registry ${REGISTRY_2_8}`,
  warm: 'this action, warm job (cache restored)',
  'warm-noprefetch': 'this action, warm job, prefetch: false',
  changed: 'this action, changed job (one new top layer)',
};

interface Sample {
  /** Time to images ready: restore (main step or restoreCache) plus pulls or load, ms. */
  ready: number;
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
const workSamples = new Map<number, Record<WorkVariant, WorkSample[]>>(
  WORK.map((n) => [n, Object.fromEntries(WORK_VARIANTS.map((v) => [v, []])) as unknown as Record<WorkVariant, WorkSample[]>]),
);

function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

// ---------------------------------------------------------------- the world

let world: World | undefined;
let floor: Upstream | undefined;
let throttle: Throttle | undefined;
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  (cleaning ??= (async () => {
    await throttle?.stop().catch(() => {});
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
  const r = await run(process.execPath, ['-e', `const end = Date.now() + ${seconds * 1000}; while (Date.now() < end);`], { timeoutMs: seconds * 1000 + 60_000 });
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
        progress(`${what}: dockerd's layer extraction was killed (${(error as Error).message.split('\n')[0].slice(0, 160)}); running it again`);
        continue;
      }
      throw error;
    }
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  progress(`workload ${SPEC.name}, ${REPS} repetition(s), upstream ${BANDWIDTH / MB} MB/s, ${LATENCY} ms RTT`);
  let driver = flags['storage-driver']!;
  if (driver === 'overlay2' && !(await storageDriverWorks('overlay2', await mkdtemp(join(tmpdir(), 'pull-cache-bench-probe-'))))) {
    progress('overlay2 does not start here; the daemons use vfs');
    driver = 'vfs';
  }

  const buildStart = performance.now();
  const workload = buildWorkload(SPEC);
  progress(`built ${workload.unique.layers} layers, ${(workload.unique.compressed / MB).toFixed(1)} MB compressed, ${(workload.unique.uncompressed / MB).toFixed(1)} MB uncompressed, in ${((performance.now() - buildStart) / 1000).toFixed(1)} s`);

  world = await startWorld('pull-cache-bench', { dockerdArgs: [`--storage-driver=${driver}`] });
  const w = world;
  floor = await startUpstream(join(w.dir, 'floor'));
  throttle = await startThrottle({ targetPort: w.upstream.port, bytesPerSecond: BANDWIDTH, rttMs: LATENCY });
  const th = throttle;
  await Promise.all([pushWorkload(w.upstream.url, workload), pushWorkload(floor.url, workload)]);
  progress(`upstream ${w.upstream.url} behind the throttle at ${th.url}; floor registry ${floor.url}`);

  // The bench process runs @actions/cache itself for save/load, against the same cache service.
  const saveloadDir = join(w.dir, 'saveload');
  await mkdir(join(saveloadDir, 'temp'), { recursive: true });
  Object.assign(process.env, w.cache.env, { RUNNER_TEMP: join(saveloadDir, 'temp'), GITHUB_WORKSPACE: saveloadDir });
  const benchTrace = join(w.dir, 'bench-trace.log');
  installTrace(benchTrace);
  const cacheLog = join(w.dir, 'actions-cache.log');
  const apiHost = new URL(w.cache.env.ACTIONS_RESULTS_URL).host;
  const tarball = join(saveloadDir, 'docker-images.tar');

  const profile: Record<string, string> = flags['cpu-prof'] ? { BENCH_CPU_PROFILE_DIR: resolve(flags['cpu-prof']) } : {};
  if (flags['cpu-prof']) await mkdir(resolve(flags['cpu-prof']), { recursive: true });
  const traceEnv = (file: string) => ({ NODE_OPTIONS: `--import ${TRACE_MODULE}`, BENCH_TRACE_FILE: file, ...profile });
  const jobRefs = workload.images.map((i) => i.ref);
  const floorRefs = workload.images.map((i) => `${floor!.host}/${i.repository}:${i.tag}`);
  const directRefs = workload.images.map((i) => `${th.host}/${i.repository}:${i.tag}`);
  const changedDirectRef = `${th.host}/${workload.changed.repository}:${workload.changed.tag}`;

  // The inputs that run the cold-2.8 variant's registry instead of the one under test.
  const registry28 = { 'registry-version': REGISTRY_2_8, 'registry-sha256': w.release.sha256Of(REGISTRY_2_8) };
  // Put the registry binaries in the tool cache, as on a runner where the action ran before: every measured main
  // step then finds its own there.
  for (const registry of [{}, ...(want('cold-2.8') ? [registry28] : [])]) {
    const runner = await fresh(w, 'prime');
    const { main, post } = await runner.job(runner.inputs({ upstream: th.url, save: 'false', 'cache-key': 'bench-prime', ...registry }));
    if (main.exitCode !== 0 || main.warnings.length || post.exitCode !== 0) throw new Error(`the priming job failed:\n${main.stdout}\n${main.stderr}\n${post.stdout}\n${post.stderr}`);
    await discard(runner);
  }

  // The save/load cache every save/load job restores: the images pulled, `docker save`d into one tarball, saved
  // under one key (that first save is measured too).
  const seed: Record<string, number> = {};
  if (want('saveload-warm') || want('saveload-changed')) {
    const runner = await fresh(w, 'saveload-seed');
    await pullAll(runner, floorRefs);
    seed.dockerSave = await docker(runner, ['save', '-o', tarball, ...floorRefs]);
    seed.tarBytes = (await stat(tarball)).size;
    const before = cacheSnapshot(w);
    const t = performance.now();
    await quietly(cacheLog, () => cache.saveCache([tarball], 'docker-cache-base'));
    seed.saveCache = performance.now() - t;
    seed.entryBytes = cacheDelta(before, cacheSnapshot(w)).up;
    await discard(runner);
    await rm(tarball, { force: true });
    progress(`save/load cache: docker save ${(seed.tarBytes / MB).toFixed(1)} MB tar in ${(seed.dockerSave / 1000).toFixed(1)} s, saved as ${(seed.entryBytes / MB).toFixed(1)} MB in ${(seed.saveCache / 1000).toFixed(1)} s`);
  }

  /** save/load's restore: the tarball from the Actions cache (restoreCache), then docker load. */
  const restoreAndLoad = async (runner: Runner) => {
    await rm(tarball, { force: true });
    const t0 = performance.now();
    const w0 = Date.now();
    const hit = await quietly(cacheLog, () => cache.restoreCache([tarball], 'docker-cache-base'));
    const restore = performance.now() - t0;
    const w1 = Date.now();
    if (hit !== 'docker-cache-base') throw new Error(`save/load: the tarball was not restored (${hit})`);
    const load = await docker(runner, ['load', '-i', tarball]);
    return { restore, load, w0, w1 };
  };

  /**
   * A job of this action on a fresh runner, as the Actions runner runs it: main step, the job's own steps (`steps`,
   * which returns how long its docker commands took), post step. `extra` adds inputs.
   */
  const actionJob = async (name: string, key: string, extra: Record<string, string>, steps: (runner: Runner) => Promise<number>): Promise<Sample> => {
    const runner = await fresh(w, name);
    const trace = join(w.dir, `trace-${name}.log`);
    const before = cacheSnapshot(w);
    const up = await upstreamCounters(w, th);
    let pull = 0;
    const { main, post } = await runner.job(
      runner.inputs({ upstream: th.url, 'cache-key': key, ...extra }),
      async (m: StepResult) => {
        if (m.exitCode !== 0 || m.warnings.length || !m.outputs.mirror) throw new Error(`main step failed (exit ${m.exitCode}): ${m.warnings.join('; ')}\n${m.stdout}\n${m.stderr}`);
        pull = await steps(runner);
      },
      traceEnv(trace),
    );
    if (post.exitCode !== 0 || post.warnings.length) throw new Error(`post step failed (exit ${post.exitCode}): ${post.warnings.join('; ')}\n${post.stdout}\n${post.stderr}`);
    const up2 = await upstreamCounters(w, th);
    const d = cacheDelta(before, cacheSnapshot(w));
    const { main: mainEvents, post: postEvents } = stepProcesses(await readTrace(trace));
    await discard(runner);
    return {
      ready: main.ms + pull,
      restore: main.ms,
      pull,
      post: post.ms,
      cacheDown: d.down,
      cacheUp: d.up,
      entriesUp: d.entries,
      stored: storedUnder(w, `${key}-`),
      upstream: up2.bytes - up.bytes,
      upstreamBlobGets: up2.blobGets - up.blobGets,
      main: mainEvents ? mainPhases(mainEvents, main.ms, apiHost) : undefined,
      postPhases: postEvents ? postPhases(postEvents, post.ms, apiHost) : undefined,
    };
  };

  /** The cache key of the last repetition's jobs: the warm cache the other-work scenario restores. */
  let warmKey = '';
  let repsDone = 0;
  for (let rep = 1; rep <= REPS; rep++) {
    if (Date.now() - began > TIME_LIMIT_MS) {
      progress(`time limit reached: stopping after ${repsDone} repetition(s)`);
      break;
    }
    let got: Partial<Record<Variant, Sample>> = {};
    const runRep = async (tag: string) => {
      await setChanged(w.upstream.url, workload, false);
      const note = (v: Variant, s: Sample) => {
        got[v] = s;
        progress(`rep ${rep}/${REPS} ${v.padEnd(16)} ready ${(s.ready / 1000).toFixed(2)} s${s.post !== null ? `, post ${(s.post / 1000).toFixed(2)} s` : ''}, upstream ${(s.upstream / MB).toFixed(1)} MB, cache ↓${(s.cacheDown / MB).toFixed(1)} ↑${(s.cacheUp / MB).toFixed(1)} MB`);
      };

      // direct and floor: plain pulls on a fresh daemon.
      for (const [variant, refs] of [['direct', directRefs], ['floor', floorRefs]] as const) {
        if (!want(variant)) continue;
        const runner = await fresh(w, `${variant}-${tag}`);
        const up = await upstreamCounters(w, th);
        const ms = await pullAll(runner, refs);
        const up2 = await upstreamCounters(w, th);
        note(variant, { ready: ms, restore: NaN, pull: ms, post: null, cacheDown: 0, cacheUp: 0, entriesUp: 0, stored: null, upstream: up2.bytes - up.bytes, upstreamBlobGets: up2.blobGets - up.blobGets });
        await discard(runner);
      }

      // save/load, warm: the tarball restored, then loaded. Its post saves nothing (the key was an exact hit).
      if (want('saveload-warm')) {
        const runner = await fresh(w, `saveload-warm-${tag}`);
        const before = cacheSnapshot(w);
        const { restore, load, w0, w1 } = await restoreAndLoad(runner);
        const a = activity(await readTrace(benchTrace), apiHost, w0, w1);
        const d = cacheDelta(before, cacheSnapshot(w));
        note('saveload-warm', {
          ready: restore + load,
          restore,
          pull: load,
          post: null,
          cacheDown: d.down,
          cacheUp: d.up,
          entriesUp: d.entries,
          stored: storedUnder(w, 'docker-cache-base'),
          upstream: 0,
          upstreamBlobGets: 0,
          parts: { download: union(a.transfer), untar: union(a.tar), load },
        });
        await rm(tarball, { force: true });
        await discard(runner);
      }

      // This action: a cold job on an empty cache, then a warm one restoring what it saved.
      const key = `bench-${tag}-${process.pid}`;
      const job = async (variant: 'cold' | 'warm' | 'warm-noprefetch' | 'changed') => {
        // Releases before prefetch do not declare the input: set it only to turn it off.
        if (want(variant)) note(variant, await actionJob(`${variant}-${tag}`, key, variant === 'warm-noprefetch' ? { prefetch: 'false' } : {}, (runner) => pullAll(runner, jobRefs)));
      };
      await job('cold');
      // The same cold job on 2.8 (a key of its own: its cache starts empty too).
      if (want('cold-2.8')) note('cold-2.8', await actionJob(`cold-2.8-${tag}`, `${key}-2.8`, registry28, (runner) => pullAll(runner, jobRefs)));
      await job('warm');
      await job('warm-noprefetch');

      // Since that run, one image gained a new top layer upstream.
      await setChanged(w.upstream.url, workload, true);
      await job('changed');

      // save/load, changed: the last run's tarball restored and loaded, the changed image pulled, and the post
      // step saves a new tarball of everything under a new key.
      if (want('saveload-changed')) {
        const runner = await fresh(w, `saveload-changed-${tag}`);
        const before = cacheSnapshot(w);
        const up = await upstreamCounters(w, th);
        const { restore, load } = await restoreAndLoad(runner);
        const pull = await pullAll(runner, [changedDirectRef]);
        const up2 = await upstreamCounters(w, th);
        await rm(tarball, { force: true });
        const refs = [...floorRefs.filter((_, i) => workload.images[i].ref !== workload.changed.ref), changedDirectRef];
        const dockerSave = await docker(runner, ['save', '-o', tarball, ...refs]);
        const s0 = performance.now();
        const w0 = Date.now();
        const id = await quietly(cacheLog, () => cache.saveCache([tarball], `docker-cache-${tag}-${process.pid}`));
        const saveCache = performance.now() - s0;
        if (!(id > 0)) throw new Error('save/load: the new tarball was not saved');
        const a = activity(await readTrace(benchTrace), apiHost, w0, Date.now());
        const d = cacheDelta(before, cacheSnapshot(w));
        note('saveload-changed', {
          ready: restore + load + pull,
          restore,
          pull: load + pull,
          post: dockerSave + saveCache,
          cacheDown: d.down,
          cacheUp: d.up,
          entriesUp: d.entries,
          stored: storedUnder(w, 'docker-cache-base') + storedUnder(w, `docker-cache-${tag}-${process.pid}`),
          upstream: up2.bytes - up.bytes,
          upstreamBlobGets: up2.blobGets - up.blobGets,
          parts: { load, pull, dockerSave, saveCache, tarZstd: union(a.tar), upload: union(a.transfer), tarBytes: (await stat(tarball)).size },
        });
        await rm(tarball, { force: true });
        await discard(runner);
      }
      warmKey = key;
    };
    await againIfExtractionKilled(`rep ${rep}`, async (again) => {
      got = {};
      await runRep(again ? `r${rep}-again` : `r${rep}`);
      for (const [v, sample] of Object.entries(got)) samples[v as Variant].push(sample);
    });
    repsDone++;
  }
  if (!repsDone) throw new Error('no repetition finished within the time limit');

  // A job whose first docker command comes after N seconds of other work, on a warm cache (the last repetition's
  // changed job saved it: it holds every image as the upstream has it now): how long that command blocks. The
  // action's jobs pull the workload after the work (prefetch, on by default, has been pulling since the main step);
  // save/load's restore and docker load block in their own step before the work, and the images are there after it.
  let workRepsDone = 0;
  for (let rep = 1; rep <= (flags.only === undefined ? WORK_REPS : 0); rep++) {
    // Its first repetition always runs; more only within a quarter more than the time limit.
    if (rep > 1 && Date.now() - began > TIME_LIMIT_MS * 1.25) {
      progress(`time limit reached: the other-work scenario stops after ${workRepsDone} repetition(s)`);
      break;
    }
    for (const n of WORK) {
      await againIfExtractionKilled(`other work ${n} s, rep ${rep}`, async (again) => {
        const tag = `work${n}-r${rep}${again ? '-again' : ''}`;
        const got: Partial<Record<WorkVariant, WorkSample>> = {};
        for (const variant of ['prefetch', 'noprefetch'] as const) {
          let work = 0;
          const job = await actionJob(`${variant}-${tag}`, warmKey, variant === 'noprefetch' ? { prefetch: 'false' } : {}, async (runner) => {
            work = await busyWork(n);
            return pullAll(runner, jobRefs);
          });
          got[variant] = { blocking: job.pull, ready: job.restore + work + job.pull, work };
        }
        {
          const runner = await fresh(w, `saveload-${tag}`);
          const { restore, load } = await restoreAndLoad(runner);
          const work = await busyWork(n);
          await rm(tarball, { force: true });
          await discard(runner);
          got.saveload = { blocking: restore + load, ready: restore + load + work, work };
        }
        for (const v of WORK_VARIANTS) workSamples.get(n)![v].push(got[v]!);
        progress(`other work ${n} s, rep ${rep}/${WORK_REPS}: docker blocks ${WORK_VARIANTS.map((v) => `${v} ${(got[v]!.blocking / 1000).toFixed(2)} s`).join(', ')}`);
      });
    }
    workRepsDone++;
  }

  // What decompressing the layers costs alone (one core, zlib), to tell it from extraction in the floor's pulls.
  const g0 = performance.now();
  const unique = [...new Set(workload.images.flatMap((i) => i.layerData))];
  for (const l of unique) gunzipSync(l.data);
  const gunzipMs = performance.now() - g0;

  const registries = flags.only === undefined ? await benchRegistries(REPS, progress) : '';
  const machine = await describeMachine(driver);
  const report = render(workload, { driver, seed, gunzipMs, repsDone, workRepsDone, machine }) + registries;
  process.stdout.write(report);
  if (flags.json) {
    await writeFile(flags.json, JSON.stringify({ flags, machine, driver, seed, gunzipMs, repsDone, workload: describeWorkload(workload), samples, work: Object.fromEntries(workSamples) }, null, 2));
  }
}

// ---------------------------------------------------------------- report

function describeWorkload(workload: Workload) {
  return {
    images: workload.images.map((i) => ({ ref: i.ref, layers: i.layers.length, compressed: i.compressed, uncompressed: i.uncompressed })),
    unique: workload.unique,
    change: { ref: workload.changed.ref, layer: workload.spec.change.layer.id, compressed: workload.layers.get(workload.spec.change.layer.id)!.size },
  };
}

const s = (ms: number | null | undefined) => (ms === null || ms === undefined || !Number.isFinite(ms) ? '–' : (ms / 1000).toFixed(2));
const mb = (bytes: number | null | undefined) => (bytes === null || bytes === undefined || !Number.isFinite(bytes) ? '–' : (bytes / MB).toFixed(1));
const x = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '–');

function table(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n') + '\n';
}

/** The machine and the software measured, for the report. */
async function describeMachine(driver: string): Promise<Record<string, string>> {
  const first = async (command: string, args: string[]) => {
    const r = await run(command, args, { timeoutMs: 10_000 });
    return r.code === 0 ? r.stdout.trim().split('\n')[0] : `(${command} failed)`;
  };
  const hash = createHash('sha256').update(await readFile(join(ROOT, 'dist/index.js'))).digest('hex').slice(0, 12);
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

function render(
  workload: Workload,
  o: { driver: string; seed: Record<string, number>; gunzipMs: number; repsDone: number; workRepsDone: number; machine: Record<string, string> },
): string {
  const m = (v: Variant, f: (x: Sample) => number | null | undefined) => median(samples[v].map((x) => f(x) ?? NaN));
  const post = (v: Variant) => (samples[v].some((x) => x.post !== null) ? m(v, (x) => x.post) : null);
  const change = workload.layers.get(workload.spec.change.layer.id)!;
  let out = '';
  out += `\n## Machine\n\n`;
  out += table(['What', 'Value'], Object.entries(o.machine));
  out += `\n## Workload (${workload.spec.name})\n\n`;
  out += table(
    ['Image', 'Layers', 'Compressed (MB)', 'Uncompressed (MB)'],
    workload.images.map((i) => [i.ref, i.layers.length, mb(i.compressed), mb(i.uncompressed)]),
  );
  out += `\nUnique: ${workload.unique.layers} layers, ${mb(workload.unique.compressed)} MB as pulled (gzip), ${mb(workload.unique.uncompressed)} MB uncompressed. `;
  out += `\`docker save\` of the five images: ${mb(o.seed.tarBytes)} MB tar, ${mb(o.seed.entryBytes)} MB in the cache (zstd by @actions/cache). `;
  out += `Changed job: ${workload.changed.ref} gains a new top layer of ${mb(change.size)} MB compressed (${mb(change.uncompressed)} MB uncompressed).\n`;
  out += `Upstream through the throttle: ${BANDWIDTH / MB} MB/s each way, ${LATENCY} ms round trip. Storage driver: ${o.driver}. MB = 10^6 bytes. Medians of ${o.repsDone} repetition(s).\n`;

  out += `\n## Results\n\n`;
  out += table(
    ['Variant', 'Images ready (s)', 'min–max (s)', 'restore (s)', 'pull/load (s)', 'Post step (s)', 'Cache ↓ (MB)', 'Cache ↑ (MB)', 'Cache stored (MB)', 'Upstream (MB)', 'Upstream blob GETs'],
    VARIANTS.filter((v) => samples[v].length).map((v) => [
      LABELS[v],
      s(m(v, (x) => x.ready)),
      `${s(Math.min(...samples[v].map((x) => x.ready)))}–${s(Math.max(...samples[v].map((x) => x.ready)))}`,
      s(m(v, (x) => x.restore)),
      s(m(v, (x) => x.pull)),
      s(post(v)),
      mb(m(v, (x) => x.cacheDown)),
      mb(m(v, (x) => x.cacheUp)),
      mb(m(v, (x) => x.stored)),
      mb(m(v, (x) => x.upstream)),
      m(v, (x) => x.upstreamBlobGets),
    ]),
  );
  out += `\nrestore = the action's main step (the registry binary already in the tool cache) or @actions/cache restoreCache of the tarball; `;
  out += `the save/load post is docker save + saveCache (after a warm exact-key hit those actions save nothing). `;
  out += `The first save/load save (docker save ${s(o.seed.dockerSave)} s + saveCache ${s(o.seed.saveCache)} s) happens once, before the repetitions.\n`;

  const warm = m('warm', (x) => x.ready);
  const changedUp = m('changed', (x) => x.cacheUp);
  const slUp = m('saveload-changed', (x) => x.cacheUp);
  out += `\n## Ratios\n\n`;
  out += table(
    ['Ratio', 'Value'],
    [
      ['warm / floor (images ready)', x(warm, m('floor', (x) => x.ready))],
      ['warm / direct (images ready)', x(warm, m('direct', (x) => x.ready))],
      ['warm / save-load warm (images ready)', x(warm, m('saveload-warm', (x) => x.ready))],
      ['warm with prefetch: false / floor (images ready)', x(m('warm-noprefetch', (x) => x.ready), m('floor', (x) => x.ready))],
      ['warm with prefetch: false / save-load warm (images ready)', x(m('warm-noprefetch', (x) => x.ready), m('saveload-warm', (x) => x.ready))],
      ['changed / save-load changed (images ready)', x(m('changed', (x) => x.ready), m('saveload-changed', (x) => x.ready))],
      ['changed job upload bytes, ours / save-load', `${x(changedUp, slUp)} (${mb(changedUp)} MB vs ${mb(slUp)} MB)`],
      ['changed job post step, ours / save-load', `${x(post('changed')!, post('saveload-changed')!)} (${s(post('changed'))} s vs ${s(post('saveload-changed'))} s)`],
      ['cache stored, ours after cold / save-load tarball', `${x(m('cold', (x) => x.stored), o.seed.entryBytes)} (${mb(m('cold', (x) => x.stored))} MB vs ${mb(o.seed.entryBytes)} MB)`],
      ...(['cold', 'cold-2.8'] as const).flatMap((v) => {
        const registry = v === 'cold' ? REGISTRY_UNDER_TEST.version : REGISTRY_2_8;
        return [
          [`cold upstream bytes / direct upstream bytes, registry ${registry}`, x(m(v, (x) => x.upstream), m('direct', (x) => x.upstream))],
          [`cold / direct (images ready), registry ${registry}`, x(m(v, (x) => x.ready), m('direct', (x) => x.ready))],
        ];
      }),
    ],
  );

  out += `\n## The action's own overhead\n\n`;
  out += table(
    ['Step', 'Time (s)', 'Cache ↑ (MB)', 'Entries saved'],
    [
      ['main step, empty cache (cold job)', s(m('cold', (x) => x.restore)), '', ''],
      ['main step, cache restored (warm job)', s(m('warm', (x) => x.restore)), '', ''],
      ['post step, nothing new (warm job)', s(post('warm')), mb(m('warm', (x) => x.cacheUp)), m('warm', (x) => x.entriesUp)],
      ['post step, saving a new cache (cold job)', s(post('cold')), mb(m('cold', (x) => x.cacheUp)), m('cold', (x) => x.entriesUp)],
      ['post step, saving one new layer (changed job)', s(post('changed')), mb(changedUp), m('changed', (x) => x.entriesUp)],
    ],
  );

  const ph = (v: Variant, f: (p: MainPhases) => number) => m(v, (x) => (x.main ? f(x.main) : NaN));
  const pp = (v: Variant, f: (p: PostPhases) => number) => m(v, (x) => (x.postPhases ? f(x.postPhases) : NaN));
  const part = (v: Variant, k: string) => m(v, (x) => x.parts?.[k] ?? NaN);
  out += `\n## Where the time goes\n\n`;
  out += `Main step (medians; the phases come from a timeline of the step's process: its children, HTTP requests and log lines):\n\n`;
  out += table(
    ['Phase', 'cold (s)', 'warm (s)', 'changed (s)'],
    [
      ['node start, bundle load, process exit', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.boot)))],
      ['restore: index, entries, verify, links, scan, baseline (upstream probe alongside)', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.restore)))],
      ['  of which tar + unzstd running', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.restoreTar)))],
      ['  of which downloads from the blob store', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.restoreTransfer)))],
      ['  of which cache service API calls', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.restoreApi)))],
      ['  of which the upstream probe (alongside)', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.restoreNet)))],
      ['  of which none of those (re-hashing every blob, links, storage scan, baseline)', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.restoreOther)))],
      ['  entries restored (tar runs)', ...(['cold', 'warm', 'changed'] as const).map((v) => ph(v, (p) => p.entriesRestored))],
      ['  serial, after the last entry landed: verify (re-hash), links, scan, baseline', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.afterLastEntry)))],
      ['registry start (spawn to answering)', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.registryStart)))],
      ['daemon reload (merge, SIGHUP, docker info until live)', ...(['cold', 'warm', 'changed'] as const).map((v) => s(ph(v, (p) => p.daemonReload)))],
      ['  docker info calls', ...(['cold', 'warm', 'changed'] as const).map((v) => ph(v, (p) => p.dockerInfoCalls))],
    ],
  );
  out += `\nPost step:\n\n`;
  out += table(
    ['Phase', 'cold (s)', 'warm (s)', 'changed (s)'],
    [
      ['node start, bundle load, registry stop, process exit', ...(['cold', 'warm', 'changed'] as const).map((v) => s(pp(v, (p) => p.boot)))],
      ['daemon.json back + reload, scan, usage, upstream calls', ...(['cold', 'warm', 'changed'] as const).map((v) => s(pp(v, (p) => p.stopAndRestore)))],
      ['save (first to last tar or cache call)', ...(['cold', 'warm', 'changed'] as const).map((v) => s(pp(v, (p) => p.save)))],
      ['  of which tar + zstd running', ...(['cold', 'warm', 'changed'] as const).map((v) => s(pp(v, (p) => p.saveTar)))],
      ['  of which uploads to the blob store', ...(['cold', 'warm', 'changed'] as const).map((v) => s(pp(v, (p) => p.saveTransfer)))],
      ['  of which cache service API calls', ...(['cold', 'warm', 'changed'] as const).map((v) => s(pp(v, (p) => p.saveApi)))],
      ['  entries saved (tar runs)', ...(['cold', 'warm', 'changed'] as const).map((v) => pp(v, (p) => p.entriesSaved))],
      ['calls to the upstream and other HTTP (whole step)', ...(['cold', 'warm', 'changed'] as const).map((v) => s(pp(v, (p) => p.net)))],
      ['  number of such calls', ...(['cold', 'warm', 'changed'] as const).map((v) => pp(v, (p) => p.netCalls))],
    ],
  );
  out += `\nPulls and loads (the daemon's side):\n\n`;
  out += table(
    ['What', 'Time (s)'],
    [
      ['floor: pulls from a local registry (loopback download, gunzip, extraction)', s(m('floor', (x) => x.pull))],
      ['  gunzip of every unique layer alone (zlib, one core, in the bench process)', s(o.gunzipMs)],
      ['warm job: pulls through the mirror (restored cache, tags checked upstream), prefetch on', s(m('warm', (x) => x.pull))],
      ['warm job: the same with prefetch: false', s(m('warm-noprefetch', (x) => x.pull))],
      ['cold job: pulls through the mirror filling the cache', s(m('cold', (x) => x.pull))],
      ['direct: pulls from the throttled upstream', s(m('direct', (x) => x.pull))],
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

  const floorReady = m('floor', (x) => x.ready);
  const wm = (n: number, v: WorkVariant, f: (x: WorkSample) => number) => median(workSamples.get(n)![v].map(f));
  out += `\n## Docker after other work (warm cache)\n\n`;
  out += `A warm job whose first docker command (\`docker pull\` of the five images) comes after N s of other work (a child process `;
  out += `spinning one core, standing in for \`npm ci\`). Blocks = from that command to all images ready. The action's main step runs `;
  out += `before the work; save/load's restore + \`docker load\` block in their own step before the work, so its blocking time is `;
  out += `restore + load. Floor: the plain local-registry pull above, no overlap. Medians of ${o.workRepsDone} repetition(s).\n\n`;
  out += table(
    ['Other work (s)', 'Floor (s)', 'Blocks, prefetch on (s)', 'Blocks, prefetch: false (s)', 'Blocks, save/load: restore + load (s)', 'prefetch / floor', 'prefetch / prefetch: false', 'Job to images ready: prefetch on / off / save/load (s)'],
    WORK.filter((n) => workSamples.get(n)!.prefetch.length).map((n) => {
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
        (['prefetch', 'noprefetch', 'saveload'] as const).map((v) => s(wm(n, v, (x) => x.ready))).join(' / '),
      ];
    }),
  );
  return out;
}

const watchdog = setTimeout(() => {
  progress(`still running after ${(TIME_LIMIT_MS * 2) / 1000} s: giving up`);
  void cleanup().then(() => process.exit(3));
}, TIME_LIMIT_MS * 2);
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
