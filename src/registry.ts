// The local Distribution registry: its config, and the detached process that serves the mirror for the
// rest of the job.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { stringify } from 'yaml';
import { pollUntil } from './bounded.js';
import { warn } from './log.js';
import { isRunning, startChild } from './processes.js';

export interface RegistryConfigOptions {
  /** The IPv4 address to listen on: 127.0.0.1, or the Docker bridge's gateway. */
  address: string;
  port: number;
  storageDir: string;
  /** The registry to proxy; null serves the storage as it is (offline: upstream unreachable). */
  upstream: string | null;
  username: string;
  password: string;
}

/** The response header by which the registry this action started tells itself from anything else on its port. */
export const INSTANCE_HEADER = 'Pull-Cache-Instance';

/**
 * The registry's config.yml: a pull-through proxy of `upstream` on address:port, storing under storageDir, that
 * puts `instance` in a header of every response. Read-only to clients in every mode: a proxy stores what it
 * fetches itself, and nothing a client pushes may end up in the cache later runs restore.
 */
export function registryConfig(o: RegistryConfigOptions, instance: string): string {
  const credentials = o.username ? { username: o.username, password: o.password } : {};
  return stringify({
    version: 0.1,
    log: { level: 'info', formatter: 'text', accesslog: { disabled: false }, fields: { service: 'pull-cache' } },
    storage: {
      filesystem: { rootdirectory: o.storageDir },
      cache: { blobdescriptor: 'inmemory' },
      // The cache is saved by digest; nothing may vanish behind the index's back.
      delete: { enabled: false },
      // readonly takes away the push and delete endpoints only; the proxy still stores what it fetches.
      maintenance: { uploadpurging: { enabled: false }, readonly: { enabled: true } },
    },
    http: { addr: `${o.address}:${o.port}`, headers: { 'X-Content-Type-Options': ['nosniff'], [INSTANCE_HEADER]: [instance] } },
    // ttl 0: no expiry (3.x; 2.8 ignores the key and expires nothing with deletion disabled). The cache's budget
    // decides what lives, and 3.x's scheduler would otherwise record every blob in scheduler-state.json.
    ...(o.upstream === null ? {} : { proxy: { remoteurl: o.upstream, ...credentials, ttl: '0s' } }),
  });
}

export interface RegistryFiles {
  config: string;
  /** stdout: one line per HTTP request, the record the report is computed from. */
  accessLog: string;
  /** stderr: the registry's own log. */
  log: string;
}

export interface RunningRegistry {
  pid: number;
  url: string;
}

/**
 * Writes the config (mode 0600: it holds the token) and starts the registry detached from this step, with only
 * the environment it needs. `spawned` gets the pid at once, before the registry answers, so that a step cut off
 * while it starts leaves nothing running that post does not know of. It is ready when /v2/ answers with the
 * nonce of this start: a server that took the port first is never mistaken for it.
 */
export async function startRegistry(
  binary: string,
  files: RegistryFiles,
  options: RegistryConfigOptions,
  spawned: (pid: number) => void,
  timeoutMs = 30_000,
): Promise<RunningRegistry> {
  const instance = randomBytes(16).toString('hex');
  const url = `http://${options.address}:${options.port}`;
  await writeFile(files.config, registryConfig(options, instance), { mode: 0o600 });
  const out = openSync(files.accessLog, 'a');
  const err = openSync(files.log, 'a');
  const child = startChild(binary, ['serve', files.config], { kind: 'registry', detached: true, stdio: ['ignore', out, err] });
  closeSync(out);
  closeSync(err);
  let exit: string | undefined;
  child.once('exit', (code, signal) => (exit = `exited with ${code ?? signal}`));
  child.once('error', (e) => (exit = `could not be started: ${e.message}`));
  child.unref();
  if (child.pid !== undefined) spawned(child.pid);
  const answering = await pollUntil(
    async () => {
      if (await answersV2(url, instance)) return true;
      if (exit !== undefined) throw new Error(`the registry ${exit} at start: ${await lastLines(files.log)}`);
      return false;
    },
    timeoutMs,
    50,
  );
  if (!answering) {
    await stopRegistry(child.pid!, files.config);
    throw new Error(`the registry did not answer on ${url}/v2/ within ${timeoutMs / 1000} s: ${await lastLines(files.log)}`);
  }
  return { pid: child.pid!, url };
}

async function answersV2(url: string, instance: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return (res.status === 200 || res.status === 401) && res.headers.get(INSTANCE_HEADER) === instance;
  } catch {
    return false;
  }
}

/**
 * Whether the server at `url` is a mirror this action started, in any job: its /v2/ answers with the instance
 * header. Quick (1 s): a mirror answers at once, and anything else counts as not one.
 */
export async function isPullCacheMirror(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1_000), redirect: 'manual' });
    await res.arrayBuffer();
    return res.headers.has(INSTANCE_HEADER);
  } catch {
    return false;
  }
}

/**
 * Stops the registry by pid: SIGTERM, then SIGKILL after graceMs. Quiet when it is already gone; a pid that
 * now belongs to another process (its command line no longer names our config) is left alone.
 */
export async function stopRegistry(pid: number, configPath: string, graceMs = 10_000): Promise<void> {
  if (!(await isRunning(pid, configPath))) return;
  process.kill(pid, 'SIGTERM');
  if (await pollUntil(async () => !(await isRunning(pid, configPath)), graceMs, 50)) return;
  warn(`the registry (pid ${pid}) did not stop within ${graceMs / 1000} s of SIGTERM; killing it`);
  process.kill(pid, 'SIGKILL');
}

/** Fails when something already listens on the port: the registry would exit, or another server would answer for it. */
export async function assertPortFree(port: number, address: string): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve, reject) =>
    server
      .once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new Error(
            e.code === 'EADDRINUSE'
              ? `port ${port} is already in use on ${address}: leave port empty for a free one`
              : `port ${port}: ${e.message}`,
          ),
        ),
      )
      .listen(port, address, resolve),
  );
  await new Promise((resolve) => server.close(resolve));
}

/** A port free on address at this moment; the kernel's ephemeral range never hands out 5000. */
export async function freePort(address: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, address, resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function lastLines(file: string, n = 5): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-n).join(' | ') || '(no log)';
}
