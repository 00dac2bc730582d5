// The one way this action starts a process: short commands run for their output (docker, ip, tar, zstd, sudo,
// flock), and the ones that outlive the step (the registries, and this bundle again as the mirrors' front, the
// restore worker and the prefetch worker). Every child gets an explicit environment built here: a fixed PATH, the
// locale, the runner's RUNNER_TRACKING_ID (a self-hosted runner ends the processes of a finished job by it), and
// only what that kind of child needs. None of the job's tokens (INPUT_*, ACTIONS_RUNTIME_TOKEN, GITHUB_TOKEN) ever
// reaches a child's /proc/PID/environ or arguments, children of children included: they inherit what they got.
// Commands are looked up in the system's directories, never on the job's PATH, which a step can put its own tar
// at the front of (GITHUB_PATH).
import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

/** Where commands are looked up, in this order: the system's own directories. */
export const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The kinds of child this action starts; each kind is handed its own part of the runner's environment. */
export type ChildKind = 'command' | 'docker' | 'registry' | 'restore worker' | 'front' | 'prefetch worker';

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

/** Where the Docker Engine API is, and the CLI's own config (contexts live under HOME/.docker or DOCKER_CONFIG). */
const DOCKER_ENGINE = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY'];
const DOCKER_CLI = [...DOCKER_ENGINE, 'DOCKER_CONTEXT', 'DOCKER_CONFIG', 'DOCKER_CERT_PATH', 'HOME'];

/**
 * What each kind takes of the runner's environment. Short commands (tar, zstd, ip, sudo, flock) take nothing; the
 * restore worker gets the cache service's address and token on its stdin, not here; the front needs nothing.
 */
const HANDED: Record<ChildKind, string[]> = {
  command: [],
  docker: DOCKER_CLI,
  registry: UPSTREAM_NETWORK,
  'restore worker': UPSTREAM_NETWORK,
  front: [],
  'prefetch worker': DOCKER_ENGINE,
};

/** What every child gets, whatever its kind. */
const ALWAYS = ['RUNNER_TRACKING_ID'];

/** The registry turns its OpenTelemetry export off with this (3.x starts one by default). */
const KIND_SETS: Partial<Record<ChildKind, Record<string, string>>> = { registry: { OTEL_TRACES_EXPORTER: 'none' } };

/** The whole environment a child of this kind starts with. */
export function childEnvironment(kind: ChildKind, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return { PATH: SYSTEM_PATH.join(':'), LANG: 'C.UTF-8', ...pick(env, [...ALWAYS, ...HANDED[kind]]), ...KIND_SETS[kind] };
}

function pick(env: NodeJS.ProcessEnv, names: string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]]])));
}

const resolved = new Map<string, string>();

/** The absolute path of a command: a path as given (the user's registry-path), a name from SYSTEM_PATH. */
export function commandPath(command: string): string {
  if (command.includes('/')) return resolve(command);
  let path = resolved.get(command);
  if (path) return path;
  for (const dir of SYSTEM_PATH) {
    try {
      accessSync(`${dir}/${command}`, constants.X_OK);
      path = `${dir}/${command}`;
      break;
    } catch {
      // not here
    }
  }
  if (!path) throw Object.assign(new Error(`${command} is not installed in ${SYSTEM_PATH.join(', ')}`), { code: 'ENOENT' });
  resolved.set(command, path);
  return path;
}

/** A command that failed: what it wrote to stderr is kept for the caller's message. */
export class CommandFailed extends Error {
  override name = 'CommandFailed';
  constructor(
    message: string,
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(message);
  }
}

export interface CommandOptions {
  kind?: 'command' | 'docker';
  timeout?: number;
  signal?: AbortSignal;
  maxBuffer?: number;
  killSignal?: NodeJS.Signals;
  cwd?: string;
}

/**
 * Runs a short command to its end and gives what it wrote to stdout. Bounded: killed (with killSignal) after
 * `timeout` ms or when `signal` aborts. Its error names the command and quotes what it wrote to stderr.
 */
export function commandOutput(command: string, args: string[], options: CommandOptions = {}): Promise<string> {
  const { kind = 'command', ...rest } = options;
  return new Promise((resolve, reject) => {
    let file: string;
    try {
      file = commandPath(command);
    } catch (e) {
      reject(e as Error);
      return;
    }
    execFile(file, args, { ...rest, env: childEnvironment(kind) }, (error, stdout, stderr) => {
      if (!error) resolve(stdout);
      else {
        const text = String(stderr).trim();
        const code = typeof error.code === 'number' ? error.code : null;
        reject(new CommandFailed(`${command} ${args[0]} failed: ${text || error.message}`, text, code));
      }
    });
  });
}

export interface StartOptions {
  kind: Exclude<ChildKind, 'docker'>;
  stdio: StdioOptions;
  /** Its own process group, outliving this step: ended by its pid (the group's) and not by the runner's signals. */
  detached?: boolean;
  cwd?: string;
}

/** Starts a long-lived child: a command by name or absolute path, with its kind's environment. */
export function startChild(command: string, args: string[], options: StartOptions): ChildProcess {
  return spawn(commandPath(command), args, {
    cwd: options.cwd,
    detached: options.detached ?? false,
    stdio: options.stdio,
    env: childEnvironment(options.kind),
  });
}

/** The workers this bundle runs as, each started with its argument and the path of its plan. */
export type WorkerKind = 'restore worker' | 'front' | 'prefetch worker';

/**
 * Starts this bundle again, detached, as a worker (`args`: its flag and plan). `secret`, when given, goes to it on
 * its stdin (never in its environment or arguments, which the runner's other processes can read).
 */
export function startWorker(kind: WorkerKind, args: string[], secret?: unknown): ChildProcess {
  const child = spawn(process.execPath, [process.argv[1], ...args], {
    detached: true,
    stdio: [secret === undefined ? 'ignore' : 'pipe', 'ignore', 'ignore'],
    env: childEnvironment(kind),
  });
  if (secret !== undefined) {
    // A worker that failed to start does not read it: that is its exit to report, not this pipe's.
    child.stdin!.on('error', () => {});
    child.stdin!.end(JSON.stringify(secret));
  }
  child.unref();
  return child;
}

/** In a worker: what its starter handed it on stdin (undefined when nothing was). */
export async function receiveSecret<T>(): Promise<T | undefined> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  return text ? (JSON.parse(text) as T) : undefined;
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
