// Network namespaces the tests make (`ip netns add`), and what runs in them: a plain one stands in for a runner's
// own network (its docker0 included) without touching the machine's; hub-namespace.ts builds Docker Hub's names on one.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readlink, stat } from 'node:fs/promises';
import { run, type Wrap } from './process.js';

/** A network namespace a process runs in: its name (`ip -n NAME`) and the wrap that puts a command there. */
export interface NetworkPlace {
  name: string;
  wrap: Wrap;
}

export interface Netns extends NetworkPlace {
  /** /run/netns/NAME, for nsenter --net=. */
  path: string;
  /** `ip -n NAME ARGS`; throws with ip's words when it fails, else resolves to its stdout. */
  ip(...args: string[]): Promise<string>;
  /** Ends what runs inside (by pid) and deletes the namespace. */
  stop(): Promise<void>;
}

/** `ip ARGS`, throwing with ip's words when it fails. */
export async function ip(...args: string[]): Promise<string> {
  const r = await run('ip', args, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.code} ${r.stderr}`);
  return r.stdout;
}

/** A new network namespace with its loopback up; `wrap` runs a command in it (nsenter execs: same pid). */
export async function startNetns(prefix: string): Promise<Netns> {
  const name = `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const path = `/run/netns/${name}`;
  await ip('netns', 'add', name);
  try {
    await ip('-n', name, 'link', 'set', 'lo', 'up');
  } catch (error) {
    await deleteNetns(name);
    throw error;
  }
  return {
    name,
    path,
    wrap: (command, args) => ({ command: 'nsenter', args: [`--net=${path}`, '--', command, ...args] }),
    ip: (...args) => ip('-n', name, ...args),
    stop: () => deleteNetns(name),
  };
}

/** Processes whose network namespace is the one at netnsPath. */
export async function processesIn(netnsPath: string): Promise<number[]> {
  const ino = await stat(netnsPath).then(
    (s) => s.ino,
    () => undefined,
  );
  if (ino === undefined) return [];
  const own = await readlink('/proc/self/ns/net').catch(() => '');
  const wanted = `net:[${ino}]`;
  if (own === wanted) return []; // never ourselves
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    if ((await readlink(`/proc/${name}/ns/net`).catch(() => '')) === wanted) pids.push(Number(name));
  }
  return pids;
}

/** Ends what is left in a namespace of ours (only what a test started there can be), then deletes it. */
export async function deleteNetns(name: string): Promise<void> {
  const path = `/run/netns/${name}`;
  for (let round = 0; round < 50; round++) {
    const pids = await processesIn(path);
    if (!pids.length) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const deleted = await run('ip', ['netns', 'delete', name], { timeoutMs: 10_000 });
  if (deleted.code !== 0 && existsSync(path)) throw new Error(`ip netns delete ${name}: ${deleted.code} ${deleted.stderr}`);
}
