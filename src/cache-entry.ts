// One Actions cache entry, restored and saved by this action itself, speaking the cache service's protocol (the
// Twirp calls and signed URLs @actions/cache uses) with the token held in a variable, never in an environment.
// Restoring trusts nothing: @actions/cache extracts with `tar -P`, which honours absolute and `..` member names,
// symlinks and hard links, so an entry made by anyone who can save into this cache scope could write wherever
// the runner user can. So the action downloads the entry with a size bound, decompresses it with a bound on the
// bytes it may expand to, lists the archive, refuses it unless every member is a regular file or directory it
// expects, no larger than expected, and only then extracts it, without -P, into an empty directory of its own.
// Saving builds the archive with the action's own tar (which never sees the token), then creates, uploads and
// finalizes the entry. Every call, the signed URLs' included, waits out the service's rate limits (rate-limit.ts).
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';
import { createGunzip } from 'node:zlib';
import { KEY } from './cache-index.js';
import { commandOutput, commandPath, startChild } from './processes.js';
import { fetchRetrying, type CallKind, type HeldBack } from './rate-limit.js';
import { mapBounded } from './bounded.js';
import { sha256Hex } from './sha256.js';

/** How @actions/cache compresses on this runner; part of every entry's version. */
export type Compression = 'zstd-without-long' | 'gzip';

/** The files an entry may hold, by path relative to the directory it is restored into, with their size bound. */
export type ExpectedFiles = Map<string, number>;

/** Why an archive was refused: the entry is hostile or damaged, and nothing of it was extracted. */
export class RefusedArchive extends Error {
  override name = 'RefusedArchive';
}

/** The Actions cache service v2: its address and this job's token. Passed as a value; never put in an environment. */
export interface CacheService {
  url: string;
  token: string;
  /** The most one call waits for the service's rate limits, when less than its deadline leaves (main's index look-up). */
  maxWaitMs?: number;
}

/** The cache service as the runner gives it to a step, or undefined when this job has none (not github.com, v1). */
export function cacheServiceOf(env: NodeJS.ProcessEnv): CacheService | undefined {
  const url = env.ACTIONS_RESULTS_URL;
  if (!env.ACTIONS_CACHE_SERVICE_V2 || !url) return undefined;
  return { url: url.endsWith('/') ? url : `${url}/`, token: env.ACTIONS_RUNTIME_TOKEN ?? '' };
}

/** Why nothing can be restored or saved: said where a cache service was needed and none was given. */
export const NO_CACHE_SERVICE = 'the Actions cache service v2 is not available to this job (ACTIONS_CACHE_SERVICE_V2, ACTIONS_RESULTS_URL)';

/** The version @actions/cache gives an entry saved with these paths (its getCacheVersion, salt 1.0, on Linux). */
export function cacheVersion(paths: string[], compression: Compression): string {
  return sha256Hex([...paths, compression, '1.0'].join('|'));
}

let compressionOnRunner: Promise<Compression> | undefined;

/** As @actions/cache decides: zstd when the zstd CLI answers, gzip otherwise. */
function runnerCompression(): Promise<Compression> {
  compressionOnRunner ??= commandOutput('zstd', ['--quiet', '--version'], { timeout: 10_000 }).then(
    (out) => (out.trim() ? 'zstd-without-long' : 'gzip'),
    () => 'gzip',
  );
  return compressionOnRunner;
}

export interface EntryRequest {
  service: CacheService;
  /** The paths it was saved with (the version hashes them). */
  paths: string[];
  /** The key, or a key prefix (the cache service matches prefixes, newest first). */
  key: string;
  /** Every file the archive may hold, relative to `into`, with the most bytes it may have. */
  expected: ExpectedFiles;
  /** An empty directory that receives the files; the archive is downloaded beside it. */
  into: string;
  signal: AbortSignal;
  /** Counts how long the service's rate limits held this entry back. */
  held?: HeldBack;
}

/**
 * Restores the entry into `into`; returns the key that matched, or undefined when the cache holds no such entry.
 * Throws RefusedArchive when the archive holds anything not expected (nothing is extracted then).
 */
export async function restoreEntry(request: EntryRequest): Promise<string | undefined> {
  const compression = await runnerCompression();
  const found = await lookupEntry(request.service, request.paths, request.key, compression, request.signal, request.held);
  if (!found) return undefined;
  await mkdir(request.into, { recursive: true });
  const archive = `${request.into}.archive`;
  const plain = `${request.into}.tar`;
  try {
    await download(request.service, found, archive, archiveBound(request.expected), request.signal, request.held);
    await decompress(archive, plain, compression, tarBound(request.expected), request.signal);
    await rm(archive, { force: true });
    const problem = archiveProblem(await tar(['-t', '-v', '--numeric-owner', '-f', plain], request.signal), request.expected);
    if (problem) throw new RefusedArchive(problem);
    await tar(['-x', '-f', plain, '-C', request.into, '--no-same-owner', '--no-same-permissions'], request.signal);
    return found.key;
  } catch (e) {
    throw e instanceof RefusedArchive ? new RefusedArchive(`${found.key}: ${e.message}`) : e;
  } finally {
    await Promise.all([rm(archive, { force: true }), rm(plain, { force: true })]);
  }
}

/** Whether the cache holds this very entry (a look-up: nothing is downloaded). */
export async function entryExists(
  service: CacheService,
  paths: string[],
  key: string,
  signal: AbortSignal,
  held?: HeldBack,
): Promise<boolean> {
  const found = await lookupEntry(service, paths, key, await runnerCompression(), signal, held);
  return found?.key === key;
}

/** The most bytes an archive of these files can take compressed: layers do not compress, tar adds headers. */
function archiveBound(expected: ExpectedFiles): number {
  const bytes = [...expected.values()].reduce((a, b) => a + b, 0);
  return Math.ceil(bytes * 1.01) + 1024 * 1024;
}

/**
 * The most bytes the archive of these files can take once decompressed: the files, and per member a header, a
 * pax header and padding (a few 512-byte blocks), with room to spare. A small archive that expands far past it (a
 * decompression bomb) is refused before it fills the disk.
 */
function tarBound(expected: ExpectedFiles): number {
  const bytes = [...expected.values()].reduce((a, b) => a + b, 0);
  const members = expected.size + new Set([...expected.keys()].flatMap(ancestors)).size;
  return bytes + members * 4 * 512 + 1024 * 1024;
}

/** One Twirp call to the cache service (JSON), waiting out rate limits and retried on a 5xx; gives the status and body. */
async function twirp<T>(
  service: CacheService,
  method: string,
  request: object,
  call: { what: string; kind: CallKind; signal: AbortSignal; held?: HeldBack },
): Promise<{ status: number; body: Partial<T> }> {
  const url = new URL(`twirp/github.actions.results.api.v1.CacheService/${method}`, service.url);
  const res = await fetchRetrying(
    url,
    () => ({
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${service.token}` },
      body: JSON.stringify(request),
    }),
    { ...call, maxWaitMs: service.maxWaitMs },
  );
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Partial<T> };
}

/** GetCacheEntryDownloadURL, as @actions/cache calls it against the cache service v2. */
async function lookupEntry(
  service: CacheService,
  paths: string[],
  key: string,
  compression: Compression,
  signal: AbortSignal,
  held?: HeldBack,
): Promise<{ key: string; url: string } | undefined> {
  const what = `looking up ${key}`;
  const request = { key, restore_keys: [], version: cacheVersion(paths, compression) };
  type Found = { ok: boolean; signed_download_url: string; matched_key: string };
  const { status, body } = await twirp<Found>(service, 'GetCacheEntryDownloadURL', request, { what, kind: 'look-ups', signal, held });
  if (status >= 300) throw new Error(`the cache service answered ${status} ${what}`);
  const { ok, signed_download_url: url, matched_key: matched } = body;
  if (!ok || typeof url !== 'string' || typeof matched !== 'string' || !matched) return undefined;
  // Whoever saves into the scope chooses the rest of a key the service matches by prefix: it goes no further
  // (a message, the report, an output) unless it is a key this action could have made.
  if (!KEY.test(matched) || !matched.startsWith(key))
    throw new RefusedArchive(`the cache service answered with a key that is not one asked for (${key}…, of the characters A-Za-z0-9._-)`);
  return { key: matched, url };
}

/** What saving one entry came to: uploaded, or there already (another job saved the same key, or is saving it). */
export type SaveOutcome = 'saved' | 'exists';

export interface SaveRequest {
  service: CacheService;
  /** The paths to archive, relative to `from`: the version hashes them, the archive names its members by them. */
  paths: string[];
  key: string;
  /** The directory the paths are relative to. */
  from: string;
  /** Where the archive is built (outside the archived paths); removed once uploaded. */
  archive: string;
  signal: AbortSignal;
  /** Counts how long the service's rate limits held this entry back. */
  held?: HeldBack;
}

/**
 * Archives the paths with the action's own tar (as @actions/cache archives them: posix format, names relative to
 * `from`, zstd -T0 or gzip), then creates the entry, uploads the archive to the URL the service signs, and
 * finalizes it. Throws when the service refuses or fails.
 */
export async function saveEntry(request: SaveRequest): Promise<SaveOutcome> {
  const { service, paths, key, signal, held } = request;
  const compression = await runnerCompression();
  const version = cacheVersion(paths, compression);
  await mkdir(dirname(request.archive), { recursive: true });
  try {
    const compress = compression === 'gzip' ? ['-z'] : ['--use-compress-program', `${commandPath('zstd')} -T0`];
    await tar(['--posix', '-c', '-f', request.archive, ...compress, '-C', request.from, '--', ...paths], signal);
    const size = (await stat(request.archive)).size;
    type Created = { ok: boolean; signed_upload_url: string };
    const created = await twirp<Created>(
      service,
      'CreateCacheEntry',
      { key, version },
      { what: `creating ${key}`, kind: 'creates', signal, held },
    );
    // A key another job saved or is uploading: {ok: false} (github.com answers 409 for a finalized one).
    if (created.status === 409 || (created.status < 300 && !created.body.ok)) return 'exists';
    const uploadUrl = created.body.signed_upload_url;
    if (created.status >= 300 || typeof uploadUrl !== 'string')
      throw new Error(`the cache service answered ${created.status} creating ${key}`);
    await upload(service, uploadUrl, request.archive, size, { what: `uploading ${key}`, kind: 'uploads', signal, held });
    type Finalized = { ok: boolean; entry_id: string };
    const finalize = { key, version, size_bytes: String(size) };
    const call = { what: `finalizing ${key}`, kind: 'finalizes' as const, signal, held };
    const finalized = await twirp<Finalized>(service, 'FinalizeCacheEntryUpload', finalize, call);
    if (finalized.status >= 300 || !finalized.body.ok) throw new Error(`the cache service did not finalize ${key} (${finalized.status})`);
    return 'saved';
  } finally {
    await rm(request.archive, { force: true });
  }
}

/** An archive up to this size goes up in one Put Blob; a larger one in blocks of this size (Put Block, Put Block List). */
const BLOCK_BYTES = 8 * 1024 * 1024;
/** Blocks uploaded at once per entry: with the save's entries at once, bounds the memory the blocks take. */
const BLOCKS_AT_ONCE = 4;
/** The Blob service version the requests ask for (any the signed URL's storage serves). */
const BLOB_API_VERSION = '2023-11-03';

/**
 * Uploads the archive to the signed URL as Azure Blob storage takes it: one Put Blob, or Put Block for each block
 * (ids of one length, base64) and then Put Block List. Each request is retried as a cache service call is, so a
 * 429 or 503 from the storage is waited out (the Azure SDK retries 500/503 only and ignores Retry-After).
 */
async function upload(
  service: CacheService,
  signedUrl: string,
  archive: string,
  size: number,
  call: { what: string; kind: CallKind; signal: AbortSignal; held?: HeldBack },
): Promise<void> {
  const file = await open(archive);
  const put = async (url: URL, headers: Record<string, string>, body: () => Promise<Uint8Array<ArrayBuffer>>) => {
    const init = async () => ({ method: 'PUT', headers: { 'x-ms-version': BLOB_API_VERSION, ...headers }, body: await body() });
    const res = await fetchRetrying(url, init, { ...call, maxWaitMs: service.maxWaitMs });
    await res.body?.cancel().catch(() => undefined);
    if (!res.ok) throw new Error(`the cache storage answered ${res.status} ${call.what}`);
  };
  const range = async (offset: number, length: number) => {
    const buffer = new Uint8Array(length);
    const { bytesRead } = await file.read(buffer, 0, length, offset);
    if (bytesRead !== length) throw new Error(`${archive} changed while it was uploaded`);
    return buffer;
  };
  try {
    if (size <= BLOCK_BYTES) {
      await put(new URL(signedUrl), { 'x-ms-blob-type': 'BlockBlob' }, () => range(0, size));
      return;
    }
    const ids = Array.from({ length: Math.ceil(size / BLOCK_BYTES) }, (_, i) =>
      Buffer.from(`block-${String(i).padStart(6, '0')}`).toString('base64'),
    );
    // Appended to the query as it is: the signature's own encoding is left alone.
    const withQuery = (extra: string) => new URL(`${signedUrl}${signedUrl.includes('?') ? '&' : '?'}${extra}`);
    await mapBounded(ids, BLOCKS_AT_ONCE, async (id, i) => {
      const offset = i * BLOCK_BYTES;
      await put(withQuery(`comp=block&blockid=${encodeURIComponent(id)}`), {}, () => range(offset, Math.min(BLOCK_BYTES, size - offset)));
    });
    const list = `<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map((id) => `<Latest>${id}</Latest>`).join('')}</BlockList>`;
    await put(withQuery('comp=blocklist'), { 'content-type': 'application/xml' }, async () => new TextEncoder().encode(list));
  } finally {
    await file.close();
  }
}

/** Streams the archive to a file, stopping at maxBytes: a hostile entry cannot fill the disk. */
async function download(
  service: CacheService,
  found: { key: string; url: string },
  file: string,
  maxBytes: number,
  signal: AbortSignal,
  held?: HeldBack,
): Promise<void> {
  const call = { what: `downloading ${found.key}`, kind: 'downloads' as const, signal, held, maxWaitMs: service.maxWaitMs };
  const res = await fetchRetrying(found.url, () => ({}), call);
  if (!res.ok || !res.body) throw new Error(`downloading the entry failed: HTTP ${res.status}`);
  const refusal = `the archive is larger than its files can be (${maxBytes} bytes)`;
  await pipeline(Readable.fromWeb(res.body as ReadableStream<Uint8Array>), bounded(maxBytes, refusal), createWriteStream(file), { signal });
}

/** Passes bytes on until more than maxBytes went through, then fails with RefusedArchive. */
function bounded(maxBytes: number, refusal: string): Transform {
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done(bytes > maxBytes ? new RefusedArchive(refusal) : null, chunk);
    },
  });
}

/**
 * Decompresses the archive into a plain tar file, stopping past maxBytes. zstd's default memory limit (a 128 MiB
 * window) bounds what a frame may ask for; gzip is decompressed in this process.
 */
async function decompress(archive: string, plain: string, compression: Compression, maxBytes: number, signal: AbortSignal): Promise<void> {
  const refusal = `it expands to more than its files can be (${maxBytes} bytes)`;
  if (compression === 'gzip') {
    await pipeline(createReadStream(archive), createGunzip(), bounded(maxBytes, refusal), createWriteStream(plain), { signal });
    return;
  }
  const zstd = startChild('zstd', ['-d', '-c', '-q', '--', archive], { kind: 'command', stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  zstd.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + String(chunk)).slice(-2000)));
  const exited = new Promise<number | null>((resolve, reject) => zstd.once('error', reject).once('close', (code) => resolve(code)));
  try {
    await pipeline(zstd.stdout!, bounded(maxBytes, refusal), createWriteStream(plain), { signal });
  } catch (e) {
    zstd.kill('SIGKILL');
    await exited.catch(() => null);
    throw e;
  }
  const code = await exited;
  if (code !== 0) throw new RefusedArchive(`it does not decompress (zstd exited with ${code}: ${stderr.trim().slice(0, 200)})`);
}

/** GNU tar's verbose listing: type and mode, owner/group, size, date, time, name (names are escaped, one line each). */
const LISTING_LINE = /^([-d])[-rwxsStT]{9} \d+\/\d+ +(\d+) \d{4}-\d\d-\d\d \d\d:\d\d (.+)$/;

/**
 * Why an archive listing is not what was expected, or '' when it is: only regular files at the expected paths, each
 * once and within its size, and the directories above them. Links, devices, absolute or `..` names: refused.
 */
export function archiveProblem(listing: string, expected: ExpectedFiles): string {
  const directories = new Set([...expected.keys()].flatMap(ancestors));
  const seen = new Set<string>();
  for (const line of listing.split('\n').filter(Boolean)) {
    const m = LISTING_LINE.exec(line);
    if (!m) return `it holds a member that is not a plain file or directory: ${quote(line)}`;
    const [, type, size, name] = m;
    if (type === 'd') {
      if (!directories.has(name.replace(/\/$/, ''))) return `it holds an unexpected directory ${quote(name)}`;
      continue;
    }
    const bound = expected.get(name);
    if (bound === undefined) return `it holds an unexpected file ${quote(name)}`;
    if (seen.has(name)) return `it holds ${quote(name)} twice`;
    if (Number(size) > bound) return `${quote(name)} is ${size} bytes, more than the ${bound} it may have`;
    seen.add(name);
  }
  return '';
}

function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let dir = dirname(path); dir !== '.' && dir !== '/'; dir = dirname(dir)) out.push(dir);
  return out;
}

function quote(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(clean.length > 120 ? `${clean.slice(0, 117)}...` : clean);
}

function tar(args: string[], signal: AbortSignal): Promise<string> {
  return commandOutput('tar', args, { signal, maxBuffer: 16 * 1024 * 1024 });
}
