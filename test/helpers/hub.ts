// A Docker Hub stand-in made of real parts, for tests that need what a plain open registry lacks: credentials,
// private repositories and pull rate limits.
//
//   client ──> front (node:http, 127.0.0.1:P1)  ──> registry (Distribution 2.8.2, auth.token, 127.0.0.1:P2)
//                 counts manifest GETs per identity,      challenge: Bearer realm=tokenUrl,service=...
//                 adds ratelimit-* headers, answers 429
//   client ──> front's /token (the token endpoint)     GET /token?service=S&scope=repository:NAME:pull[,push]
//
// - The token endpoint plays auth.docker.io, on the front's own host and port: Distribution 3.1 as a proxy sends
//   credentials only to a realm on its upstream's host:port or registrable domain (auth.docker.io is on
//   registry-1.docker.io's), and on a loopback address only the same host:port is one. GET /token (basic auth optional) and POST /token (OAuth2 password
//   grant) answer {token, access_token, expires_in, issued_at} with an RS256 JWT for the registry. Its header
//   carries the signing certificate (`x5c`, the cert that is also the registry's rootcertbundle) and `kid` (the
//   libtrust fingerprint of the key, which the registry would look up in rootcertbundle when there is no x5c).
//   Claims: iss, sub (the username, '' when anonymous), aud (= service, a string: 2.8 rejects an array), exp, nbf,
//   iat, jti, access. Anonymous: pull on public repositories only (a private one gets an entry-less token, so the
//   registry answers 401, as Docker Hub does). A user of `users` (name -> password/token): pull everywhere. Wrong
//   credentials: 401 from the token server. Push: only the admin credential (`hub.admin`), used by hub.pushImage.
// - The front plays registry-1.docker.io's rate limiting. It forwards every request to the registry (Host kept, so
//   upload Locations point at the front; hop-by-hop headers dropped; Accept amended, see below). A manifest GET that carries a bearer token counts
//   against the token's identity (`sub`, or 'anonymous'): once an identity has spent its budget it gets HTTP 429
//   TOOMANYREQUESTS without reaching the registry. A counted GET the registry did not answer 2xx is refunded (401,
//   404 cost nothing). HEAD and blob GETs are free. Every manifest GET/HEAD with a token under a finite budget gets
//   `ratelimit-limit: N;w=21600`, `ratelimit-remaining: M;w=21600` and `docker-ratelimit-source`; an identity with
//   an Infinity budget (the admin) gets none, as on Hub without a limit.
// - `ratelimitpreview/test:latest` is pushed at start (public), so `HEAD /v2/ratelimitpreview/test/manifests/latest`
//   reads the remaining quota without spending it (Docker's recipe: docs.docker.com/docker-hub/usage/pulls/, "View
//   pull rate and limit"; only manifest GETs count). A manifest request whose Accept names no manifest type (none,
//   */*) gets the schema 2 / OCI types added by the front, so it is served as stored, as on Hub (2.8 alone would
//   answer it 400, trying a schema 1 conversion).
// - Logs: hub.requests() / hub.tokenRequests(), and DIR/front.log, DIR/token.log (JSON lines); the registry's own
//   access and application logs under DIR/registry/.
//
// Seen against it (test/e2e/hub-stand-in.test.ts): Distribution 2.8.2 as a proxy HEADs the tag on every pull and
// GETs the manifest by tag only when it does not have it (a warm pull spends nothing); with wrong credentials the
// token server's 401 is swallowed for manifests (client gets 404 MANIFEST_UNKNOWN, the log says only "unknown tag")
// and reported for blobs (500 UNKNOWN "unauthorized: incorrect username or password"); over the limit a cold pull
// gets 500 UNKNOWN wrapping TOOMANYREQUESTS. dockerd 20.10 pulling directly HEADs the tag, then GETs the manifest by
// digest.
import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  createHash,
  createSign,
  randomBytes,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makeLayer, pushImage as pushImageTo, type Layer, type PushedImage } from './images.js';
import { run } from './process.js';
import { startUpstream, type Upstream } from './upstream.js';

export const RATELIMIT_WINDOW = 21600;
export const TOO_MANY_REQUESTS_MESSAGE =
  'You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit';

export interface HubOptions {
  /** username -> password (or access token); these may pull private repositories. */
  users?: Record<string, string>;
  /** Repositories (e.g. someorg/secret) anonymous clients may not pull. */
  privateRepositories?: string[];
  /** Manifest GETs per window for anonymous clients (default 100, Hub's). */
  anonymousBudget?: number;
  /** Manifest GETs per window for each user (default 200, Hub's personal accounts). */
  authenticatedBudget?: number;
  /** The `service` of the challenge and the tokens' `aud` (default registry.docker.io). */
  service?: string;
  /** The tokens' `iss` (default auth.docker.io). */
  issuer?: string;
  /** Token lifetime in seconds (default 300, Hub's). */
  tokenSeconds?: number;
}

/** One request the front answered. */
export interface FrontLogLine {
  method: string;
  path: string;
  status: number;
  /** 'anonymous' or the token's sub; undefined when the request carried no (readable) bearer token. */
  identity: string | undefined;
  /** True when this manifest GET was counted against the identity's budget. */
  counted: boolean;
}

/** One request the token server answered. */
export interface TokenLogLine {
  method: string;
  /** The basic-auth (or password grant) username; undefined for anonymous requests. */
  username: string | undefined;
  scopes: string[];
  status: number;
  /** What the token grants (empty when refused or nothing was granted). */
  access: { type: string; name: string; actions: string[] }[];
}

export interface Hub {
  /** The front, http://127.0.0.1:PORT: what clients and the action's `upstream` use. */
  url: string;
  /** 127.0.0.1:PORT of the front, the prefix for image references (HOST/library/x:1). */
  host: string;
  /** The token server's endpoint, the challenge's realm: http://127.0.0.1:PORT/token. */
  tokenUrl: string;
  service: string;
  issuer: string;
  /** The inner registry (with its access log); clients should not use it directly. */
  registry: Upstream;
  /** Credentials that may pull private repositories (live: add users at any time). */
  users: Record<string, string>;
  /** The admin credential, the only one granted push; not in `users`, never rate limited. */
  admin: { username: string; password: string };
  /** Private repositories (live: add or delete at any time). */
  privateRepos: Set<string>;
  /** The signing certificate (PEM), also the registry's rootcertbundle. */
  certFile: string;
  /** Pushes an image with the admin credential (to the inner registry: the front's counts are untouched). */
  pushImage(repository: string, tag: string, layers: Layer[]): Promise<PushedImage>;
  /** Asks the token server for a token, as a client does; throws unless it answers 200. */
  token(scopes: string | string[], credentials?: { username: string; password: string }): Promise<string>;
  /** Counted manifest GETs of an identity ('anonymous' or a username) since the last reset; all identities when omitted. */
  manifestGets(identity?: string): number;
  /** The budget of an identity ('anonymous' or a username). */
  budget(identity: string): number;
  /** What is left of an identity's budget. */
  remaining(identity: string): number;
  /** Sets one identity's budget (Infinity: unlimited, no ratelimit headers). */
  setBudget(identity: 'anonymous' | string, n: number): void;
  /** Forgets every count (a new window). Budgets stay. */
  resetCounts(): void;
  /** Requests the front answered, in order (also in DIR/front.log, one JSON object a line). */
  requests(): FrontLogLine[];
  /** Requests the token server answered, in order (also in DIR/token.log). */
  tokenRequests(): TokenLogLine[];
  stop(): Promise<void>;
}

const MANIFEST_PATH = /^\/v2\/(.+)\/manifests\/([^/]+)$/;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function endToEnd(headers: IncomingMessage['headers']): IncomingMessage['headers'] {
  const out: IncomingMessage['headers'] = {};
  for (const [key, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(key)) out[key] = value;
  return out;
}
const UPSTREAM_TIMEOUT_MS = 60_000;
const DEFAULT_MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** libtrust's key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, 12 groups of 4 joined by ':'. */
export function libtrustKeyId(publicKey: KeyObject): string {
  const digest = createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest()
    .subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const byte of digest) bits += byte.toString(2).padStart(8, '0');
  let b32 = '';
  for (let i = 0; i < bits.length; i += 5) b32 += alphabet[parseInt(bits.slice(i, i + 5), 2)];
  return b32.match(/.{4}/g)!.join(':');
}

/** Decodes (does not verify) a JWT's claims; undefined when it is not one. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- claims of any shape, read a field at a time by the tests
export function jwtClaims(token: string): Record<string, any> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return typeof claims === 'object' && claims !== null ? claims : undefined;
  } catch {
    return undefined;
  }
}

/** 'anonymous', the token's sub, or undefined when the request has no readable bearer token. */
function identityOf(authorization: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
  if (!m) return undefined;
  const claims = jwtClaims(m[1]);
  if (!claims) return undefined;
  return typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : 'anonymous';
}

function parseScopes(values: string[]): { type: string; name: string; actions: string[] }[] {
  const out: { type: string; name: string; actions: string[] }[] = [];
  for (const scope of values.flatMap((v) => v.split(' ')).filter(Boolean)) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first === -1 || last === first) continue;
    out.push({
      type: scope.slice(0, first).replace(/\(.*\)$/, ''), // repository(plugin) -> repository
      name: scope.slice(first + 1, last),
      actions: scope
        .slice(last + 1)
        .split(',')
        .filter(Boolean),
    });
  }
  return out;
}

function appendLog(file: string, entry: unknown): void {
  try {
    appendFileSync(file, `${JSON.stringify(entry)}\n`);
  } catch {
    // a log line is not worth failing a request
  }
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeAllConnections();
  await closed;
}

async function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startHub(dir: string, opts: HubOptions = {}): Promise<Hub> {
  await mkdir(dir, { recursive: true });
  const service = opts.service ?? 'registry.docker.io';
  const issuer = opts.issuer ?? 'auth.docker.io';
  const tokenSeconds = opts.tokenSeconds ?? 300;
  const users: Record<string, string> = { ...(opts.users ?? {}) };
  const privateRepos = new Set(opts.privateRepositories ?? []);
  const admin = { username: 'hub-admin', password: randomBytes(12).toString('hex') };
  const anonymousBudget = opts.anonymousBudget ?? 100;
  const authenticatedBudget = opts.authenticatedBudget ?? 200;
  const budgets = new Map<string, number>([[admin.username, Infinity]]);
  const counts = new Map<string, number>();
  const frontLog: FrontLogLine[] = [];
  const tokenLog: TokenLogLine[] = [];
  // The same, one JSON object a line, for reading after a failed test (KEEP_TEST_DIRS=1).
  const frontLogFile = join(dir, 'front.log');
  const tokenLogFile = join(dir, 'token.log');

  // The signing key and its self-signed certificate; the certificate is the registry's rootcertbundle.
  const keyFile = join(dir, 'token-signing.key');
  const certFile = join(dir, 'token-signing.crt');
  const made = await run(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=hub-token-signer',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,digitalSignature,keyCertSign',
    ],
    { timeoutMs: 30_000 },
  );
  if (made.code !== 0) throw new Error(`openssl req: ${made.code} ${made.stderr}`);
  const privateKey = createPrivateKey(await readFile(keyFile));
  const cert = new X509Certificate(await readFile(certFile));
  const jwtHeader = b64url(
    JSON.stringify({ typ: 'JWT', alg: 'RS256', kid: libtrustKeyId(createPublicKey(privateKey)), x5c: [cert.raw.toString('base64')] }),
  );

  const sign = (subject: string, access: TokenLogLine['access']): string => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: issuer, sub: subject, aud: service, exp: now + tokenSeconds, nbf: now, iat: now, jti: randomUUID(), access };
    const signingInput = `${jwtHeader}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(privateKey);
    return `${signingInput}.${b64url(signature)}`;
  };

  const grant = (username: string | undefined, scopes: string[]): TokenLogLine['access'] => {
    const access: TokenLogLine['access'] = [];
    for (const s of parseScopes(scopes)) {
      if (s.type !== 'repository') continue;
      const isAdmin = username === admin.username;
      const actions = s.actions.filter((a) => (a === 'pull' ? isAdmin || username !== undefined || !privateRepos.has(s.name) : isAdmin));
      if (actions.length) access.push({ type: 'repository', name: s.name, actions });
    }
    return access;
  };

  const checkCredentials = (username: string, password: string): boolean =>
    username === admin.username ? password === admin.password : Object.hasOwn(users, username) && users[username] === password;

  // ---- the token endpoint (auth.docker.io), served by the front ----
  const serveToken = (req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://token');
      const reply = (status: number, body: unknown, line: Omit<TokenLogLine, 'method' | 'status'>) => {
        const entry: TokenLogLine = { method: req.method ?? '', status, ...line };
        tokenLog.push(entry);
        appendLog(tokenLogFile, entry);
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (url.pathname !== '/token' || (req.method !== 'GET' && req.method !== 'POST')) {
        return reply(404, { details: 'not found' }, { username: undefined, scopes: [], access: [] });
      }
      let username: string | undefined;
      let password = '';
      let scopes = url.searchParams.getAll('scope');
      if (req.method === 'POST') {
        // OAuth2 (what a client with a refresh token or forceOAuth sends): password grant only.
        const form = new URLSearchParams(await readBody(req));
        if (form.get('grant_type') !== 'password') {
          return reply(400, { details: 'unsupported grant_type' }, { username: undefined, scopes, access: [] });
        }
        username = form.get('username') ?? '';
        password = form.get('password') ?? '';
        scopes = form.getAll('scope');
      } else {
        const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
        if (basic) {
          const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
          const colon = decoded.indexOf(':');
          username = colon === -1 ? decoded : decoded.slice(0, colon);
          password = colon === -1 ? '' : decoded.slice(colon + 1);
        }
      }
      if (username !== undefined && !checkCredentials(username, password)) {
        return reply(401, { details: 'incorrect username or password' }, { username, scopes, access: [] });
      }
      const access = grant(username, scopes);
      const token = sign(username ?? '', access);
      const body = { token, access_token: token, expires_in: tokenSeconds, issued_at: new Date().toISOString() };
      return reply(200, body, { username, scopes, access });
    })().catch(() => {
      if (!res.headersSent) res.writeHead(400);
      res.end();
    });
  };

  // ---- the front (registry-1.docker.io's rate limiting); the registry behind it starts once its port is known ----
  let registry: Upstream | undefined;
  const budgetOf = (identity: string): number =>
    budgets.get(identity) ?? (identity === 'anonymous' ? anonymousBudget : authenticatedBudget);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const front = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/token') return serveToken(req, res);
    const identity = identityOf(req.headers.authorization);
    const isManifest = MANIFEST_PATH.test(path) && (req.method === 'GET' || req.method === 'HEAD');
    const limit = identity !== undefined ? budgetOf(identity) : Infinity;
    const limited = isManifest && identity !== undefined && Number.isFinite(limit);
    const source = identity === 'anonymous' ? (req.socket.remoteAddress ?? '127.0.0.1') : (identity ?? '');
    const rateHeaders = (): Record<string, string> =>
      limited
        ? {
            'ratelimit-limit': `${limit};w=${RATELIMIT_WINDOW}`,
            'ratelimit-remaining': `${Math.max(0, limit - (counts.get(identity!) ?? 0))};w=${RATELIMIT_WINDOW}`,
            'docker-ratelimit-source': source,
          }
        : {};
    const line: FrontLogLine = { method: req.method ?? '', path, status: 0, identity, counted: false };
    frontLog.push(line);
    res.on('close', () => appendLog(frontLogFile, line));

    if (limited && req.method === 'GET') {
      const used = counts.get(identity!) ?? 0;
      if (used >= limit) {
        line.status = 429;
        req.resume();
        res.writeHead(429, { 'content-type': 'application/json', ...rateHeaders() });
        res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: TOO_MANY_REQUESTS_MESSAGE }] }));
        return;
      }
      counts.set(identity!, used + 1); // reserved now, refunded below unless the registry serves it
      line.counted = true;
    }
    const refund = () => {
      if (!line.counted) return;
      line.counted = false;
      counts.set(identity!, Math.max(0, (counts.get(identity!) ?? 1) - 1));
    };

    const headers = endToEnd(req.headers);
    // Hub answers a manifest request that names no manifest type (no Accept, or */*) with the manifest as stored;
    // 2.8 would try a schema 1 conversion and answer 400 MANIFEST_INVALID. Clients like `curl --head` (Docker's
    // ratelimitpreview recipe) and fetch (*/*) name none.
    const accept = String(headers.accept ?? '');
    if (isManifest && !/application\/vnd\.(docker|oci)\./.test(accept)) {
      headers.accept = accept ? `${DEFAULT_MANIFEST_ACCEPT}, ${accept}` : DEFAULT_MANIFEST_ACCEPT;
    }
    const upstreamReq = request({
      host: '127.0.0.1',
      port: registry!.port, // set before startHub returns the front to anyone
      method: req.method,
      path: req.url,
      headers,
      agent,
      timeout: UPSTREAM_TIMEOUT_MS,
    });
    upstreamReq.on('timeout', () => upstreamReq.destroy(new Error('registry did not answer in time')));
    upstreamReq.on('response', (upstreamRes) => {
      const status = upstreamRes.statusCode ?? 502;
      line.status = status;
      if (status < 200 || status > 299) refund();
      res.writeHead(status, upstreamRes.statusMessage, { ...endToEnd(upstreamRes.headers), ...(isManifest ? rateHeaders() : {}) });
      upstreamRes.pipe(res);
      upstreamRes.on('error', () => res.destroy());
    });
    upstreamReq.on('error', (error) => {
      refund();
      if (!res.headersSent) {
        line.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`hub front: ${error.message}\n`);
      } else {
        res.destroy();
      }
    });
    req.on('aborted', () => upstreamReq.destroy());
    req.pipe(upstreamReq);
  });
  front.requestTimeout = UPSTREAM_TIMEOUT_MS * 2;
  const frontPort = await listen(front);
  const tokenUrl = `http://127.0.0.1:${frontPort}/token`;
  try {
    registry = await startUpstream(join(dir, 'registry'), {
      auth: { token: { realm: tokenUrl, service, issuer, rootcertbundle: certFile } },
    });
  } catch (error) {
    await closeServer(front);
    agent.destroy();
    throw error;
  }
  const inner = registry;

  const token = async (scopes: string | string[], credentials?: { username: string; password: string }): Promise<string> => {
    const url = new URL(tokenUrl);
    url.searchParams.set('service', service);
    for (const s of Array.isArray(scopes) ? scopes : [scopes]) url.searchParams.append('scope', s);
    const headers: Record<string, string> = credentials
      ? { authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` }
      : {};
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`token for ${String(scopes)}: HTTP ${res.status} ${body}`);
    return (JSON.parse(body) as { token: string }).token;
  };

  const hub: Hub = {
    url: `http://127.0.0.1:${frontPort}`,
    host: `127.0.0.1:${frontPort}`,
    tokenUrl,
    service,
    issuer,
    registry: inner,
    users,
    admin,
    privateRepos,
    certFile,
    async pushImage(repository, tag, layers) {
      const pushToken = await token(`repository:${repository}:pull,push`, admin);
      return pushImageTo(inner.url, repository, tag, layers, { authorization: `Bearer ${pushToken}` });
    },
    token,
    manifestGets(identity) {
      if (identity !== undefined) return counts.get(identity) ?? 0;
      let total = 0;
      for (const n of counts.values()) total += n;
      return total;
    },
    budget: budgetOf,
    remaining: (identity) => Math.max(0, budgetOf(identity) - (counts.get(identity) ?? 0)),
    setBudget(identity, n) {
      budgets.set(identity, n);
    },
    resetCounts() {
      counts.clear();
    },
    requests: () => [...frontLog],
    tokenRequests: () => [...tokenLog],
    async stop() {
      await closeServer(front);
      agent.destroy();
      await inner.stop();
    },
  };
  try {
    await hub.pushImage('ratelimitpreview/test', 'latest', [makeLayer('ratelimitpreview', [{ path: 'hello.txt', bytes: 64 }])]);
  } catch (error) {
    await hub.stop();
    throw error;
  }
  return hub;
}
