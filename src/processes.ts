// Processes this action starts: short commands run for their output (docker, ip, tar, zstd), and the ones that
// outlive the step (the registries, the prefetch worker, the save worker) with the environment each gets: only
// what it needs, so that no token of the job (INPUT_*, ACTIONS_RUNTIME_TOKEN, GITHUB_TOKEN) sits in
// /proc/PID/environ of a process that outlives the step.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/**
 * Runs a short command to its end and gives what it wrote to stdout. Bounded: killed (with killSignal) after
 * `timeout` ms or when `signal` aborts. Its error names the command and quotes what it wrote to stderr.
 */
export function commandOutput(file: string, args: string[], options: { timeout?: number; signal?: AbortSignal; maxBuffer?: number; killSignal?: NodeJS.Signals } = {}): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, options, (error, stdout, stderr) => (error ? reject(new Error(`${file} ${args[0]} failed: ${String(stderr).trim() || error.message}`)) : resolve(stdout))),
  );
}

/**
 * Running (not a zombie waiting to be reaped), and, when `started` is given, started as it says: with that
 * argument, or with a command line it accepts. A pid the system gave to another program since does not count.
 */
export async function isRunning(pid: number, started?: string | ((argv: string[]) => boolean)): Promise<boolean> {
  const [stat, cmdline] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/cmdline`, 'utf8')]).catch(() => ['', '']);
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  const argv = cmdline.split('\0');
  return state !== '' && state !== 'Z' && (started === undefined || (typeof started === 'string' ? argv.includes(started) : started(argv)));
}

/** A runner behind an HTTP proxy, or with its own CA bundle, needs these to reach the upstream; Go reads them. */
const UPSTREAM_NETWORK = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'SSL_CERT_FILE', 'SSL_CERT_DIR'];

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
const CACHE_SERVICE = ['ACTIONS_CACHE_SERVICE_V2', 'ACTIONS_RESULTS_URL', 'ACTIONS_RUNTIME_TOKEN', 'ACTIONS_CACHE_URL', 'GITHUB_SERVER_URL', 'RUNNER_DEBUG', 'PATH'];

/**
 * The save worker's environment: the cache service and the network settings, with the work directory as the
 * workspace the library archives paths from and the place of its temporary files. No registry token.
 */
export function saveEnvironment(env: NodeJS.ProcessEnv, workDir: string): Record<string, string> {
  return { ...pick(env, [...CACHE_SERVICE, ...UPSTREAM_NETWORK]), GITHUB_WORKSPACE: workDir, RUNNER_TEMP: `${workDir}/tmp` };
}
