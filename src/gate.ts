// The mirrors' front while the cache restores in the background. Each mirror's port is held by this worker (this
// bundle again, detached, with --gate and the path of its plan), which passes every request on to its registry,
// except one for an image still being restored: that waits until the image is in place, or the restore ends.
// So a pull right after the main step is served from the cache, as when main restored everything first, and a
// pull of an image the cache does not hold goes straight on. Once the restore is done, new connections are
// joined to the registry byte for byte, with no HTTP parsing in between.
import { spawn } from 'node:child_process';
import { Agent, createServer as createHttpServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { readProgress } from './background-restore.js';
import { contentOf, imageKey, type CachedImage } from './cache-index.js';
import { DOCKER_HUB, splitRepository } from './images.js';
import { isRunning } from './processes.js';
import { assertPortFree, freePort } from './registry.js';
import type { MirrorState } from './state.js';

const GATE_ARGUMENT = '--gate';
/** How often a waiting request looks at the restore's progress. */
const POLL_MS = 50;

export interface Front {
  registry: string;
  address: string;
  /** The port clients use. */
  port: number;
  /** The port of the registry behind it, on the same address. */
  target: number;
}

/** An image being restored, as its registry's clients name it in their requests. */
export interface GatedImage {
  registry: string;
  /** The repository as the registry sees it (library/alpine, not docker.io/library/alpine). */
  name: string;
  reference: string;
  content: string[];
  /** Its key, as the restore's progress records name it. */
  key: string;
}

export interface GatePlan {
  workDir: string;
  fronts: Front[];
  images: GatedImage[];
  progress: string;
  /** Epoch ms: no request waits past it (the restore stops itself by then). */
  deadline: number;
}

export function gatedImages(images: CachedImage[]): GatedImage[] {
  return images.map((image) => ({ ...splitRepository(image.repository), name: splitRepository(image.repository).repository, reference: image.reference, content: contentOf(image), key: imageKey(image) }));
}

/** The image a request must wait for, if any: a manifest by the image's tag or digest, or a blob it names, under its repository. */
export function waitsFor(pending: Iterable<GatedImage>, registry: string, path: string): GatedImage | undefined {
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/?#]+)/.exec(path);
  if (!m) return undefined;
  const [, name, , reference] = m;
  for (const image of pending) if (image.registry === registry && image.name === name && (image.reference === reference || image.content.includes(reference))) return image;
  return undefined;
}

/**
 * Puts a front before each mirror: the registries keep their ports, the clients get the fronts'. Docker Hub's
 * front takes the `port` input when it is set. `spawned` gets the worker's pid as soon as it exists.
 */
export async function frontMirrors(mirrors: MirrorState[], o: Omit<GatePlan, 'fronts'> & { address: string; hubPort: number }, spawned: (pid: number) => void): Promise<MirrorState[]> {
  const fronts = await Promise.all(
    mirrors.map(async (m) => ({
      registry: m.registry,
      address: o.address,
      port: m.registry === DOCKER_HUB && o.hubPort ? (await assertPortFree(o.hubPort, o.address), o.hubPort) : await freePort(o.address),
      target: Number(new URL(m.url).port),
    })),
  );
  await startGate({ workDir: o.workDir, fronts, images: o.images, progress: o.progress, deadline: o.deadline }, spawned);
  return mirrors.map((m, i) => ({ ...m, url: `http://${o.address}:${fronts[i].port}` }));
}

/** Starts the worker detached, with no environment of the job's; returns once every front answers. */
async function startGate(plan: GatePlan, spawned: (pid: number) => void, timeoutMs = 10_000): Promise<void> {
  const planFile = join(plan.workDir, 'gate-plan.json');
  await writeFile(planFile, JSON.stringify(plan), { mode: 0o600 });
  const child = spawn(process.execPath, [process.argv[1], GATE_ARGUMENT, planFile], { detached: true, stdio: 'ignore', env: {} });
  child.unref();
  spawned(child.pid!);
  const deadline = Date.now() + timeoutMs;
  for (const front of plan.fronts) {
    while (!(await answers(`http://${front.address}:${front.port}/v2/`))) {
      if (Date.now() > deadline) {
        await stopGate(child.pid!);
        throw new Error(`the mirrors' front did not answer on ${front.address}:${front.port} within ${timeoutMs / 1000} s`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.status === 200 || res.status === 401;
  } catch {
    return false;
  }
}

/** Where the worker records the first request it held for each image: one JSON line each. */
function gateLog(workDir: string): string {
  return join(workDir, 'gate-held.jsonl');
}

/** When the job first asked for each image the front held (image key -> epoch ms). */
export async function heldImages(workDir: string): Promise<Map<string, number>> {
  const lines = (await readFile(gateLog(workDir), 'utf8').catch(() => '')).split('\n');
  const held = new Map<string, number>();
  for (const line of lines) {
    try {
      const { image, at } = JSON.parse(line) as { image: string; at: number };
      if (!held.has(image)) held.set(image, at);
    } catch {
      // a line being written as it is read
    }
  }
  return held;
}

export function gatePlanFile(argv: string[]): string | undefined {
  return argv[2] === GATE_ARGUMENT ? argv[3] : undefined;
}

/** Ends the worker (quiet when it is gone; a pid now another program's is left alone). */
export async function stopGate(pid: number): Promise<void> {
  if (await isRunning(pid, GATE_ARGUMENT)) process.kill(-pid, 'SIGKILL');
}

/** The worker: a front per mirror, until post ends it. */
export async function runGate(planFile: string): Promise<void> {
  const plan = JSON.parse(await readFile(planFile, 'utf8')) as GatePlan;
  const pending = new Map(plan.images.map((i) => [i.key, i]));
  let restoring = true;
  let look: Promise<void> | null = null;
  // One look at the progress file at a time, shared by every waiting request.
  const lookAgain = () =>
    (look ??= new Promise<void>((resolve) => setTimeout(resolve, POLL_MS))
      .then(() => readProgress(plan.progress))
      .then((p) => {
        for (const i of p.images) pending.delete(i.image);
        if (p.done || Date.now() >= plan.deadline) restoring = false;
      })
      .finally(() => (look = null)));
  // The first request held for each image, for the report: the registry's log shows it only once released.
  const held = new Set<string>();
  const inPlace = async (registry: string, path: string) => {
    const image = restoring ? waitsFor(pending.values(), registry, path) : undefined;
    if (image && !held.has(image.key)) {
      held.add(image.key);
      await appendFile(gateLog(plan.workDir), `${JSON.stringify({ image: image.key, at: Date.now() })}\n`);
    }
    while (restoring && waitsFor(pending.values(), registry, path)) await lookAgain();
  };
  await Promise.all(plan.fronts.map((front) => serve(front, inPlace, () => restoring)));
  await new Promise(() => {});
}

async function serve(front: Front, inPlace: (registry: string, path: string) => Promise<void>, restoring: () => boolean): Promise<Server> {
  const agent = new Agent({ keepAlive: true });
  const http = createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    void inPlace(front.registry, req.url ?? '').then(() => pass(req, res, front, agent));
  });
  const server = createServer((socket: Socket) => {
    if (restoring()) return http.emit('connection', socket);
    const registry = connect(front.target, front.address);
    const end = () => (socket.destroy(), registry.destroy());
    socket.on('error', end);
    registry.on('error', end);
    socket.pipe(registry).pipe(socket);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(front.port, front.address, resolve));
  return server;
}

/** Headers of one connection, not of the request: not passed on. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade']);

function pass(req: IncomingMessage, res: ServerResponse, front: Front, agent: Agent): void {
  const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => !HOP_BY_HOP.has(name)));
  const forward = request({ host: front.address, port: front.target, method: req.method, path: req.url, headers, agent }, (answer) => {
    const raw = answer.rawHeaders.flatMap((value, i, all) => (i % 2 === 0 && !HOP_BY_HOP.has(value.toLowerCase()) ? [value, all[i + 1]] : []));
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, raw);
    pipeline(answer, res, () => {});
  });
  forward.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
  pipeline(req, forward, () => {});
}
