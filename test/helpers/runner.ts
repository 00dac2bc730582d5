// Runs the bundled action (dist/) the way the Actions runner does: INPUT_* from `with:` over action.yml's
// defaults, file commands for outputs, state and the job summary, STATE_* handed from main to post.
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { Wrap } from './process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface StepResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
  warnings: string[];
  errors: string[];
  /** Milliseconds the step took. */
  ms: number;
}

export interface StepOptions {
  inputs: Record<string, string>;
  /** The step's environment on top of this process's (cache service, DOCKER_HOST, RUNNER_TEMP, ...). */
  env: Record<string, string>;
  /** A directory of this step's own for its file commands. */
  dir: string;
  /** Kill the main step (SIGKILL) this many ms after it started: a step cut off half-way. */
  killMainAfterMs?: number;
  /** Runs the step's node process through this (e.g. HubNamespace.wrap: inside a network namespace); same pid. */
  wrap?: Wrap;
  /** The action's bundle to run: this checkout's dist/index.js unless another build is named (the bench's --before). */
  action?: string;
}

/** Runs main, then `between` (the job's own steps), then post; post gets the state main saved. */
export async function runJob(
  options: StepOptions,
  between: (main: StepResult) => Promise<void> = async () => {},
): Promise<{ main: StepResult; post: StepResult }> {
  const main = await runStep('main', options, {}, options.killMainAfterMs);
  // The runner runs the post step whatever happened in between (post-if: always()).
  const failure = await between(main).then(
    () => undefined,
    (e: unknown) => e ?? new Error('the job failed'),
  );
  const post = await runStep('post', options, main.state);
  if (failure) throw failure;
  return { main, post };
}

export async function runStep(
  phase: 'main' | 'post',
  options: StepOptions,
  state: Record<string, string>,
  killAfterMs = 300_000,
): Promise<StepResult> {
  const dir = join(options.dir, phase);
  await mkdir(dir, { recursive: true });
  const files = { GITHUB_OUTPUT: join(dir, 'output'), GITHUB_STATE: join(dir, 'state'), GITHUB_STEP_SUMMARY: join(dir, 'summary.md') };
  await Promise.all(Object.values(files).map((f) => writeFile(f, '')));
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...options.env, ...files };
  for (const [name, value] of Object.entries(await inputsWithDefaults(options.inputs))) env[`INPUT_${name.toUpperCase()}`] = value;
  for (const [name, value] of Object.entries(state)) env[`STATE_${name}`] = value;
  const started = Date.now();
  const { exitCode, stdout, stderr } = await new Promise<{ exitCode: number; stdout: string; stderr: string }>((resolve) => {
    const plain = { command: process.execPath, args: [options.action ?? join(ROOT, 'dist/index.js')] };
    const { command, args } = options.wrap ? options.wrap(plain.command, plain.args) : plain;
    execFile(command, args, { env, maxBuffer: 64 * 1024 * 1024, timeout: killAfterMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
      resolve({ exitCode: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  const ms = Date.now() - started;
  const commands = (kind: string) =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith(`::${kind}`))
      .map((l) => l.slice(l.indexOf('::', 2) + 2));
  return {
    exitCode,
    stdout,
    stderr,
    outputs: parseFileCommands(await readFile(files.GITHUB_OUTPUT, 'utf8')),
    state: parseFileCommands(await readFile(files.GITHUB_STATE, 'utf8')),
    summary: await readFile(files.GITHUB_STEP_SUMMARY, 'utf8'),
    warnings: commands('warning'),
    errors: commands('error'),
    ms,
  };
}

/** The inputs the runner passes: every input action.yml declares, with its default unless `with:` sets it. */
async function inputsWithDefaults(given: Record<string, string>): Promise<Record<string, string>> {
  const action = parse(await readFile(join(ROOT, 'action.yml'), 'utf8')) as { inputs: Record<string, { default?: string }> };
  for (const name of Object.keys(given)) if (!(name in action.inputs)) throw new Error(`action.yml declares no input named ${name}`);
  return Object.fromEntries(Object.entries(action.inputs).map(([name, spec]) => [name, given[name] ?? String(spec.default ?? '')]));
}

/** Parses `name<<DELIMITER\nvalue\nDELIMITER` (and `name=value`) file commands; the last value of a name wins. */
export function parseFileCommands(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=<]+)<<(.+)$/.exec(lines[i]);
    if (heredoc) {
      const end = lines.indexOf(heredoc[2], i + 1);
      result[heredoc[1]] = lines.slice(i + 1, end).join('\n');
      i = end;
    } else if (lines[i].includes('=')) {
      result[lines[i].slice(0, lines[i].indexOf('='))] = lines[i].slice(lines[i].indexOf('=') + 1);
    }
  }
  return result;
}

/** The mirrors a main step recorded for post: one per registry, with the port of its URL. */
export function mirrorsOf(main: StepResult): { registry: string; pid: number; url: string; port: number }[] {
  const mirrors = JSON.parse(main.state.mirrors || '[]') as { registry: string; pid: number; url: string }[];
  return mirrors.map((m) => ({ ...m, port: Number(new URL(m.url).port) }));
}

/** The docker.io mirror a main step started; throws when it started none. */
export function hubMirror(main: StepResult): { registry: string; pid: number; url: string; port: number } {
  const mirror = mirrorsOf(main).find((m) => m.registry === 'docker.io');
  if (!mirror) throw new Error(`main started no docker.io mirror: ${main.state.mirrors ?? '(no mirrors recorded)'}`);
  return mirror;
}
