// Reads the timelines bench/trace.mjs writes and cuts them into where the time went: tar (with its zstd) runs,
// transfers to and from the blob store, calls to the cache service's API, docker CLI calls, and the phases of
// the action's main and post steps.
import { readFile } from 'node:fs/promises';

export interface TraceEvent {
  ms: number;
  pid: number;
  kind: string;
  rest: string;
}

export async function readTrace(file: string): Promise<TraceEvent[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const events: TraceEvent[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+) (\d+) (\S+) ?(.*)$/.exec(line);
    if (m) events.push({ ms: Number(m[1]), pid: Number(m[2]), kind: m[3], rest: m[4] });
  }
  return events;
}

/** The events of each traced process, in the order the processes started. */
export function byProcess(events: TraceEvent[]): TraceEvent[][] {
  const groups = new Map<number, TraceEvent[]>();
  for (const e of events) {
    if (!groups.has(e.pid)) groups.set(e.pid, []);
    groups.get(e.pid)!.push(e);
  }
  return [...groups.values()];
}

/** The storage account of the cache service's blob store (Azurite's development account): its paths start with it. */
const BLOB_ACCOUNT = 'devstoreaccount1';

/**
 * The main step's process, the post step's, and any others (the prefetch worker main leaves running), from a
 * job's trace: main starts first; post is the last to start after main ended.
 */
export function stepProcesses(events: TraceEvent[]): { main?: TraceEvent[]; post?: TraceEvent[]; others: TraceEvent[][] } {
  const [main, ...rest] = byProcess(events);
  const mainEnd = main?.find((e) => e.kind === 'end')?.ms ?? Infinity;
  const after = rest.filter((g) => g[0].ms >= mainEnd);
  const post = after[after.length - 1];
  return { main, post, others: rest.filter((g) => g !== post) };
}

export interface Interval {
  start: number;
  end: number;
}

export interface Activity {
  /** tar processes (extracting or creating, zstd included: tar runs it). */
  tar: Interval[];
  /** HTTP transfers to or from the blob store (Azurite), request to end of response. */
  transfer: Interval[];
  /** Twirp calls to the cache service. */
  api: Interval[];
  /** Any other HTTP: the registry's readiness checks, calls to the upstream. */
  net: Interval[];
  /** docker CLI runs. */
  docker: Interval[];
  /** Every other child process (zstd --version probes, sudo, ...). */
  other: Interval[];
  /** Spawned commands by pid, with their start. */
  spawned: { pid: string; command: string; args: string[]; ms: number }[];
  transferBytes: number;
}

/** What a process did, and when; `apiHost` is the cache service's HOST:PORT. */
export function activity(events: TraceEvent[], apiHost: string, from = -Infinity, to = Infinity): Activity {
  const out: Activity = { tar: [], transfer: [], api: [], net: [], docker: [], other: [], spawned: [], transferBytes: 0 };
  const children = new Map<string, { command: string; args: string[]; ms: number }>();
  const requests = new Map<string, { host: string; path: string; ms: number; length: number }>();
  const inWindow = events.filter((e) => e.ms >= from && e.ms <= to);
  for (const e of inWindow) {
    if (e.kind === 'spawn') {
      const [pid, command, ...json] = e.rest.split(' ');
      let args: string[] = [];
      try {
        args = JSON.parse(json.join(' '));
      } catch {
        // keep none
      }
      children.set(pid, { command, args, ms: e.ms });
      out.spawned.push({ pid, command, args, ms: e.ms });
    } else if (e.kind === 'exit') {
      const [pid] = e.rest.split(' ');
      const child = children.get(pid);
      if (!child) continue;
      const interval = { start: child.ms, end: e.ms };
      const name = child.command.split('/').pop() ?? '';
      if (name === 'tar') out.tar.push(interval);
      else if (name === 'docker') out.docker.push(interval);
      else out.other.push(interval);
    } else if (e.kind === 'req') {
      const [id, , host, path = ''] = e.rest.split(' ');
      requests.set(id, { host, path, ms: e.ms, length: 0 });
    } else if (e.kind === 'res') {
      const [id, , length] = e.rest.split(' ');
      const r = requests.get(id);
      if (r) r.length = Number(length) || 0;
    } else if (e.kind === 'done') {
      const r = requests.get(e.rest.split(' ')[0]);
      if (!r) continue;
      const interval = { start: r.ms, end: e.ms };
      if (r.host === apiHost) out.api.push(interval);
      else if (r.path.startsWith(`/${BLOB_ACCOUNT}/`)) {
        out.transfer.push(interval);
        out.transferBytes += r.length;
      } else out.net.push(interval);
    }
  }
  return out;
}

/** Milliseconds covered by at least one of the intervals. */
export function union(intervals: Interval[]): number {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  let total = 0;
  let start = -Infinity;
  let end = -Infinity;
  for (const i of sorted) {
    if (i.start > end) {
      if (end > start) total += end - start;
      start = i.start;
      end = i.end;
    } else end = Math.max(end, i.end);
  }
  if (end > start) total += end - start;
  return total;
}

function firstOut(events: TraceEvent[], pattern: RegExp): TraceEvent | undefined {
  return events.find((e) => e.kind === 'out' && pattern.test(e.rest));
}

export interface MainPhases {
  /** Node starting and loading the bundle: process start to its first action (stepMs - traced covers node's own start and exit). */
  boot: number;
  /** Restoring the cache: index, entries, verification, links, baseline scan (first action to the registry's spawn). */
  restore: number;
  restoreTar: number;
  restoreTransfer: number;
  restoreApi: number;
  /** Other HTTP meanwhile: the upstream probe (run alongside the restore). */
  restoreNet: number;
  /** Restore time not spent in tar, transfers, API calls or the probe: hashing every blob, links, scanning, process spawns. */
  restoreOther: number;
  entriesRestored: number;
  /** From the last entry extracted to the registry's spawn: verification (every blob re-hashed), links, scan, baseline. */
  afterLastEntry: number;
  /** Registry spawn to its answering /v2/. */
  registryStart: number;
  /** daemon.json merged, SIGHUP, docker info until the mirror is live. */
  daemonReload: number;
  dockerInfoCalls: number;
  /** After the mirror is live until the process ends. */
  finish: number;
}

/** The phases of the action's main step, from its trace; NaN where a marker is missing. */
export function mainPhases(events: TraceEvent[], stepMs: number, apiHost: string): MainPhases {
  const start = events.find((e) => e.kind === 'start')?.ms ?? NaN;
  const end = events.find((e) => e.kind === 'end')?.ms ?? NaN;
  const first = events.find((e) => e.kind === 'spawn' || e.kind === 'req')?.ms ?? NaN;
  const all = activity(events, apiHost);
  const registrySpawn = all.spawned.find((s) => s.args[0] === 'serve')?.ms ?? NaN;
  const listening = firstOut(events, /Registry mirror listening/)?.ms ?? NaN;
  const live = firstOut(events, /dockerd now pulls/)?.ms ?? NaN;
  const restore = activity(events, apiHost, first, registrySpawn);
  const busy = union([...restore.tar, ...restore.transfer, ...restore.api, ...restore.net, ...restore.other]);
  return {
    boot: stepMs - (end - start) + (first - start),
    restore: registrySpawn - first,
    restoreTar: union(restore.tar),
    restoreTransfer: union(restore.transfer),
    restoreApi: union(restore.api),
    restoreNet: union(restore.net),
    restoreOther: registrySpawn - first - busy,
    entriesRestored: restore.tar.length,
    afterLastEntry: restore.tar.length ? registrySpawn - Math.max(...restore.tar.map((i) => i.end)) : NaN,
    registryStart: listening - registrySpawn,
    daemonReload: live - listening,
    dockerInfoCalls: activity(events, apiHost, listening, live).docker.length,
    finish: end - live,
  };
}

export interface PostPhases {
  /** Node starting, loading the bundle, stopping the registry (until its first child or request), exiting. */
  boot: number;
  /** Putting daemon.json back and reloading, reading the storage and the access log, upstream calls: until the first save. */
  stopAndRestore: number;
  /** First to last cache call or tar of the save. */
  save: number;
  saveTar: number;
  saveTransfer: number;
  saveApi: number;
  entriesSaved: number;
  /** HTTP calls other than the cache's (the upstream: quota, visibility checks), whole step. */
  net: number;
  netCalls: number;
  finish: number;
}

export function postPhases(events: TraceEvent[], stepMs: number, apiHost: string): PostPhases {
  const start = events.find((e) => e.kind === 'start')?.ms ?? NaN;
  const end = events.find((e) => e.kind === 'end')?.ms ?? NaN;
  const first = events.find((e) => e.kind === 'spawn' || e.kind === 'req')?.ms ?? end;
  const all = activity(events, apiHost);
  const saveEvents = [...all.tar, ...all.transfer, ...all.api];
  const saveStart = saveEvents.length ? Math.min(...saveEvents.map((i) => i.start)) : end;
  const saveEnd = saveEvents.length ? Math.max(...saveEvents.map((i) => i.end)) : end;
  return {
    boot: stepMs - (end - start) + (first - start),
    stopAndRestore: saveStart - first,
    save: saveEnd - saveStart,
    saveTar: union(all.tar),
    saveTransfer: union(all.transfer),
    saveApi: union(all.api),
    entriesSaved: all.tar.length,
    net: union(all.net),
    netCalls: all.net.length,
    finish: end - saveEnd,
  };
}
