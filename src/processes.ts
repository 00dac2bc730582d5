// Processes this action starts (the registries, the prefetch worker, the save worker), and
// the environment each gets: only what it needs, so that no token of the job (INPUT_*, ACTIONS_RUNTIME_TOKEN,
// GITHUB_TOKEN) sits in /proc/PID/environ of a process that outlives the step.
import { readFile } from 'node:fs/promises';

/** Running (not a zombie waiting to be reaped), and, when `argument` is given, started with that argument. */
export async function isRunning(pid: number, argument?: string): Promise<boolean> {
  const [stat, cmdline] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/cmdline`, 'utf8')]).catch(() => ['', '']);
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== '' && state !== 'Z' && (argument === undefined || cmdline.split('\0').includes(argument));
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
