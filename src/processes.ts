// Processes this action starts: short commands run for their output (docker, ip, tar, zstd), and the ones that
// outlive the step (the registries, the mirrors' front, the restore, prefetch and save workers) with the
// environment each gets: only
// what it needs, so that no token of the job (INPUT_*, ACTIONS_RUNTIME_TOKEN, GITHUB_TOKEN) sits in
// /proc/PID/environ of a process that outlives the step.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/**
 * Runs a short command to its end and gives what it wrote to stdout. Bounded: killed (with killSignal) after
 * `timeout` ms or when `signal` aborts. Its error names the command and quotes what it wrote to stderr.
 */
export function commandOutput(
  file: string,
  args: string[],
  options: { timeout?: number; signal?: AbortSignal; maxBuffer?: number; killSignal?: NodeJS.Signals } = {},
): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, options, (error, stdout, stderr) =>
      error ? reject(new Error(`${file} ${args[0]} failed: ${String(stderr).trim() || error.message}`)) : resolve(stdout),
    ),
  );
}

/**
 * Running (not a zombie waiting to be reaped), and, when `started` is given, started as it says: with that
 * argument, or with a command line it accepts. A pid the system gave to another program since does not count.
 */
export async function isRunning(pid: number, started?: string | ((argv: string[]) => boolean)): Promise<boolean> {
  const [stat, cmdline] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/cmdline`, 'utf8')]).catch(() => [
    '',
    '',
  ]);
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  const argv = cmdline.split('\0');
  return state !== '' && state !== 'Z' && (started === undefined || (typeof started === 'string' ? argv.includes(started) : started(argv)));
}

/** A runner behind an HTTP proxy, or with its own CA bundle, needs these to reach the upstream; Go reads them. */
const UPSTREAM_NETWORK = [
  'HTTPS_PROXY',
  'https_proxy',
  'HTTP_PROXY',
  'http_proxy',
  'NO_PROXY',
  'no_proxy',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
];

/** The registry's environment: the network settings above, and no OpenTelemetry export (3.x starts one by default). */
export function registryEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  return { ...pick(env, UPSTREAM_NETWORK), OTEL_TRACES_EXPORTER: 'none' };
}

/** Where the Docker Engine API is, all the prefetch worker talks to (with TLS verification set, it declines). */
const DOCKER_ENGINE = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY'];

/** The prefetch worker's environment: the daemon's address only (its plan comes in a file). */
export function prefetchEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  return pick(env, DOCKER_ENGINE);
}

function pick(env: NodeJS.ProcessEnv, names: string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]]])));
}

/** What @actions/cache reads to reach the cache service, and the tools it archives with (tar, zstd on PATH). */
const CACHE_SERVICE = ['ACTIONS_CACHE_SERVICE_V2', 'ACTIONS_RESULTS_URL', 'ACTIONS_CACHE_URL', 'GITHUB_SERVER_URL', 'RUNNER_DEBUG', 'PATH'];
/** The cache service's token: a cache worker gets it on its stdin, never in its environment or arguments. */
const CACHE_TOKEN = 'ACTIONS_RUNTIME_TOKEN';

/**
 * A cache worker's environment (the background restore, the save): the cache service and the network settings,
 * with the work directory as the workspace the library archives paths from and the place of its temporary files.
 * No token: /proc/PID/environ of a worker running while the job's steps run is readable by those steps.
 */
export function cacheWorkerEnvironment(env: NodeJS.ProcessEnv, workDir: string): Record<string, string> {
  return { ...pick(env, [...CACHE_SERVICE, ...UPSTREAM_NETWORK]), GITHUB_WORKSPACE: workDir, RUNNER_TEMP: `${workDir}/tmp` };
}

/**
 * Starts this bundle again, detached, as a cache worker (`args` say which), in the work directory, and hands it the
 * cache service's token on its stdin.
 */
export function startCacheWorker(args: string[], workDir: string, output: 'ignore' | 'inherit'): ChildProcess {
  const child = spawn(process.execPath, [process.argv[1], ...args], {
    cwd: workDir,
    detached: true,
    stdio: ['pipe', output, output],
    env: cacheWorkerEnvironment(process.env, workDir),
  });
  // A worker that failed to start does not read it: that is its exit to report, not this pipe's.
  child.stdin!.on('error', () => {});
  child.stdin!.end(JSON.stringify({ token: process.env[CACHE_TOKEN] ?? '' }));
  return child;
}

/**
 * In a cache worker: takes the token from stdin into this process's environment, where the cache library reads
 * it. /proc/PID/environ still shows only the environment the process started with.
 */
export async function receiveCacheToken(): Promise<void> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  const { token } = JSON.parse(text || '{}') as { token?: string };
  if (token) process.env[CACHE_TOKEN] = token;
}
