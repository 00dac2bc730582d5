// An HTTP forwarder in front of a registry that misbehaves on request: answers an error status, stalls,
// or cuts a blob download half-way. It stands between the action's registry and its upstream only, so
// dockerd's own fallback to Docker Hub is not affected. A token realm on the target is rewritten to the forwarder's
// own address, as a registry's front names its own token endpoint: Distribution 3.1 asks for tokens only at a realm on
// its upstream's host and port (see hub.ts). With `keepRealm` it is left naming the target: an upstream whose token
// service lives on another host and port.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface Fault {
  /** What to do to a matching request: answer `status`, stall for stallMs then close, or cut the body half-way. */
  mode: 'status' | 'stall' | 'cut';
  status?: number;
  stallMs?: number;
  /** Which requests: manifests, blobs, or both (default). The /v2/ ping always passes. */
  kind?: 'manifests' | 'blobs';
  /** How many matching requests to spoil before passing the rest (default: all). */
  count?: number;
}

export interface FaultyForwarder {
  url: string;
  port: number;
  setFault(fault: Fault | null): void;
  /** Requests spoiled so far. */
  spoiled(): number;
  stop(): Promise<void>;
}

export async function startFaultyForwarder(target: string, options: { keepRealm?: boolean } = {}): Promise<FaultyForwarder> {
  let fault: Fault | null = null;
  let spoiled = 0;
  const sockets = new Set<Socket>();
  const to = new URL(target);
  let self = '';
  const matches = (req: IncomingMessage) => {
    if (!fault || (fault.count !== undefined && spoiled >= fault.count)) return false;
    const kind = /\/v2\/.+\/(manifests|blobs)\//.exec(req.url ?? '')?.[1];
    // Only a GET has a body to cut.
    return kind !== undefined && (!fault.kind || fault.kind === kind) && (fault.mode !== 'cut' || req.method === 'GET');
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const spoil = matches(req) ? fault! : null;
    if (spoil) spoiled++;
    if (spoil?.mode === 'status')
      return void res
        .writeHead(spoil.status ?? 503, { 'content-type': 'application/json' })
        .end('{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}');
    if (spoil?.mode === 'stall') return void setTimeout(() => req.socket.destroy(), spoil.stallMs ?? 10_000).unref();
    const upstream = request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } },
      (up) => {
        const challenge = options.keepRealm ? undefined : up.headers['www-authenticate'];
        res.writeHead(up.statusCode ?? 502, {
          ...up.headers,
          ...(challenge ? { 'www-authenticate': challenge.split(to.origin).join(self) } : {}),
        });
        if (spoil?.mode !== 'cut') return void up.pipe(res);
        const half = Number(up.headers['content-length'] ?? 0) / 2;
        let sent = 0;
        up.on('data', (chunk: Buffer) => {
          if (sent + chunk.length >= half) {
            res.write(chunk.subarray(0, Math.max(0, half - sent)));
            up.destroy();
            req.socket.destroy();
          } else {
            sent += chunk.length;
            res.write(chunk);
          }
        });
      },
    );
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  self = `http://127.0.0.1:${port}`;
  return {
    url: self,
    port,
    setFault: (f) => {
      fault = f;
      spoiled = 0;
    },
    spoiled: () => spoiled,
    stop: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
