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
  key: string;
  version: string;
  /** size_bytes as reported by FinalizeCacheEntryUpload (0 until finalized). */
  sizeBytes: number;
  /** Date.now() at CreateCacheEntry. */
  createdAt: number;
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
  /** The Twirp method, or 'upload' / 'download'. */
  call: string;
  /** 'service' (Twirp) or 'storage' (the signed URLs): each limits its callers on its own. */
  host: 'service' | 'storage';
  /** The Twirp request's key; for the storage, the request's `comp` (block, blocklist; '' for a whole blob). */
  key: string;
  at: number;
  status: number;
  /** The Retry-After it was told, in ms, when refused. */
  retryAfterMs?: number;
}

export interface CacheService {
  /** ACTIONS_CACHE_SERVICE_V2, ACTIONS_RESULTS_URL (trailing slash), ACTIONS_RUNTIME_TOKEN. */
  env: Record<string, string>;
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
  /** Saves an entry as any job with write access to the scope could: this key and version, these bytes. */
  plantEntry(key: string, version: string, archive: Buffer): Promise<void>;
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
  id: number;
  blobName: string;
}

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
    const httpServer = server;
    const storageServer = storage;

    return {
      env: {
        ACTIONS_CACHE_SERVICE_V2: '1',
        ACTIONS_RESULTS_URL: `http://127.0.0.1:${port}/`,
        ACTIONS_RUNTIME_TOKEN: token,
      },
      storagePort,
      calls: state.calls,
      setRateLimit: (window) => {
        state.window = window && { ...window };
        state.windowStarted = undefined;
        state.windowSkipped = undefined;
      },
      entries: () =>
        state.entries.map(({ key, version, sizeBytes, createdAt, finalized, downloads }) => ({
          key,
          version,
          sizeBytes,
          createdAt,
          finalized,
          downloads,
        })),
      requests: state.requests,
      deleteEntry: (key) => state.deleteEntry(key),
      replaceEntryContent: (key, archive) => state.replaceEntryContent(key, archive),
      plantEntry: (key, version, archive) => state.plantEntry(key, version, archive),
      entryContent: (key) => state.entryContent(key),
      setFault: (fault) => (state.fault = fault),
      stop: async () => {
        await closeServer(httpServer);
        await closeServer(storageServer);
        await Promise.allSettled(state.pending);
        await azurite.stop();
      },
    };
  } catch (error) {
    if (server?.listening) await closeServer(server);
    if (storage?.listening) await closeServer(storage);
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

  private create(request: Record<string, unknown>) {
    const key = requireString(request, 'key');
    const version = requireString(request, 'version');
    if (this.entries.some((e) => e.key === key && e.version === version)) return { ok: false, signed_upload_url: '', message: '' };
    const id = this.nextId++;
    const entry: StoredEntry = {
      id,
      blobName: `entry-${id}`,
      key,
      version,
      sizeBytes: 0,
      createdAt: Date.now(),
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

  async plantEntry(key: string, version: string, archive: Buffer): Promise<void> {
    const { ok } = this.create({ key, version });
    if (!ok) throw new Error(`an entry ${key} of that version exists already`);
    const entry = this.entries[this.entries.length - 1];
    await this.container.getBlockBlobClient(entry.blobName).uploadData(archive);
    Object.assign(entry, { sizeBytes: archive.length, finalized: true });
  }

  deleteEntry(key: string): void {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const entry = this.entries[i];
      if (entry.key !== key) continue;
      this.entries.splice(i, 1);
      const deleting = this.container
        .getBlobClient(entry.blobName)
        .deleteIfExists()
        .catch(() => undefined);
      this.pending.add(deleting);
      void deleting.finally(() => this.pending.delete(deleting));
    }
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
