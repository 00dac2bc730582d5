// An in-process TCP proxy standing in for the internet between the runner and a registry on loopback: every byte
// crosses a shared link of set bandwidth (one per direction, shared by all connections, like one uplink) and
// waits half the round-trip time each way; a new connection pays one round trip before its first byte. It counts
// the bytes it carries, so it also measures what was pulled from "upstream". Loopback only, bounded: at most
// maxConnections at once, at most twice the bandwidth-delay product (512 KiB at least) queued per connection and
// direction (the sender is paused past that).
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ThrottleOptions {
  /** Port of the service on 127.0.0.1 to put behind the throttle. */
  targetPort: number;
  /** Link bandwidth per direction, bytes a second. */
  bytesPerSecond: number;
  /** Round-trip time added, ms (half each way; one more round trip to open a connection). */
  rttMs: number;
  maxConnections?: number;
}

export interface Throttle {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT */
  host: string;
  port: number;
  /** Bytes carried so far: down = from the target to clients, up = from clients to the target. */
  bytes(): { down: number; up: number };
  connections(): number;
  stop(): Promise<void>;
}

const CHUNK = 64 * 1024;

/** One direction of the link: a FIFO that releases `bytesPerSecond`, shared by every connection. */
class Link {
  private freeAt = 0;
  bytes = 0;
  constructor(
    private readonly bytesPerSecond: number,
    private readonly oneWayMs: number,
  ) {}
  /** When `n` bytes handed over now arrive at the other end. */
  schedule(n: number): number {
    const now = performance.now();
    this.freeAt = Math.max(now, this.freeAt) + (n * 1000) / this.bytesPerSecond;
    this.bytes += n;
    return this.freeAt + this.oneWayMs;
  }
}

/** Moves bytes from `from` to `to` through `link`, in order, pausing `from` while too much is queued. */
function pump(from: Socket, to: Socket, link: Link, highWater: number): void {
  const lowWater = highWater / 4;
  const queue: { at: number; data: Buffer }[] = [];
  let queued = 0;
  let ended = false;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length && queue[0].at <= now + 0.5) {
      const { data } = queue.shift()!;
      queued -= data.length;
      if (!to.destroyed) to.write(data);
    }
    if (queue.length) timer = setTimeout(flush, Math.max(0, queue[0].at - performance.now()));
    else if (ended && !to.destroyed) to.end();
    if (queued < lowWater && to.writableLength < highWater && from.isPaused()) from.resume();
  };
  from.on('data', (chunk: Buffer) => {
    for (let offset = 0; offset < chunk.length; offset += CHUNK) {
      const data = chunk.subarray(offset, offset + CHUNK);
      queue.push({ at: link.schedule(data.length), data });
      queued += data.length;
    }
    if (queued >= highWater || to.writableLength >= highWater) from.pause();
    if (!timer) timer = setTimeout(flush, Math.max(0, queue[0].at - performance.now()));
  });
  to.on('drain', () => {
    if (queued < lowWater && from.isPaused()) from.resume();
  });
  // The sender is done (FIN, or gone): pass that on once everything it sent has crossed the link.
  const finish = () => {
    ended = true;
    if (!queue.length && !timer && !to.destroyed) to.end();
  };
  from.once('end', finish);
  from.once('close', finish);
}

export async function startThrottle(options: ThrottleOptions): Promise<Throttle> {
  if (!(options.bytesPerSecond > 0)) throw new Error(`bandwidth must be > 0, got ${options.bytesPerSecond}`);
  if (!(options.rttMs >= 0)) throw new Error(`latency must be >= 0, got ${options.rttMs}`);
  // Like a TCP window: enough queued per connection to keep the link busy across the delay (twice the
  // bandwidth-delay product), and no more.
  const highWater = Math.max(512 * 1024, Math.ceil((2 * options.bytesPerSecond * options.rttMs) / 1000));
  const down = new Link(options.bytesPerSecond, options.rttMs / 2);
  const up = new Link(options.bytesPerSecond, options.rttMs / 2);
  const sockets = new Set<Socket>();
  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    // The handshake: one round trip before the connection carries anything.
    const opening = setTimeout(() => {
      if (client.destroyed) return;
      const target = connect({ host: '127.0.0.1', port: options.targetPort });
      sockets.add(target);
      target.once('close', () => sockets.delete(target));
      client.once('close', () => target.destroy());
      target.on('error', () => target.destroy());
      target.once('connect', () => {
        pump(client, target, up, highWater);
        pump(target, client, down, highWater);
        client.resume();
      });
    }, options.rttMs);
    client.once('close', () => clearTimeout(opening));
  });
  server.maxConnections = options.maxConnections ?? 256;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    bytes: () => ({ down: down.bytes, up: up.bytes }),
    connections: () => sockets.size,
    stop: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
