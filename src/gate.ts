// The mirrors' front while the cache restores in the background. Each mirror's port is held by this worker (this
// bundle again, detached, with --gate and the path of its plan), which passes every request on to its registry,
// except one for an image still being restored: that waits until the image is in place, or the restore ends.
// So a pull right after the main step is served from the cache, as when main restored everything first, and a
// pull of an image the cache does not hold goes straight on. Once the restore is done, new connections are
// joined to the registry byte for byte, with no HTTP parsing in between. Any container may reach it (listen:
// docker-bridge), and a front that dies frees the port for anyone: so what clients can make it hold is bounded
// (FRONT_BOUNDS), and a client past a bound gets a short answer or a closed connection, never the worker's memory.
import { createServer as createHttpServer, request, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { appendFile, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { heldFile, readProgress } from './background-restore.js';
import { pollUntil } from './bounded.js';
import { contentOf, imageKey, type CachedImage } from './cache-index.js';
import { DOCKER_HUB, splitRepository } from './images.js';
import { isRunning, startWorker } from './processes.js';
import { assertPortFree, freePort } from './registry.js';
import type { MirrorState } from './state.js';

const GATE_ARGUMENT = '--gate';
/** How often a waiting request looks at the restore's progress. */
const POLL_MS = 50;

export interface Front {
  registry: string;
  address: string;
  /** The port clients use: 0 for one the worker's listen picks. */
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
  return images.map((image) => ({
    ...splitRepository(image.repository),
    name: splitRepository(image.repository).repository,
    reference: image.reference,
    content: contentOf(image),
    key: imageKey(image),
  }));
}

/** The image a request must wait for, if any: a manifest by the image's tag or digest, or a blob it names, under its repository. */
export function waitsFor(pending: Iterable<GatedImage>, registry: string, path: string): GatedImage | undefined {
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/?#]+)/.exec(path);
  if (!m) return undefined;
  const [, name, , reference] = m;
  for (const image of pending)
    if (image.registry === registry && image.name === name && (image.reference === reference || image.content.includes(reference)))
      return image;
  return undefined;
}

/**
 * A front for each registry: Docker Hub's on the `port` input when it is set, the others on a port the worker's own
 * listen picks (no other process can take it between choosing and binding); each registry behind on a free port.
 */
export async function planFronts(registries: string[], address: string, hubPort: number): Promise<Front[]> {
  const port = async (registry: string) => (registry === DOCKER_HUB && hubPort ? (await assertPortFree(hubPort, address), hubPort) : 0);
  return Promise.all(
    registries.map(async (registry) => ({ registry, address, port: await port(registry), target: await freePort(address) })),
  );
}

/**
 * Starts the worker detached, with none of the job's environment but RUNNER_TRACKING_ID, and returns at once: it loads while the registries
 * start. `spawned` gets its pid.
 */
export async function startGate(plan: GatePlan, spawned: (pid: number) => void): Promise<void> {
  const planFile = join(plan.workDir, 'gate-plan.json');
  await writeFile(planFile, JSON.stringify(plan), { mode: 0o600 });
  spawned(startWorker('front', [GATE_ARGUMENT, planFile]).pid!);
}

/** What the worker writes once every front listens: the port of each, or why one could not listen. */
interface Listening {
  ports?: Record<string, number>;
  error?: string;
}

function listeningFile(workDir: string): string {
  return join(workDir, 'gate-listening.json');
}

/** The mirrors as clients reach them, through their fronts, once each front passes a request on to its registry. */
export async function throughFronts(mirrors: MirrorState[], workDir: string, address: string, timeoutMs = 10_000): Promise<MirrorState[]> {
  const deadline = Date.now() + timeoutMs;
  const timedOut = (what: string) => new Error(`the mirrors' front did not ${what} within ${timeoutMs / 1000} s`);
  let listening: Listening | undefined;
  const read = async () =>
    !!(listening = await readFile(listeningFile(workDir), 'utf8').then(
      (text) => JSON.parse(text) as Listening,
      () => undefined,
    ));
  if (!(await pollUntil(read, timeoutMs, 20))) throw timedOut('listen');
  if (listening!.error) throw new Error(`the mirrors' front could not listen: ${listening!.error}`);
  return Promise.all(
    mirrors.map(async (m) => {
      const url = `http://${address}:${listening!.ports![m.registry]}`;
      if (!(await pollUntil(() => answers(`${url}/v2/`), deadline - Date.now(), 20))) throw timedOut(`answer on ${url}`);
      return { ...m, url };
    }),
  );
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

export function gatePlanFile(argv: string[]): string | undefined {
  return argv[2] === GATE_ARGUMENT ? argv[3] : undefined;
}

/** Ends the worker (quiet when it is gone; a pid now another program's is left alone). */
export async function stopGate(pid: number): Promise<void> {
  if (await isRunning(pid, GATE_ARGUMENT)) process.kill(-pid, 'SIGKILL');
}

/** What one client, or all of them together, can make the worker hold: it must outlive every one of them. */
export const FRONT_BOUNDS = {
  /** Connections open at once, over every front; one more is answered 503 and closed. */
  connections: 256,
  /** Requests held at once, over every front; one more is answered 503. A connection holds at most one. */
  held: 128,
  /** From a connection's start, or the end of its last response, to the whole head of its next request. */
  headMs: 10_000,
  /** No byte either way for this long, but while a request is held, and the connection is closed. */
  idleMs: 60_000,
};

/** A count of things held at once, up to a maximum. */
export class Slots {
  private taken = 0;
  constructor(readonly max: number) {}
  /** Takes one; false when all are taken. */
  take(): boolean {
    if (this.taken >= this.max) return false;
    this.taken++;
    return true;
  }
  give(): void {
    this.taken = Math.max(0, this.taken - 1);
  }
}

/**
 * A GET or HEAD that says it has a body (by Transfer-Encoding, or a Content-Length other than 0). Passed on, its
 * body would go without framing, and the registry would read it as the next request.
 */
export function bodyOnRead(method: string | undefined, headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length'];
  return (
    (method === 'GET' || method === 'HEAD') && (headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0'))
  );
}

/** The restore as the fronts see it. */
interface Restore {
  running(): boolean;
  /** The image a request for `path` waits for, while the restore runs. */
  pendingFor(registry: string, path: string): GatedImage | undefined;
  /** Resolves once nothing pending names the path, the restore ends, or `gone` says the client left. */
  inPlace(registry: string, path: string, gone: () => boolean): Promise<void>;
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
  const pendingFor = (registry: string, path: string) => (restoring ? waitsFor(pending.values(), registry, path) : undefined);
  const restore: Restore = {
    running: () => restoring,
    pendingFor,
    inPlace: async (registry, path, gone) => {
      const image = pendingFor(registry, path);
      if (image && !held.has(image.key)) {
        held.add(image.key);
        // Only the report reads it: a write that fails must not fail the request.
        await appendFile(heldFile(plan.workDir), `${JSON.stringify({ image: image.key, at: Date.now() })}\n`).catch(() => undefined);
      }
      while (!gone() && pendingFor(registry, path)) await lookAgain();
    },
  };
  const limits = { connections: new Slots(FRONT_BOUNDS.connections), held: new Slots(FRONT_BOUNDS.held) };
  const listening: Listening = {};
  try {
    const ports = await Promise.all(plan.fronts.map((front) => serve(front, restore, limits)));
    listening.ports = Object.fromEntries(plan.fronts.map((f, i) => [f.registry, ports[i]]));
  } catch (e) {
    listening.error = (e as Error).message;
  }
  const written = `${listeningFile(plan.workDir)}.${process.pid}`;
  await writeFile(written, JSON.stringify(listening));
  await rename(written, listeningFile(plan.workDir));
  if (listening.error) return;
  await new Promise(() => {});
}

/** A response the front gives itself, short, and the connection closed after it. */
function refusal(status: number, reason: string): string {
  const body = `${reason}\n`;
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/** A connection while the front reads its requests: whether one is in progress, and the deadline for the next head. */
interface Connection {
  busy: boolean;
  head?: NodeJS.Timeout;
}

/** Listens for one front; returns its port. */
async function serve(front: Front, restore: Restore, limits: { connections: Slots; held: Slots }): Promise<number> {
  const connections = new WeakMap<Socket, Connection>();
  const awaitHead = (socket: Socket, connection: Connection) => {
    clearTimeout(connection.head);
    connection.head = setTimeout(() => socket.destroy(), FRONT_BOUNDS.headMs);
  };
  // No keepAliveTimeout: it would reset the socket's timeout at each request; the head deadline above bounds the wait.
  const http = createHttpServer({ keepAliveTimeout: 0 }, (req, res) => {
    const socket = req.socket;
    const connection = connections.get(socket)!;
    // Pipelined behind a request in progress: one at a time per connection, or a client could have any number held.
    if (connection.busy) return socket.destroy();
    connection.busy = true;
    clearTimeout(connection.head);
    const done = () => {
      if (!connection.busy) return;
      connection.busy = false;
      if (!socket.destroyed) awaitHead(socket, connection);
    };
    res.once('finish', done).once('close', done);
    if (bodyOnRead(req.method, req.headers)) return res.writeHead(400, { connection: 'close' }).end('a GET or HEAD has no body\n');
    const path = req.url ?? '';
    const reading = req.method === 'GET' || req.method === 'HEAD';
    if (!reading || !restore.pendingFor(front.registry, path)) return pass(req, res, front);
    if (!limits.held.take()) return res.writeHead(503).end("the mirror's front holds too many requests\n");
    socket.setTimeout(0);
    void restore
      .inPlace(front.registry, path, () => socket.destroyed)
      .finally(() => limits.held.give())
      .then(() => {
        if (socket.destroyed) return;
        socket.setTimeout(FRONT_BOUNDS.idleMs);
        pass(req, res, front);
      });
  });
  const server = createServer((socket: Socket) => {
    socket.on('error', () => socket.destroy());
    if (!limits.connections.take()) {
      socket.setTimeout(1_000, () => socket.destroy());
      socket.resume();
      return socket.end(refusal(503, "the mirror's front has too many connections"));
    }
    socket.once('close', () => limits.connections.give());
    socket.setTimeout(FRONT_BOUNDS.idleMs);
    socket.on('timeout', () => socket.destroy());
    if (restore.running()) {
      const connection: Connection = { busy: false };
      connections.set(socket, connection);
      socket.once('close', () => clearTimeout(connection.head));
      awaitHead(socket, connection);
      return http.emit('connection', socket);
    }
    const registry = connect(front.target, front.address);
    const end = () => (socket.destroy(), registry.destroy());
    socket.on('error', end);
    registry.on('error', end);
    socket.pipe(registry).pipe(socket);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(front.port, front.address, resolve));
  // Past the start, a failing accept is the listener's own trouble: the worker goes on serving.
  server.on('error', () => {});
  return (server.address() as AddressInfo).port;
}

/** Headers of one connection, not of the request: not passed on. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
]);

/**
 * One request passed on to the registry, on a connection of its own: a kept-alive one the registry closes as it is
 * reused would fail the request, and dockerd would then go around the mirror.
 */
function pass(req: IncomingMessage, res: ServerResponse, front: Front): void {
  const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => !HOP_BY_HOP.has(name)));
  // A chunked body goes on chunked, whatever the method (Node frames only some methods' bodies by default).
  if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
  const forward = request(
    { host: front.address, port: front.target, method: req.method, path: req.url, headers, agent: false },
    (answer) => {
      const raw = answer.rawHeaders.flatMap((value, i, all) =>
        i % 2 === 0 && !HOP_BY_HOP.has(value.toLowerCase()) ? [value, all[i + 1]] : [],
      );
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, raw);
      pipeline(answer, res, () => {});
    },
  );
  forward.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
  pipeline(req, forward, () => {});
}
