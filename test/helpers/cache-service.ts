// A local stand-in for the GitHub Actions cache service (v2) that the real @actions/cache talks to:
// Twirp JSON on an in-process node:http server, archives stored in Azurite through SAS URLs that name a small
// proxy in front of Azurite (so that the signed-URL uploads and downloads can be rate-limited like the service).
//
// Reproduced GitHub semantics (GitHub's docs, "Caching dependencies to speed up workflows": matching a cache key):
// - a key+version is immutable: CreateCacheEntry on a key+version that is reserved or finalized answers
//   HTTP 200 {ok:false} (no message, so @actions/cache logs only "Failed to save: Unable to reserve cache ...";
//   github.com itself answers HTTP 409 already_exists for a finalized entry, which the client treats the same way);
// - lookup order: exact key, then key as prefix, then each restore key exact then as prefix, newest entry first;
//   the version must match and only finalized entries are found.
// Entries live in memory only.
//
// The REST API's cache endpoints are stood in for too, on a server of their own (as api.github.com is another host
// than the cache service), per GitHub's docs ("REST API endpoints for GitHub Actions cache"):
// - GET /repos/{owner}/{repo}/actions/caches?key=&ref=&sort=&direction=&per_page=&page= answers
//   {total_count, actions_caches: [{id, ref, key, version, last_accessed_at, created_at, size_in_bytes}]}: `key` a
//   prefix, `ref` exact (refs/heads/<branch> or the branch's name), sort by created_at, last_accessed_at (default) or
//   size_in_bytes, desc by default, per_page 30 by default and at most 100; finalized entries only;
// - DELETE /repos/{owner}/{repo}/actions/caches/{cache_id} answers 204, or 404 {"message":"Not Found"};
// - a token with actions: read only (the job token without `permissions: actions: write`) lists, and its deletes
//   are answered 403 {"message":"Resource not accessible by integration"}; another token gets 401 Bad credentials.
// Every entry is saved under the one ref the service was started with (the real service takes it from the job).
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import {
  BlobSASPermissions,
  BlobServiceClient,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
  type ContainerClient,
} from '@azure/storage-blob';
import { answers, freePort, startProcess, waitFor } from './process.js';

export interface CacheEntry {
  /** The id the REST API lists it by. */
  id: number;
  key: string;
  /** The ref scope it was saved in. */
  ref: string;
  version: string;
  /** size_bytes as reported by FinalizeCacheEntryUpload (0 until finalized). */
  sizeBytes: number;
  /** Date.now() at CreateCacheEntry (or earlier, backdated). */
  createdAt: number;
  /** Date.now() at its last look-up that found it (createdAt until then). */
  lastAccessedAt: number;
  finalized: boolean;
  /** How many times GetCacheEntryDownloadURL returned this entry (lookupOnly restores count too). */
  downloads: number;
}

export interface CacheFault {
  methods?: string[];
  /** Only requests whose key matches (default: any key). */
  keys?: RegExp;
  status?: number;
  /** With status 429: the Retry-After it says, in seconds (default 60). */
  retryAfter?: number;
  hangMs?: number;
}

/**
 * A time when the service answers 429 (or 503) with Retry-After, as GitHub's does past a repository's rate limit:
 * from the first call it matches, for forMs.
 */
export interface RateLimitWindow {
  /** Twirp method names, 'upload' (a PUT to a signed URL) and 'download' (a GET of one); every Twirp method when none. */
  calls?: string[];
  /** Only Twirp requests whose key matches. */
  keys?: RegExp;
  forMs: number;
  /** Matching calls let through before the window starts (say, the index's download before the entries'). */
  skipFirst?: number;
  /** Retry-After, in seconds (default 2); `retryAfterDate` sends it as an HTTP date instead. */
  retryAfter?: number;
  retryAfterDate?: boolean;
  status?: 429 | 503;
}

/** One call to the service or its storage, as it came in and was answered. */
export interface CallRecord {
  /** The Twirp method, 'upload' / 'download', or the REST API's 'rest:list' / 'rest:delete'. */
  call: string;
  /** 'service' (Twirp), 'storage' (the signed URLs) or 'api' (the REST API): each limits its callers on its own. */
  host: 'service' | 'storage' | 'api';
  /** The Twirp request's key; for the storage, the request's `comp` (block, blocklist; '' for a whole blob). */
  key: string;
  at: number;
  status: number;
  /** The Retry-After it was told, in ms, when refused. */
  retryAfterMs?: number;
}

/** The REST API's stand-in: where it is, the job's repository and ref, and its two tokens. */
export interface RestApi {
  url: string;
  port: number;
  repository: string;
  ref: string;
  /** A token with actions: write: lists and deletes. */
  writeToken: string;
  /** A token with actions: read only: lists; its deletes are answered 403. */
  readToken: string;
}

export interface CacheService {
  /**
   * ACTIONS_CACHE_SERVICE_V2, ACTIONS_RESULTS_URL (trailing slash), ACTIONS_RUNTIME_TOKEN; GITHUB_API_URL,
   * GITHUB_REPOSITORY and GITHUB_REF, as the runner sets them, for the REST API's stand-in.
   */
  env: Record<string, string>;
  api: RestApi;
  /** The port of the signed URLs' host (the proxy in front of Azurite). */
  storagePort: number;
  /** All entries (copies), in creation order. Evicted (deleted) entries are not listed. */
  entries(): CacheEntry[];
  /**
   * Calls per Twirp method name, e.g. requests.CreateCacheEntry. Counts every POST that named the method,
   * including ones rejected (bad token, bad body); `upload` counts archives uploaded whole (a Put Blob or Put Block
   * List the storage took), `download` the signed-URL GETs. Live object: read it after the calls you care about.
   */
  requests: Record<string, number>;
  /** Every call, in the order they came. */
  calls: CallRecord[];
  /** Answers 429 (or 503) with Retry-After in this window (null: no more). setFault's faults come first. */
  setRateLimit(window: RateLimitWindow | null): void;
  /** Simulates GitHub evicting every entry with this key (any version). Its blob is deleted too. */
  deleteEntry(key: string): void;
  /**
   * Makes the service misbehave for the named Twirp methods (all when none are named) until cleared with
   * null: answer with an HTTP status (500, 429 with Retry-After, ...) or hang for hangMs before answering.
   */
  setFault(fault: CacheFault | null): void;
  /** The archive an entry holds, as uploaded (tar, zstd- or gzip-compressed). */
  entryContent(key: string): Promise<Buffer>;
  /** Replaces what an entry holds (a damaged entry: same key, other bytes), keeping its key and version. */
  replaceEntryContent(key: string, archive: Buffer): Promise<void>;
  /** Saves an entry as any job with write access to the scope could: this key and version, these bytes (in `ref`'s scope). */
  plantEntry(key: string, version: string, archive: Buffer, ref?: string): Promise<void>;
  /** Makes the entries whose key matches `ms` older (their created and last-accessed times); how many it moved. */
  backdate(keys: RegExp, ms: number): number;
  /** Stops the HTTP server and Azurite (by its pid). */
  stop(): Promise<void>;
}

const SERVICE_PREFIX = '/twirp/github.actions.results.api.v1.CacheService/';
const ACCOUNT = 'devstoreaccount1';
// Azurite's well-known development key (public, documented by Microsoft).
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const CONTAINER = 'actions-cache';
const AZURITE_BIN = fileURLToPath(new URL('../../node_modules/.bin/azurite-blob', import.meta.url));

interface StoredEntry extends CacheEntry {
  blobName: string;
}

const REST_REPOSITORY = 'octo-org/octo-repo';
const REST_REF = 'refs/heads/main';

class TwirpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function startCacheService(dir: string): Promise<CacheService> {
  await mkdir(dir, { recursive: true });
  const blobPort = await freePort();
  const azurite = startProcess(
    AZURITE_BIN,
    ['--blobHost', '127.0.0.1', '--blobPort', String(blobPort), '--skipApiVersionCheck', '--disableTelemetry', '--location', dir],
    join(dir, 'azurite.log'),
  );
  let server: Server | undefined;
  let storage: Server | undefined;
  let rest: Server | undefined;
  try {
    const blobEndpoint = `http://127.0.0.1:${blobPort}/${ACCOUNT}`;
    const log = join(dir, 'azurite.log');
    await Promise.race([
      waitFor('azurite', () => answers(blobEndpoint), 30_000),
      azurite.exited.then((code) => {
        throw new Error(`azurite exited early (${code}), see ${log}`);
      }),
    ]);
    const credential = new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY);
    const container = new BlobServiceClient(blobEndpoint, credential).getContainerClient(CONTAINER);
    await container.create();

    const token = randomBytes(16).toString('hex');
    storage = createServer((req, res) => void state.forward(req, res, blobPort));
    const storagePort = await listen(storage);
    const state = new ServiceState(container, credential, storagePort);
    server = createServer((req, res) => void state.handle(req, res, token));
    const port = await listen(server);
    const api = {
      repository: REST_REPOSITORY,
      ref: REST_REF,
      writeToken: `ghs_w${randomBytes(16).toString('hex')}`,
      readToken: `ghs_r${randomBytes(16).toString('hex')}`,
    };
    rest = createServer((req, res) => void state.rest(req, res, api));
    const apiPort = await listen(rest);
    const httpServer = server;
    const storageServer = storage;
    const restServer = rest;

    return {
      env: {
        ACTIONS_CACHE_SERVICE_V2: '1',
        ACTIONS_RESULTS_URL: `http://127.0.0.1:${port}/`,
        ACTIONS_RUNTIME_TOKEN: token,
        GITHUB_API_URL: `http://127.0.0.1:${apiPort}`,
        GITHUB_REPOSITORY: REST_REPOSITORY,
        GITHUB_REF: REST_REF,
      },
      api: { ...api, url: `http://127.0.0.1:${apiPort}`, port: apiPort },
      storagePort,
      calls: state.calls,
      setRateLimit: (window) => {
        state.window = window && { ...window };
        state.windowStarted = undefined;
        state.windowSkipped = undefined;
      },
      entries: () =>
        state.entries.map(({ id, key, ref, version, sizeBytes, createdAt, lastAccessedAt, finalized, downloads }) => ({
          id,
          key,
          ref,
          version,
          sizeBytes,
          createdAt,
          lastAccessedAt,
          finalized,
          downloads,
        })),
      requests: state.requests,
      deleteEntry: (key) => state.deleteEntry(key),
      replaceEntryContent: (key, archive) => state.replaceEntryContent(key, archive),
      plantEntry: (key, version, archive, ref) => state.plantEntry(key, version, archive, ref),
      backdate: (keys, ms) => state.backdate(keys, ms),
      entryContent: (key) => state.entryContent(key),
      setFault: (fault) => (state.fault = fault),
      stop: async () => {
        await closeServer(httpServer);
        await closeServer(storageServer);
        await closeServer(restServer);
        await Promise.allSettled(state.pending);
        await azurite.stop();
      },
    };
  } catch (error) {
    if (server?.listening) await closeServer(server);
    if (storage?.listening) await closeServer(storage);
    if (rest?.listening) await closeServer(rest);
    await azurite.stop();
    throw error;
  }
}

async function listen(server: Server): Promise<number> {
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return port;
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

class ServiceState {
  readonly entries: StoredEntry[] = [];
  readonly requests: Record<string, number> = {};
  readonly calls: CallRecord[] = [];
  readonly pending = new Set<Promise<unknown>>();
  fault: CacheFault | null = null;
  window: RateLimitWindow | null = null;
  windowStarted: number | undefined;
  windowSkipped: number | undefined;
  private nextId = 1;

  constructor(
    private readonly container: ContainerClient,
    private readonly credential: StorageSharedKeyCredential,
    private readonly storagePort: number,
  ) {}

  /** The Retry-After to answer this call with, when the rate-limit window covers it; records the call either way. */
  private limited(call: string, host: CallRecord['host'], key: string): { status: number; header: string; ms: number } | undefined {
    const w = this.window;
    const twirp = host === 'service';
    const matches = w && (w.calls ? w.calls.includes(call) : twirp) && (!w.keys || (twirp && w.keys.test(key)));
    if (!matches) return undefined;
    if ((this.windowSkipped = (this.windowSkipped ?? 0) + 1) <= (w.skipFirst ?? 0)) return undefined;
    const now = Date.now();
    this.windowStarted ??= now;
    if (now >= this.windowStarted + w.forMs) return undefined;
    const ms = (w.retryAfter ?? 2) * 1000;
    const header = w.retryAfterDate ? new Date(Math.ceil((now + ms) / 1000) * 1000).toUTCString() : String(w.retryAfter ?? 2);
    return { status: w.status ?? 429, header, ms: w.retryAfterDate ? Math.ceil((now + ms) / 1000) * 1000 - now : ms };
  }

  private record(call: string, host: CallRecord['host'], key: string, status: number, retryAfterMs?: number): void {
    this.calls.push({ call, host, key, at: Date.now(), status, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
  }

  /** The signed URLs' host: passes each request on to Azurite, or refuses it in a rate-limit window. */
  async forward(req: IncomingMessage, res: ServerResponse, azuritePort: number): Promise<void> {
    const call = req.method === 'PUT' ? 'upload' : 'download';
    const comp = new URL(req.url ?? '/', 'http://x').searchParams.get('comp') ?? '';
    const limit = this.limited(call, 'storage', '');
    if (limit) {
      req.resume();
      this.record(call, 'storage', comp, limit.status, limit.ms);
      res.writeHead(limit.status, { 'retry-after': limit.header, 'content-length': 0 }).end();
      return;
    }
    const upstream = httpRequest(
      { host: '127.0.0.1', port: azuritePort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        const status = answer.statusCode ?? 502;
        this.record(call, 'storage', comp, status);
        if (req.method === 'PUT' && status < 300 && (!comp || comp === 'blocklist')) this.requests.upload = (this.requests.upload ?? 0) + 1;
        if (req.method === 'GET' && status < 300) this.requests.download = (this.requests.download ?? 0) + 1;
        res.writeHead(status, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }

  async handle(req: IncomingMessage, res: ServerResponse, token: string): Promise<void> {
    let method = '';
    let key = '';
    try {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      method = url.pathname.startsWith(SERVICE_PREFIX) ? url.pathname.slice(SERVICE_PREFIX.length) : '';
      const body = await readBody(req);
      if (req.method !== 'POST' || !method) throw new TwirpError(404, 'bad_route', `no handler for ${req.method} ${url.pathname}`);
      this.requests[method] = (this.requests[method] ?? 0) + 1;
      if (req.headers.authorization !== `Bearer ${token}`) throw new TwirpError(401, 'unauthenticated', 'invalid or missing bearer token');
      key = keyOf(body);
      const fault =
        this.fault && (!this.fault.methods || this.fault.methods.includes(method)) && (!this.fault.keys || this.fault.keys.test(key))
          ? this.fault
          : null;
      if (fault?.hangMs) await new Promise((resolve) => setTimeout(resolve, fault.hangMs).unref());
      if (fault?.status === 429) {
        res.setHeader('retry-after', String(fault.retryAfter ?? 60));
        throw new TwirpError(429, 'resource_exhausted', 'too many cache entries created, retry later');
      }
      if (fault?.status) throw new TwirpError(fault.status, 'unavailable', `injected fault: HTTP ${fault.status}`);
      const limit = this.limited(method, 'service', key);
      if (limit) {
        this.record(method, 'service', key, limit.status, limit.ms);
        res.setHeader('retry-after', limit.header);
        throw new TwirpError(limit.status, 'resource_exhausted', 'rate limit exceeded, retry later');
      }
      if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) {
        throw new TwirpError(415, 'bad_route', 'only application/json is supported');
      }
      let request: Record<string, unknown>;
      try {
        request = JSON.parse(body.toString('utf8') || '{}');
      } catch {
        throw new TwirpError(400, 'malformed', 'the request body is not JSON');
      }
      let response: unknown;
      switch (method) {
        case 'CreateCacheEntry':
          response = this.create(request);
          break;
        case 'FinalizeCacheEntryUpload':
          response = await this.finalize(request);
          break;
        case 'GetCacheEntryDownloadURL':
          response = this.lookup(request);
          break;
        default:
          throw new TwirpError(404, 'bad_route', `no method ${method}`);
      }
      this.record(method, 'service', key, 200);
      send(res, 200, response);
    } catch (error) {
      if (error instanceof TwirpError && error.code !== 'resource_exhausted') this.record(method, 'service', key, error.status);
      if (error instanceof TwirpError) send(res, error.status, { code: error.code, msg: error.message });
      else send(res, 500, { code: 'internal', msg: String((error as Error)?.message ?? error) });
    }
  }

  private create(request: Record<string, unknown>, ref = REST_REF) {
    const key = requireString(request, 'key');
    const version = requireString(request, 'version');
    if (this.entries.some((e) => e.key === key && e.version === version)) return { ok: false, signed_upload_url: '', message: '' };
    const id = this.nextId++;
    const entry: StoredEntry = {
      id,
      blobName: `entry-${id}`,
      key,
      ref,
      version,
      sizeBytes: 0,
      createdAt: Date.now(),
      lastAccessedAt: Date.now(),
      finalized: false,
      downloads: 0,
    };
    this.entries.push(entry);
    return { ok: true, signed_upload_url: this.sasUrl(entry.blobName, 'cw'), message: '' };
  }

  private async finalize(request: Record<string, unknown>) {
    const key = requireString(request, 'key');
    const version = requireString(request, 'version');
    const sizeBytes = Number(request.size_bytes ?? 0);
    const entry = this.entries.find((e) => e.key === key && e.version === version && !e.finalized);
    if (!entry) return { ok: false, entry_id: '0', message: `no reserved cache entry for key ${key}` };
    const exists = await this.container.getBlobClient(entry.blobName).exists();
    if (!exists) return { ok: false, entry_id: '0', message: `nothing was uploaded for key ${key}` };
    entry.sizeBytes = sizeBytes;
    entry.finalized = true;
    return { ok: true, entry_id: String(entry.id), message: '' };
  }

  private lookup(request: Record<string, unknown>) {
    const key = requireString(request, 'key');
    const version = requireString(request, 'version');
    const restoreKeys = Array.isArray(request.restore_keys) ? request.restore_keys.map(String) : [];
    const candidates = this.entries.filter((e) => e.finalized && e.version === version).reverse(); // newest first
    let hit: StoredEntry | undefined;
    for (const wanted of [key, ...restoreKeys]) {
      hit = candidates.find((e) => e.key === wanted) ?? candidates.find((e) => e.key.startsWith(wanted));
      if (hit) break;
    }
    if (!hit) return { ok: false, signed_download_url: '', matched_key: '' };
    hit.downloads++;
    hit.lastAccessedAt = Date.now();
    return { ok: true, signed_download_url: this.sasUrl(hit.blobName, 'r'), matched_key: hit.key };
  }

  async entryContent(key: string): Promise<Buffer> {
    const entry = this.entries.find((e) => e.key === key && e.finalized);
    if (!entry) throw new Error(`no finalized entry ${key}`);
    return this.container.getBlockBlobClient(entry.blobName).downloadToBuffer();
  }

  async replaceEntryContent(key: string, archive: Buffer): Promise<void> {
    const entry = this.entries.find((e) => e.key === key && e.finalized);
    if (!entry) throw new Error(`no finalized entry ${key}`);
    await this.container.getBlockBlobClient(entry.blobName).uploadData(archive);
    entry.sizeBytes = archive.length;
  }

  async plantEntry(key: string, version: string, archive: Buffer, ref?: string): Promise<void> {
    const { ok } = this.create({ key, version }, ref);
    if (!ok) throw new Error(`an entry ${key} of that version exists already`);
    const entry = this.entries[this.entries.length - 1];
    await this.container.getBlockBlobClient(entry.blobName).uploadData(archive);
    Object.assign(entry, { sizeBytes: archive.length, finalized: true });
  }

  backdate(keys: RegExp, ms: number): number {
    const moved = this.entries.filter((e) => keys.test(e.key));
    for (const e of moved) Object.assign(e, { createdAt: e.createdAt - ms, lastAccessedAt: e.lastAccessedAt - ms });
    return moved.length;
  }

  /** The REST API's cache list and delete (see the top of this file). */
  async rest(req: IncomingMessage, res: ServerResponse, api: Omit<RestApi, 'url' | 'port'>): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    await readBody(req);
    const base = `/repos/${api.repository}/actions/caches`;
    const call = req.method === 'DELETE' ? 'rest:delete' : 'rest:list';
    const answer = (status: number, body?: unknown) => {
      this.record(call, 'api', url.pathname.slice(base.length + 1), status);
      if (body === undefined) res.writeHead(status).end();
      else send(res, status, body);
    };
    this.requests[call] = (this.requests[call] ?? 0) + 1;
    const limit = this.limited(call, 'api', '');
    if (limit) {
      this.record(call, 'api', '', limit.status, limit.ms);
      res.setHeader('retry-after', limit.header);
      send(res, limit.status, { message: 'You have exceeded a secondary rate limit.' });
      return;
    }
    const token = /^(?:Bearer|token) (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (token !== api.writeToken && token !== api.readToken) return answer(401, { message: 'Bad credentials' });
    if (req.method === 'GET' && url.pathname === base) {
      const q = url.searchParams;
      const key = q.get('key') ?? '';
      const ref = q.get('ref');
      const wantedRef = ref && !ref.startsWith('refs/') ? `refs/heads/${ref}` : ref;
      const sort = q.get('sort') ?? 'last_accessed_at';
      const field = { created_at: 'createdAt', last_accessed_at: 'lastAccessedAt', size_in_bytes: 'sizeBytes' }[sort] as
        'createdAt' | 'lastAccessedAt' | 'sizeBytes' | undefined;
      if (!field) return answer(422, { message: `Invalid sort: ${sort}` });
      const sign = q.get('direction') === 'asc' ? 1 : -1;
      const perPage = Math.min(100, Math.max(1, Number(q.get('per_page') ?? 30) || 30));
      const page = Math.max(1, Number(q.get('page') ?? 1) || 1);
      const matching = this.entries
        .filter((e) => e.finalized && e.key.startsWith(key) && (!wantedRef || e.ref === wantedRef))
        .sort((a, b) => sign * (a[field] - b[field]) || sign * (a.id - b.id));
      return answer(200, {
        total_count: matching.length,
        actions_caches: matching.slice((page - 1) * perPage, page * perPage).map((e) => ({
          id: e.id,
          ref: e.ref,
          key: e.key,
          version: e.version,
          last_accessed_at: new Date(e.lastAccessedAt).toISOString(),
          created_at: new Date(e.createdAt).toISOString(),
          size_in_bytes: e.sizeBytes,
        })),
      });
    }
    const id = new RegExp(`^${base}/(\\d+)$`).exec(url.pathname)?.[1];
    if (req.method === 'DELETE' && id) {
      if (token !== api.writeToken)
        return answer(403, {
          message: 'Resource not accessible by integration',
          documentation_url: 'https://docs.github.com/rest/actions/cache#delete-a-github-actions-cache-for-a-repository-using-a-cache-id',
        });
      const entry = this.entries.find((e) => e.id === Number(id) && e.finalized);
      if (!entry) return answer(404, { message: 'Not Found' });
      this.removeEntry(entry);
      return answer(204);
    }
    answer(404, { message: 'Not Found' });
  }

  private removeEntry(entry: StoredEntry): void {
    this.entries.splice(this.entries.indexOf(entry), 1);
    const deleting = this.container
      .getBlobClient(entry.blobName)
      .deleteIfExists()
      .catch(() => undefined);
    this.pending.add(deleting);
    void deleting.finally(() => this.pending.delete(deleting));
  }

  deleteEntry(key: string): void {
    for (const entry of this.entries.filter((e) => e.key === key)) this.removeEntry(entry);
  }

  private sasUrl(blobName: string, permissions: string): string {
    const sas = generateBlobSASQueryParameters(
      {
        containerName: CONTAINER,
        blobName,
        permissions: BlobSASPermissions.parse(permissions),
        startsOn: new Date(Date.now() - 60_000),
        expiresOn: new Date(Date.now() + 3_600_000),
      },
      this.credential,
    ).toString();
    const url = new URL(`${this.container.getBlobClient(blobName).url}?${sas}`);
    url.port = String(this.storagePort);
    return url.toString();
  }
}

function requireString(request: Record<string, unknown>, field: string): string {
  const value = request[field];
  if (typeof value !== 'string' || value === '') throw new TwirpError(400, 'invalid_argument', `${field} is required`);
  return value;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The key a request names, for faults that pick requests by key; '' when its body is not JSON. */
function keyOf(body: Buffer): string {
  try {
    return String((JSON.parse(body.toString('utf8') || '{}') as { key?: unknown }).key ?? '');
  } catch {
    return '';
  }
}
