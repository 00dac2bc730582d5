// Start and stop the real parts the tests stand in for the outside world. Every process started here is
// ended by its own pid, and every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export interface Started {
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | string | null>;
  /** True once the process has ended. */
  ended(): boolean;
  stop(): Promise<void>;
}

/**
 * Turns a command line into one that runs it somewhere else (e.g. inside a network namespace, see
 * hub-namespace.ts); the wrapper must exec, so the pid spawned is the command's.
 */
export type Wrap = (command: string, args: string[]) => { command: string; args: string[] };

/** Where a started process's output goes: one file for both streams, or one file each. */
export type LogFiles = string | { stdout: string; stderr: string };

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** How long stop() waits after SIGTERM before SIGKILL (default 10 s). */
  graceMs?: number;
}

/**
 * Spawns a process with its output appended to log files: a string sends stdout and stderr to that one file,
 * { stdout, stderr } sends each to its own file. The fourth argument is the environment (as before) or options.
 */
export function startProcess(
  command: string,
  args: string[],
  logFile: LogFiles,
  envOrOptions: NodeJS.ProcessEnv | StartOptions = process.env,
): Started {
  const options: StartOptions = isStartOptions(envOrOptions) ? envOrOptions : { env: envOrOptions };
  const outFd = openSync(typeof logFile === 'string' ? logFile : logFile.stdout, 'a');
  const errFd = typeof logFile === 'string' ? outFd : openSync(logFile.stderr, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { stdio: ['ignore', outFd, errFd], env: options.env ?? process.env });
  } finally {
    closeSync(outFd);
    if (errFd !== outFd) closeSync(errFd);
  }
  const exited = new Promise<number | string | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal));
    // A command that cannot be spawned at all (ENOENT) emits 'error' and never 'exit'.
    child.once('error', () => resolve(child.exitCode ?? 'spawn error'));
  });
  let done = false;
  void exited.then(() => (done = true));
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  return {
    pid: child.pid,
    child,
    exited,
    ended: () => done,
    stop: () => stopProcess(child, exited, options.graceMs),
  };
}

function isStartOptions(value: NodeJS.ProcessEnv | StartOptions): value is StartOptions {
  const keys = Object.keys(value);
  return keys.length > 0 && keys.every((k) => k === 'env' || k === 'graceMs');
}

async function stopProcess(child: ChildProcess, exited: Promise<unknown>, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, graceMs, 'timeout')));
  const outcome = await Promise.race([exited, timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Polls check() until it returns true, at most timeoutMs. With `unless`, gives up at once if that process ends
 * first (a server that died while we wait for it to answer).
 */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 30_000,
  everyMs = 100,
  unless?: Started,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (unless?.ended()) throw new Error(`${what}: process ${unless.pid} exited (${await unless.exited}) before it was ready`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export interface RunResult {
  code: number | string | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion and captures its output; killed (by its pid) after timeoutMs. */
export async function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string | Buffer } = {},
): Promise<RunResult> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  child.stdin!.on('error', () => {});
  child.stdin!.end(options.input ?? '');
  const timeoutMs = options.timeoutMs ?? 60_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const code = await new Promise<number | string | null>((resolve) => {
    child.once('close', (c, signal) => resolve(c ?? signal));
    child.once('error', (e) => {
      err.push(Buffer.from(String(e)));
      resolve('spawn error');
    });
  });
  clearTimeout(timer);
  const stderr = Buffer.concat(err).toString() + (timedOut ? `\n(killed after ${timeoutMs} ms)` : '');
  return { code, stdout: Buffer.concat(out).toString(), stderr };
}

/** True once GET url answers with any HTTP status. */
export async function answers(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  await res.arrayBuffer();
  return true;
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** True while pid is a live process (a zombie waiting to be reaped does not count). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
