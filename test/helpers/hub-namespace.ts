// Docker Hub under its real names, with no internet: a network namespace in which registry-1.docker.io:443 and
// auth.docker.io:443 are the Docker Hub stand-in of hub.ts (token auth, ratelimit headers, private repositories),
// over TLS with a test CA. For dockerd's own fallback when its mirror fails (always https://registry-1.docker.io,
// whatever the mirror proxies: test (b) of test/e2e/hub-namespace.test.ts, dockerd 20.10) and for the action's
// default `upstream`.
//
//   inside the namespace (own loopback)              this test process (the machine's loopback)
//   ───────────────────────────────────              ──────────────────────────────────────────
//   dockerd, the action's steps (and the     TLS     https server (cert for both names, test CA)
//   registry they start) ── 127.0.0.1:443 ─────────►  Host registry-1.docker.io ──► hub front  ──► hub registry
//   resolve both names to 127.0.0.1 (/etc/hosts)      Host auth.docker.io       ──► hub token server
//                           127.0.0.1:P  ─────────►  pipe to 127.0.0.1:P (expose(P): cache service, Azurite, ...)
//
// - Other registries (opts.registries: ghcr.io, quay.io, ...) answer at 127.0.0.1:443 inside too, under their
//   own names (in the certificate and /etc/hosts), each forwarded to its own stand-in on the machine's loopback.
// - The listening sockets are made inside the namespace by a short-lived `nsenter --net=NS node -e` child, which
//   hands them to this process over its IPC channel (a node process cannot enter a netns itself) and exits. This
//   process then accepts on them: the hub (hub.ts, unchanged) runs here on the machine's loopback, so every Hub
//   method (pushImage, requests, setBudget, ...) works as usual; hub.url is its address outside the namespace.
// - The registry's challenge names the token server by its loopback URL (hub.tokenUrl); responses through :443
//   have that realm rewritten to https://auth.docker.io/token. Requests reach the front with Host kept and
//   X-Forwarded-Proto: https.
// - Names: `wrap` runs a command (through bash, which keeps env names like INPUT_DAEMON-CONFIG that dash drops)
//   in a private mount namespace (`unshare --mount --propagation private`) where
//   /etc/hosts (both names -> 127.0.0.1), /etc/ssl/certs/ca-certificates.crt (the system bundle plus the test CA;
//   dockerd ignores certs.d for Docker Hub) and /etc/docker (an empty directory of ours) are bind mounts, then
//   `exec nsenter --net=/run/netns/NAME`: no fork, the pid spawned is the command's. Not `ip netns exec`: it remounts
//   /sys and dockerd then fails with "Devices cgroup isn't mounted". Node's fetch does not read the system bundle:
//   give node processes `env` (NODE_EXTRA_CA_CERTS).
// - stop() closes the listeners, stops the hub, ends (SIGKILL, by pid) any process still in the namespace (only
//   what was started through wrap can be there) and deletes the namespace. Nothing outside dir changes, except that
//   the first `ip netns add` on a machine makes /run/netns a shared bind mount of itself (iproute2 does that; left).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { startHub, type Hub, type HubOptions } from './hub.js';
import { deleteNetns, ip } from './netns.js';
import { run, type Wrap } from './process.js';

export const REGISTRY_HOST = 'registry-1.docker.io';
export const AUTH_HOST = 'auth.docker.io';
export const HUB_REGISTRY_URL = `https://${REGISTRY_HOST}`;
export const HUB_REALM = `https://${AUTH_HOST}/token`;
const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

export interface HubNamespaceOptions {
  /** Options of the Docker Hub stand-in (hub.ts). */
  hub?: HubOptions;
  /** Ports of the machine's loopback to make reachable at the same 127.0.0.1:PORT inside (see expose()). */
  expose?: number[];
  /** Name of the namespace (default hubns-PID-RANDOM). */
  name?: string;
  /** More registries under their real names (ghcr.io, quay.io, ...): host -> URL of its stand-in on the machine's loopback. */
  registries?: Record<string, string>;
}

export interface HubNamespace {
  /** The namespace's name (`ip netns list`). */
  name: string;
  /** /run/netns/NAME, for nsenter --net=. */
  netnsPath: string;
  dir: string;
  /** The test CA (PEM) that signed the certificate of both names: NODE_EXTRA_CA_CERTS for node processes inside. */
  caFile: string;
  /** The system bundle plus the test CA, mounted at /etc/ssl/certs/ca-certificates.crt inside. */
  bundleFile: string;
  /** Mounted at /etc/hosts inside: registry-1.docker.io and auth.docker.io are 127.0.0.1. */
  hostsFile: string;
  /** Mounted at /etc/docker inside (empty): nothing run through wrap touches the machine's. */
  dockerDir: string;
  /** The Docker Hub stand-in; its url/host/tokenUrl are its addresses on the machine's loopback (outside). */
  hub: Hub;
  /** https://registry-1.docker.io: the stand-in, seen from inside. */
  registryUrl: string;
  /** https://auth.docker.io/token: the realm of the challenge, seen from inside. */
  realm: string;
  /** Environment for node processes inside: NODE_EXTRA_CA_CERTS=caFile. */
  env: Record<string, string>;
  /** The command line that runs `command args` inside (mount namespace with the binds, then the netns); same pid. */
  wrap: Wrap;
  /**
   * Adds Docker's default bridge inside: docker0 with the gateway address, and a namespace joined to it as a
   * container on that network is; idempotent. The runners' test daemons each have a bridge of their own
   * (dockerd.ts), so they leave this docker0 alone, as they leave a hosted runner's.
   */
  bridge(): Promise<DockerBridge>;
  /** Makes 127.0.0.1:PORT of the machine reachable at 127.0.0.1:PORT inside (a byte pipe); idempotent. */
  expose(...ports: number[]): Promise<void>;
  /** Ports exposed so far. */
  exposed(): number[];
  /** Requests that came in through 127.0.0.1:443 inside, in order. */
  tlsRequests(): { host: string; method: string; path: string; status: number }[];
  stop(): Promise<void>;
}

/** The address dockerd gives docker0 by default. */
export const BRIDGE_GATEWAY = '172.17.0.1';

export interface DockerBridge {
  /** docker0's address inside the namespace. */
  gateway: string;
  /** Runs a command as in a container on the bridge (172.17.0.2): the gateway is its way out, 127.0.0.1 its own. */
  containerWrap: Wrap;
  /**
   * Takes the bridge and the container away again (ending what runs there): with them, node's lookups of the
   * names in /etc/hosts inside fail (EAI_AGAIN), so the namespace must be as it was for the tests that follow.
   */
  remove(): Promise<void>;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
function endToEnd(headers: IncomingMessage['headers']): IncomingMessage['headers'] {
  const out: IncomingMessage['headers'] = {};
  for (const [key, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(key)) out[key] = value;
  return out;
}

// Run by `nsenter --net=NS node -e`: listens on 127.0.0.1:PORT for each argument, sends each server to the parent
// over IPC ({port} or {port, error}), then exits. The parent's copy of each socket stays open.
const LISTENER_SCRIPT = `
const net = require('node:net');
const ports = process.argv.slice(1).map(Number);
let left = ports.length;
const done = () => { if (--left === 0) process.disconnect(); };
for (const port of ports) {
  const server = net.createServer();
  server.once('error', (e) => process.send({ port, error: String(e && e.message || e) }, done));
  server.listen({ port, host: '127.0.0.1', exclusive: true }, () =>
    process.send({ port }, server, () => { server.close(); done(); }));
}
`;

/** Listens on 127.0.0.1:PORT inside the namespace for each port; the servers are this process's to accept on. */
async function listenInside(netnsPath: string, ports: number[], timeoutMs = 15_000): Promise<Map<number, Server>> {
  const child = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, '-e', LISTENER_SCRIPT, ...ports.map(String)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const got = new Map<number, Server>();
  const errors: string[] = [];
  child.on('message', (m: { port: number; error?: string }, handle: unknown) => {
    if (m.error || !handle) errors.push(`127.0.0.1:${m.port}: ${m.error ?? 'no handle'}`);
    else got.set(m.port, handle as Server);
  });
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(`exit ${code ?? signal}`));
      child.once('error', (e) => resolve(`spawn error ${e.message}`));
    }),
    new Promise<string>((resolve) => (timer = setTimeout(resolve, timeoutMs, 'timeout'))),
  ]);
  clearTimeout(timer);
  if (outcome === 'timeout') child.kill('SIGKILL');
  if (outcome !== 'exit 0' || errors.length || got.size !== ports.length) {
    for (const server of got.values()) server.close();
    throw new Error(`listening inside ${netnsPath} on ${ports.join(', ')}: ${outcome}; ${errors.join('; ')} ${stderr.trim()}`);
  }
  return got;
}

async function openssl(args: string[]): Promise<void> {
  const r = await run('openssl', args, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.code} ${r.stderr}`);
}

export async function startHubNamespace(dir: string, opts: HubNamespaceOptions = {}): Promise<HubNamespace> {
  if (!existsSync('/etc/docker')) throw new Error('/etc/docker does not exist on this machine; nothing to cover with a bind mount');
  await mkdir(dir, { recursive: true });
  const name = opts.name ?? `hubns-${process.pid}-${randomBytes(3).toString('hex')}`;
  const netnsPath = `/run/netns/${name}`;
  const caFile = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  const certFile = join(dir, 'docker-hub.crt');
  const keyFile = join(dir, 'docker-hub.key');
  const bundleFile = join(dir, 'ca-certificates.crt');
  const hostsFile = join(dir, 'hosts');
  const dockerDir = join(dir, 'etc-docker');
  await mkdir(dockerDir, { recursive: true });

  const names = [REGISTRY_HOST, AUTH_HOST, ...Object.keys(opts.registries ?? {})];
  // The CA, and one certificate for every name (Go wants them as SANs).
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2'];
  await openssl([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    caKey,
    '-out',
    caFile,
    '-subj',
    '/CN=pull-cache test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await openssl([
    'req',
    '-x509',
    ...ec,
    '-CA',
    caFile,
    '-CAkey',
    caKey,
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-subj',
    `/CN=${REGISTRY_HOST}`,
    '-addext',
    `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    '-addext',
    'basicConstraints=critical,CA:FALSE',
    '-addext',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    '-addext',
    'extendedKeyUsage=serverAuth',
  ]);
  const ca = await readFile(caFile, 'utf8');
  const system = await readFile(SYSTEM_BUNDLE, 'utf8').catch(() => '');
  await writeFile(bundleFile, `${system}${system.endsWith('\n') || !system ? '' : '\n'}${ca}`);
  const hostHosts = await readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1 localhost\n');
  await writeFile(hostsFile, `127.0.0.1 ${names.join(' ')}\n${hostHosts}`);

  /** Runs a command in the network namespace at `net`, with the binds of this world. */
  const wrapIn =
    (net: string): Wrap =>
    (command, args) => {
      const script = [
        `mount --bind ${shellQuote(hostsFile)} /etc/hosts`,
        `mount --bind ${shellQuote(bundleFile)} ${SYSTEM_BUNDLE}`,
        `mount --bind ${shellQuote(dockerDir)} /etc/docker`,
        `exec nsenter --net=${shellQuote(net)} -- "$0" "$@"`,
      ].join(' && ');
      // bash, not sh: dash drops environment variables whose names are not identifiers, e.g. the runner's
      // INPUT_DAEMON-CONFIG; bash passes them on.
      return { command: 'unshare', args: ['--mount', '--propagation', 'private', '--', '/bin/bash', '-c', script, command, ...args] };
    };
  const wrap = wrapIn(netnsPath);
  const containerName = `${name}-c`;
  let bridge: Promise<DockerBridge> | undefined;
  // What dockerd makes for its default network: a bridge docker0 with the gateway address, and per container a
  // namespace joined to it by a veth pair, its default route the gateway.
  const addBridge = async (): Promise<DockerBridge> => {
    await ip('-n', name, 'link', 'add', 'docker0', 'type', 'bridge');
    await ip('-n', name, 'addr', 'add', `${BRIDGE_GATEWAY}/16`, 'dev', 'docker0');
    await ip('-n', name, 'link', 'set', 'docker0', 'up');
    await ip('netns', 'add', containerName);
    await ip('-n', containerName, 'link', 'set', 'lo', 'up');
    await ip('-n', name, 'link', 'add', 'veth-c', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', containerName);
    await ip('-n', name, 'link', 'set', 'veth-c', 'master', 'docker0', 'up');
    await ip('-n', containerName, 'addr', 'add', '172.17.0.2/16', 'dev', 'eth0');
    await ip('-n', containerName, 'link', 'set', 'eth0', 'up');
    await ip('-n', containerName, 'route', 'add', 'default', 'via', BRIDGE_GATEWAY);
    const remove = async () => {
      await deleteNetns(containerName);
      // The veth's peer went with the container's namespace.
      await ip('-n', name, 'link', 'delete', 'docker0');
      bridge = undefined;
    };
    return { gateway: BRIDGE_GATEWAY, containerWrap: wrapIn(`/run/netns/${containerName}`), remove };
  };

  await ip('netns', 'add', name);
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const exposedPorts = new Set<number>();
  const tlsLog: { host: string; method: string; path: string; status: number }[] = [];
  let hub: Hub | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const https = createHttpsServer({ key: await readFile(keyFile), cert: await readFile(certFile) });

  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const expose = async (...ports: number[]) => {
    const wanted = [...new Set(ports)].filter((p) => !exposedPorts.has(p));
    if (!wanted.length) return;
    for (const [port, server] of await listenInside(netnsPath, wanted)) {
      servers.push(server);
      exposedPorts.add(port);
      server.on('connection', (inside: Socket) => {
        track(inside);
        const outside = connect(port, '127.0.0.1');
        track(outside);
        inside.pipe(outside).pipe(inside);
        inside.on('error', () => outside.destroy());
        outside.on('error', () => inside.destroy());
        inside.on('close', () => outside.destroy());
        outside.on('close', () => inside.destroy());
      });
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopAll());
  const stopAll = async () => {
    for (const server of servers) server.close();
    https.close();
    https.closeAllConnections();
    for (const socket of sockets) socket.destroy();
    agent.destroy();
    if (hub) await hub.stop();
    if (bridge) await deleteNetns(containerName);
    await deleteNetns(name);
  };

  try {
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    hub = await startHub(join(dir, 'hub'), opts.hub);
    const h = hub;
    const front = new URL(h.url);
    const token = new URL(h.tokenUrl);
    const routes: Record<string, URL> = { [REGISTRY_HOST]: front, [AUTH_HOST]: token };
    for (const [host, url] of Object.entries(opts.registries ?? {})) routes[host] = new URL(url);

    https.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
      const line = { host, method: req.method ?? '', path: (req.url ?? '/').split('?')[0], status: 0 };
      tlsLog.push(line);
      const target = routes[host];
      if (!target) {
        line.status = 421;
        req.resume();
        res.writeHead(421, { 'content-type': 'text/plain' }).end(`no such host here: ${host}\n`);
        return;
      }
      const upstreamReq = request({
        host: '127.0.0.1',
        port: Number(target.port),
        method: req.method,
        path: req.url,
        headers: { ...endToEnd(req.headers), 'x-forwarded-proto': 'https' },
        agent,
      });
      upstreamReq.on('response', (upstreamRes) => {
        line.status = upstreamRes.statusCode ?? 502;
        const headers = endToEnd(upstreamRes.headers);
        const challenge = headers['www-authenticate'];
        if (typeof challenge === 'string') headers['www-authenticate'] = challenge.split(h.tokenUrl).join(HUB_REALM);
        res.writeHead(line.status, upstreamRes.statusMessage, headers);
        upstreamRes.pipe(res);
        upstreamRes.on('error', () => res.destroy());
      });
      upstreamReq.on('error', (error) => {
        if (res.headersSent) return void res.destroy();
        line.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' }).end(`hub namespace: ${error.message}\n`);
      });
      req.on('aborted', () => upstreamReq.destroy());
      req.pipe(upstreamReq);
    });
    https.on('tlsClientError', () => {});

    const [tls] = (await listenInside(netnsPath, [443])).values();
    servers.push(tls);
    tls.on('connection', (socket: Socket) => {
      track(socket);
      https.emit('connection', socket);
    });
    await expose(...(opts.expose ?? []));
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }

  return {
    name,
    netnsPath,
    dir,
    caFile,
    bundleFile,
    hostsFile,
    dockerDir,
    hub,
    registryUrl: HUB_REGISTRY_URL,
    realm: HUB_REALM,
    env: { NODE_EXTRA_CA_CERTS: caFile },
    wrap,
    bridge: () => (bridge ??= addBridge()),
    expose,
    exposed: () => [...exposedPorts],
    tlsRequests: () => [...tlsLog],
    stop,
  };
}
