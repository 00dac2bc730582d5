// What must hold after every post step, whatever went wrong in the job; and where a secret must never be.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRunning } from './process.js';
import { mirrorsOf, type StepResult } from './runner.js';
import type { Runner, World } from './world.js';

/** The daemon's config byte for byte, no mirror live, every mirror stopped, nothing left in RUNNER_TEMP. */
export async function assertLeftAsItWas(
  runner: Runner,
  daemonJson: string,
  main: StepResult,
  post: StepResult,
  runnerTemp = runner.runnerTemp,
): Promise<void> {
  assert.equal(post.exitCode, 0, post.stdout);
  assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), daemonJson, 'daemon.json byte for byte');
  assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors ?? [], [], 'no mirror left live');
  for (const mirror of mirrorsOf(main)) assert.ok(!isRunning(mirror.pid), `the ${mirror.registry} mirror is stopped`);
  for (const [worker, pid] of Object.entries(workersOf(main))) assert.ok(!isRunning(pid), `the ${worker} is stopped`);
  assert.deepEqual(await readdir(runnerTemp), [], 'nothing left in RUNNER_TEMP');
}

/** The detached workers a main step started (besides the registries), by what they are. */
export function workersOf(main: StepResult): Record<string, number> {
  const pid = (name: string) => (main.state[name] ? (JSON.parse(main.state[name]) as { pid: number } | number) : undefined);
  const pids = { 'restore worker': pid('restore'), "mirrors' front": pid('gate'), 'prefetch worker': pid('prefetch') };
  return Object.fromEntries(
    Object.entries(pids).flatMap(([worker, p]) => (p === undefined ? [] : [[worker, typeof p === 'number' ? p : p.pid]])),
  );
}

/**
 * Runs a job and asserts that the secret, plain or base64 (alone and as USER:SECRET), is nowhere it leaves or shows:
 * the steps' logs (the ::add-mask:: command aside), outputs, state and summary; the files under RUNNER_TEMP during
 * the job (but the registries' configs, which must be mode 0600) and after it; the cache entries it saved.
 */
export async function assertSecretNowhere(
  world: World,
  runner: Runner,
  secret: { user: string; token: string },
  inputs: Record<string, string>,
  steps: (main: StepResult) => Promise<void>,
): Promise<void> {
  const forms = [
    secret.token,
    Buffer.from(secret.token).toString('base64'),
    Buffer.from(`${secret.user}:${secret.token}`).toString('base64'),
  ];
  const during: string[] = [];
  const entriesBefore = new Set(world.cache.entries().map((e) => e.key));
  const isConfig = (f: string) => /\/registry(-[^/]*)?\.yml$/.test(f);
  const { main, post } = await runner.job(inputs, async (main) => {
    await steps(main);
    const files = filesUnder(runner.runnerTemp);
    during.push(...files.filter((f) => !isConfig(f)).map((f) => readFileSync(f, 'latin1')));
    const configs = files.filter(isConfig);
    assert.ok(configs.length > 0);
    for (const config of configs) assert.equal(statSync(config).mode & 0o777, 0o600, config);
  });
  const mask = `::add-mask::${secret.token}\n`;
  const logs = (step: StepResult) => [
    step.stdout.replace(mask, ''),
    step.stderr,
    JSON.stringify(step.outputs),
    JSON.stringify(step.state),
    step.summary,
  ];
  const left = filesUnder(runner.runnerTemp).map((f) => readFileSync(f, 'latin1'));
  const saved = world.cache.entries().filter((e) => !entriesBefore.has(e.key));
  assert.ok(saved.length > 0, 'the job saved something to look into');
  const archives = await Promise.all(
    saved.map(async (e) =>
      execFileSync('zstd', ['-d', '--long=30', '-c'], {
        input: await world.cache.entryContent(e.key),
        maxBuffer: 256 * 1024 * 1024,
      }).toString('latin1'),
    ),
  );
  const everything = [...logs(main), ...logs(post), ...during, ...left, ...archives];
  for (const form of forms) assert.equal(everything.filter((text) => text.includes(form)).length, 0, `"${form}" was found`);
  assert.deepEqual(left, [], 'nothing of ours is left in RUNNER_TEMP');
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

/** A process's environment, as /proc/PID/environ shows it. */
export function environmentOf(pid: number): Record<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').filter(Boolean);
  return Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

/** Every process on the machine whose environment or command line holds one of the secrets: "PID where: command line". */
export function processesHolding(secrets: string[]): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    const read = (file: string) => {
      try {
        return readFileSync(`/proc/${pid}/${file}`, 'latin1');
      } catch {
        return ''; // gone meanwhile
      }
    };
    const cmdline = read('cmdline');
    for (const [where, text] of [
      ['environ', read('environ')],
      ['cmdline', cmdline],
    ]) {
      if (secrets.some((secret) => text.includes(secret))) found.push(`${pid} ${where}: ${cmdline.replace(/\0/g, ' ').slice(0, 120)}`);
    }
  }
  return found;
}

const SAMPLER = fileURLToPath(new URL('./proc-sampler.mjs', import.meta.url));
const STEP = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

/** What the process sampler saw: how many times it looked at every process, and which held a secret. */
export interface Sampled {
  rounds: number;
  found: string[];
}

/**
 * Looks at every process's /proc/PID/environ and command line every `intervalMs` (see proc-sampler.mjs) until
 * `stop`, for the secrets (plain, and base64 alone and as USER:SECRET). Exempt: the step's own process, in every
 * phase of the wrap that starts it, and the wrap's own `mount` commands.
 */
export async function sampleProcesses(
  secrets: string[],
  options: { user?: string; intervalMs?: number; maxMs?: number } = {},
): Promise<{ stop(): Promise<Sampled> }> {
  const forms = secrets.flatMap((s) => [
    s,
    Buffer.from(s).toString('base64'),
    ...(options.user ? [Buffer.from(`${options.user}:${s}`).toString('base64')] : []),
  ]);
  const child = spawn(process.execPath, [SAMPLER], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
  child.stdin.end(
    JSON.stringify({
      secrets: forms,
      parent: process.pid,
      step: STEP,
      intervalMs: options.intervalMs ?? 2,
      maxMs: options.maxMs ?? 600_000,
    }),
  );
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += String(chunk)));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  for (let i = 0; i < 200 && !out.startsWith('sampling\n'); i++) await new Promise((r) => setTimeout(r, 25));
  if (!out.startsWith('sampling\n')) throw new Error('the process sampler did not start');
  return {
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return JSON.parse(out.slice('sampling\n'.length)) as Sampled;
    },
  };
}
