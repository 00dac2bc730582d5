// Pruning: the entries of this action's own that no index names any more (images dropped by the budget, a moved
// tag's old layers, superseded indexes) would stay in the repository's cache for 7 days and push other caches out.
// With a github-token that may write to Actions (optional; nothing happens without it), post deletes them through
// the REST API. The rule, so that nothing a job may still restore is deleted:
// - only keys of this action's own prefix and grammar (<prefix>-blob-, -pack-, -index-), in the job's own ref scope,
//   are candidates: never another prefix's, never another branch's;
// - a blob or pack entry goes only when no index of the last max-age days in that scope names it (each read through
//   the cache service and checked as a restored index is; if any cannot be read, nothing is deleted), and no index
//   this job restored or saved names it;
// - an index entry goes only when it is past max-age and not the newest of its platform;
// - nothing created in the last hour goes: a job running now may be saving an index that names it.
// Listing, reads, deletes and time are bounded; the token is held in a variable, sent only to GITHUB_API_URL.
import { rm, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mapBounded, withDeadline } from './bounded.js';
import { restoreEntry, type CacheService } from './cache-entry.js';
import { INDEX_FILE, KEY, MAX_INDEX_BYTES, readIndex } from './cache-index.js';
import { fetchRetrying, HeldBack } from './rate-limit.js';

/** One cache entry as the REST API lists it (GET /repos/{owner}/{repo}/actions/caches). */
export interface ListedEntry {
  id: number;
  ref: string;
  key: string;
  version: string;
  created_at: string;
  last_accessed_at: string;
  size_in_bytes: number;
}

/** What the rule works from: the prefix and ref scope, max-age, and the time now. */
export interface PruneScope {
  prefix: string;
  ref: string;
  maxAgeDays: number;
  now: number;
}

/** A job running now may be saving an index that names an entry this young. */
export const MIN_AGE_MS = 60 * 60 * 1000;
/** Pages of the listing read at most (100 entries each). */
export const MAX_PAGES = 10;
export const PER_PAGE = 100;
/** Entries one job deletes at most: the rest goes in a later job. */
export const MAX_DELETES = 100;
/** Indexes read at most, and their bytes as listed: past either, nothing is deleted. */
export const MAX_INDEXES_READ = 20;
export const MAX_INDEX_READ_BYTES = 64 * 1024 * 1024;
/** The most pruning may take, within cache-timeout. */
export const PRUNE_MS = 30_000;

const DAY_MS = 86_400_000;
/** Why a token without actions: write deletes nothing: said once in the report, not as a warning. */
export const NEEDS_WRITE = 'pruning needs a github-token with actions: write; nothing deleted';

function escaped(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Which of this action's own entries the key is, by the whole grammar of its keys; undefined for any other key. */
export function ownKind(key: string, prefix: string): 'blob' | 'pack' | 'index' | undefined {
  if (typeof key !== 'string' || !KEY.test(key)) return undefined;
  const p = escaped(prefix);
  // A blob whose entry was damaged is saved again under `-<run id>-<attempt>` (planEntries' salt).
  if (new RegExp(`^${p}-blob-sha256-[0-9a-f]{64}(?:-[0-9a-z]+-\\d+)?$`).test(key)) return 'blob';
  if (new RegExp(`^${p}-pack-sha256-[0-9a-f]{64}(?:-[0-9a-z]+-\\d+)?$`).test(key)) return 'pack';
  // Index keys before the nonce was added end at the time.
  if (new RegExp(`^${p}-index-linux-(?:amd64|arm64)-[0-9a-z]+-\\d+-[0-9a-z]+(?:-[0-9a-f]{6})?$`).test(key)) return 'index';
  return undefined;
}

/** The platform part of an index key (`<prefix>-index-linux-<arch>-`). */
function indexPlatform(key: string, prefix: string): string {
  return key.slice(0, `${prefix}-index-linux-`.length + key.slice(`${prefix}-index-linux-`.length).indexOf('-'));
}

function createdAt(entry: ListedEntry): number {
  const at = Date.parse(entry.created_at);
  return Number.isFinite(at) ? at : NaN;
}

/** This action's own entries in the job's ref scope: the only ones the rule looks at. */
function inScope(listing: ListedEntry[], scope: PruneScope): ListedEntry[] {
  return listing.filter((e) => e.ref === scope.ref && ownKind(e.key, scope.prefix) !== undefined);
}

/**
 * The index entries whose names keep an entry: those of the scope created in the last max-age days (all, with no
 * max-age), and the newest of each platform, which the next job restores whatever its age.
 */
export function indexesThatCount(listing: ListedEntry[], scope: PruneScope): ListedEntry[] {
  const indexes = inScope(listing, scope).filter((e) => ownKind(e.key, scope.prefix) === 'index');
  const newest = new Map<string, ListedEntry>();
  for (const index of indexes) {
    const platform = indexPlatform(index.key, scope.prefix);
    const other = newest.get(platform);
    if (!other || !(createdAt(index) <= createdAt(other))) newest.set(platform, index);
  }
  const recent = (e: ListedEntry) => scope.maxAgeDays === 0 || !(createdAt(e) < scope.now - scope.maxAgeDays * DAY_MS);
  return indexes.filter((e) => recent(e) || newest.get(indexPlatform(e.key, scope.prefix)) === e);
}

/**
 * What to delete, largest first, at most MAX_DELETES: this action's entries of the scope created more than an hour
 * ago that are blobs or packs no key in `named` is, or indexes that do not count (indexesThatCount) and are not one
 * of `ownIndexes` (restored or saved by this job).
 */
export function entriesToDelete(listing: ListedEntry[], named: Set<string>, ownIndexes: Set<string>, scope: PruneScope): ListedEntry[] {
  const counting = new Set(indexesThatCount(listing, scope));
  return inScope(listing, scope)
    .filter((e) => createdAt(e) < scope.now - MIN_AGE_MS)
    .filter((e) => (ownKind(e.key, scope.prefix) === 'index' ? !counting.has(e) && !ownIndexes.has(e.key) : !named.has(e.key)))
    .sort((a, b) => b.size_in_bytes - a.size_in_bytes || a.id - b.id)
    .slice(0, MAX_DELETES);
}

/** Where the REST API is and this job's place in it, as the runner gives them; the token from the input. */
export interface GitHubApi {
  url: string;
  /** owner/repo */
  repository: string;
  /** The job's ref (GITHUB_REF): its cache scope. */
  ref: string;
  token: string;
}

/** The REST API for this job, or why there is none. The token is never part of a message. */
export function githubApiOf(env: NodeJS.ProcessEnv, token: string): GitHubApi | string {
  const repository = env.GITHUB_REPOSITORY ?? '';
  const ref = env.GITHUB_REF ?? '';
  let url: URL;
  try {
    url = new URL(env.GITHUB_API_URL || 'https://api.github.com');
  } catch {
    return 'GITHUB_API_URL is not a URL; nothing deleted';
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password)
    return 'GITHUB_API_URL is not an http(s) URL; nothing deleted';
  if (!/^[A-Za-z0-9-]+\/(?!\.\.?$)[A-Za-z0-9_.-]+$/.test(repository) || !ref)
    return 'pruning needs GITHUB_REPOSITORY and GITHUB_REF, which the runner sets; nothing deleted';
  return { url: url.toString().replace(/\/+$/, ''), repository, ref, token };
}

export interface PruneRequest {
  api: GitHubApi;
  service: CacheService;
  prefix: string;
  maxAgeDays: number;
  /** The registries this job caches (as a restored index is read). */
  registries: string[];
  /** Where indexes are read into (removed after). */
  workDir: string;
  /** Keys this job knows an index names: the entries it restored and kept, and those it saved. */
  known: Set<string>;
  /** The index keys this job restored or saved: never deleted by it. */
  ownIndexes: Set<string>;
  signal: AbortSignal;
}

/** What pruning came to: entries deleted, their bytes as listed, and why nothing or not all was deleted. */
export interface Pruned {
  deleted: number;
  bytes: number;
  /** Empty when every entry the rule named was deleted. */
  reason: string;
}

/** Deletes what the rule names (see the top of this file); what it did is in `progress` even when it throws. */
export async function pruneCache(request: PruneRequest, progress: Pruned): Promise<Pruned> {
  const { api, signal } = request;
  const held = new HeldBack();
  const call = (method: 'GET' | 'DELETE', path: string, what: string) =>
    fetchRetrying(
      `${api.url}/repos/${api.repository}/actions/caches${path}`,
      () => ({
        method,
        headers: {
          accept: 'application/vnd.github+json',
          authorization: `Bearer ${api.token}`,
          'x-github-api-version': '2022-11-28',
          'user-agent': 'pull-cache-action',
        },
      }),
      { what, kind: method === 'GET' ? 'listings' : 'deletes', signal, held },
    );
  const refused = (status: number, headers: Headers) =>
    // GitHub's secondary rate limits answer 403 too, with Retry-After or no requests remaining.
    (status === 403 && !headers.has('retry-after') && headers.get('x-ratelimit-remaining') !== '0') || status === 404;
  const stop = (reason: string) => Object.assign(progress, { reason });

  const listing: ListedEntry[] = [];
  let complete = false;
  for (let page = 1; page <= MAX_PAGES && !complete; page++) {
    const query = new URLSearchParams({
      key: `${request.prefix}-`,
      ref: api.ref,
      sort: 'created_at',
      direction: 'desc',
      per_page: String(PER_PAGE),
      page: String(page),
    });
    const res = await call('GET', `?${query}`, 'listing the cache entries');
    const body = (await res.json().catch(() => null)) as { total_count?: unknown; actions_caches?: unknown } | null;
    if (res.status === 401) return stop('the GitHub API did not take github-token (401); nothing deleted');
    if (refused(res.status, res.headers)) return stop(NEEDS_WRITE);
    if (!res.ok || !body || !Array.isArray(body.actions_caches))
      return stop(`the GitHub API answered ${res.status} listing the cache entries; nothing deleted`);
    const items = body.actions_caches.filter(isListedEntry);
    listing.push(...items);
    complete = items.length < PER_PAGE || listing.length >= Number(body.total_count);
  }
  const scope = { prefix: request.prefix, ref: api.ref, maxAgeDays: request.maxAgeDays, now: Date.now() };
  // Newest first: what was not listed is older than everything listed, and counts only if within max-age.
  const oldest = Math.min(...listing.map(createdAt));
  if (!complete && (scope.maxAgeDays === 0 || !(oldest < scope.now - scope.maxAgeDays * DAY_MS)))
    return stop(`more than ${MAX_PAGES * PER_PAGE} cache entries of this prefix to list; nothing deleted`);

  const toRead = indexesThatCount(listing, scope);
  if (toRead.length > MAX_INDEXES_READ || toRead.reduce((sum, e) => sum + e.size_in_bytes, 0) > MAX_INDEX_READ_BYTES)
    return stop(
      `more than ${MAX_INDEXES_READ} indexes (or ${MAX_INDEX_READ_BYTES / 1024 / 1024} MiB of them) of the last max-age to read; nothing deleted`,
    );
  const named = new Set(request.known);
  const unread: string[] = [];
  await mapBounded(toRead, 4, async (index, i) => {
    const names = await indexNames(request, index.key, join(request.workDir, `pruning-index-${i}`)).catch((e: Error) => {
      if (signal.aborted) throw e;
      return `${index.key}: ${e.message}`;
    });
    if (typeof names === 'string') unread.push(names);
    else names.forEach((key) => named.add(key));
  });
  if (unread.length) return stop(`an index could not be read (${unread[0]}); nothing deleted`);

  for (const entry of entriesToDelete(listing, named, request.ownIndexes, scope)) {
    const res = await call('DELETE', `/${entry.id}`, `deleting ${entry.key}`);
    await res.body?.cancel().catch(() => undefined);
    if (res.status === 204) {
      progress.deleted++;
      progress.bytes += entry.size_in_bytes;
    } else if (res.status === 404)
      continue; // gone already: another job pruned it, or GitHub evicted it
    else if (refused(res.status, res.headers)) return stop(progress.deleted ? `${NEEDS_WRITE.split(';')[0]}; the rest stays` : NEEDS_WRITE);
    else return stop(`the GitHub API answered ${res.status} deleting ${entry.key}; the rest stays`);
  }
  return progress;
}

/** The keys an index names, read through the cache service and checked as a restored index is; throws when it cannot be. */
async function indexNames(request: PruneRequest, key: string, into: string): Promise<string[]> {
  try {
    const found = await restoreEntry({
      service: request.service,
      paths: [INDEX_FILE],
      key,
      expected: new Map([[INDEX_FILE, MAX_INDEX_BYTES]]),
      into,
      signal: request.signal,
    });
    if (found !== key) throw new Error('the cache service did not find it');
    const { index, invalid } = readIndex(await readFile(join(into, INDEX_FILE), 'utf8'), {
      prefix: request.prefix,
      registries: request.registries,
    });
    // What was dropped from it as invalid might have named an entry: read as it is, it does not vouch for the rest.
    if (invalid.length) throw new Error(`it holds what is not valid (${invalid[0]})`);
    return index.entries.map((e) => e.key);
  } finally {
    await rm(into, { recursive: true, force: true });
  }
}

function isListedEntry(value: unknown): value is ListedEntry {
  const e = value as Partial<ListedEntry> | null;
  return (
    typeof e === 'object' &&
    e !== null &&
    Number.isSafeInteger(e.id) &&
    typeof e.ref === 'string' &&
    typeof e.key === 'string' &&
    typeof e.created_at === 'string' &&
    Number.isSafeInteger(e.size_in_bytes) &&
    (e.size_in_bytes as number) >= 0
  );
}

/** What post prunes after its save: what the job restored and saved, and its inputs. */
export interface JobPrune {
  token: string;
  service: CacheService | undefined;
  workDir: string;
  prefix: string;
  maxAgeDays: number;
  registries: string[];
  /** The index the job restored and the entries it named. */
  restored: { restoredKey: string; index: { entries: { key: string }[] } | null };
  /** The entries and the index the job saved, when it saved. */
  saved: { entries: { key: string }[]; indexKey: string } | null;
  timeoutMs: number;
}

/** Post's pruning, within its own deadline: never throws, never warns; the report says what it came to. */
export async function pruneForJob(job: JobPrune, env: NodeJS.ProcessEnv = process.env): Promise<Pruned> {
  const progress: Pruned = { deleted: 0, bytes: 0, reason: '' };
  const api = githubApiOf(env, job.token);
  if (typeof api === 'string') return { ...progress, reason: api };
  if (!job.service) return { ...progress, reason: 'the cache service is not available to this job; nothing deleted' };
  const known = new Set([...(job.restored.index?.entries ?? []), ...(job.saved?.entries ?? [])].map((e) => e.key));
  const ownIndexes = new Set([job.restored.restoredKey, job.saved?.indexKey ?? ''].filter(Boolean));
  try {
    return await withDeadline('pruning the cache', job.timeoutMs, (signal) =>
      pruneCache({ ...job, api, service: job.service!, known, ownIndexes, signal }, progress),
    );
  } catch (e) {
    const message = (e as Error).message.replace(/ \(cache-timeout\)$/, '');
    return { ...progress, reason: progress.reason || `${message}${progress.deleted ? '; the rest stays' : '; nothing deleted'}` };
  }
}
