// The registry's storage in the Actions cache, piece by piece: an index restored by prefix, then the
// entries holding what the images within budget need; in post, only the blobs this job fetched, then a
// new index if anything changed.
import { randomBytes } from 'node:crypto';
import * as core from '@actions/core';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  checkIndexKey,
  contentOf,
  entryPaths,
  INDEX_FILE,
  indexChanged,
  indexKey,
  indexKeyPrefix,
  nextIndex,
  InvalidIndex,
  MAX_INDEX_BYTES,
  MAX_INDEX_DIGESTS,
  MAX_INDEX_ITEMS,
  readIndex,
  planEntries,
  selectImages,
  STORAGE_DIR,
  type Budget,
  type CachedImage,
  type CacheIndex,
  type Dropped,
  type EntryRef,
  type JobImages,
  type ReadIndex,
} from './cache-index.js';
import { mapBounded } from './bounded.js';
import {
  entryExists,
  NO_CACHE_SERVICE,
  restoreEntry,
  RefusedArchive,
  saveEntry,
  type CacheService,
  type SaveOutcome,
} from './cache-entry.js';
import { warn } from './log.js';
import { HeldBack, processHeldBack, RateLimited, type HeldBackSummary } from './rate-limit.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { blobPath, holdsDigest, inside, type StorageState } from './storage.js';
import { evictedToRecord, withheldDigests, type Thrash } from './thrash.js';

const SAVE_CONCURRENCY = 4;
/**
 * When a save looks again for an entry another job is uploading (ms after CreateCacheEntry said it exists): a few
 * look-ups within 10 s, not one every half second, since look-ups count against the repository's rate limit too.
 */
const ENTRY_LOOKS_MS = [0, 1_000, 3_000, 7_000];

export interface CacheScope {
  workDir: string;
  prefix: string;
  arch: string;
}

export interface Restored {
  restoredKey: string;
  index: CacheIndex | null;
  /** The images selected within budget, most recently used first. */
  images: CachedImage[];
  dropped: Dropped[];
  /** The entries holding what the images need, in the order they are restored. */
  entries: EntryRef[];
  /** Whether every entry was tried before the post step: only then does the job save (nothing twice, nothing lost). */
  finished: boolean;
  /** Blobs restored and verified. */
  present: string[];
  /** Entries restored whole and verified: the next index can keep naming them. */
  kept: EntryRef[];
  missingEntries: number;
  /** Entries the cache service said it does not have: evicted, or deleted. */
  gone: EntryRef[];
  /** Entries evicted early, found by this run or in the last day (thrash.ts): set by post. */
  thrash?: Thrash | null;
  /** Blobs that failed their digest check, or whose entry was refused: not restored, saved again under a fresh key. */
  damaged: string[];
  /** What was refused from the cache as invalid or hostile, one line each: index images and entries, entry archives. */
  refused: string[];
  /** Why the index was not restored, when the cache service rate-limited its look-up past what main waits. */
  indexLimited?: string;
  /** The restore worker got the index later (epoch ms), after main went on without it for this reason. */
  indexLate?: { limited: string; at: number };
}

export const NOTHING_RESTORED: Restored = {
  restoredKey: '',
  index: null,
  images: [],
  dropped: [],
  entries: [],
  finished: true,
  present: [],
  kept: [],
  missingEntries: 0,
  gone: [],
  damaged: [],
  refused: [],
};

/** The bytes of the blobs the restore brings in. */
export function restoredBytes(restored: Restored): number {
  const digests = new Set(restored.entries.flatMap((e) => e.digests));
  return [...digests].reduce((sum, d) => sum + (restored.index?.blobs[d] ?? 0), 0);
}

export interface Saved {
  entries: EntryRef[];
  bytes: number;
  indexKey: string;
  /** Blobs not saved this run (cap reached, or the cache service refused): a later run saves them. */
  deferred: number;
  /** Why saving stopped early, when it did. */
  stopped: string;
  /** Entries another job was still uploading when this save stopped waiting for them: left to it, out of this index. */
  leftToOthers: number;
  /** How long the cache service's rate limits held the save back. */
  heldBack: HeldBackSummary;
  /** Blobs left out because their entries were evicted early in the last day (thrash.ts), and their bytes. */
  withheld: { blobs: number; bytes: number };
}

/**
 * Restores the index and selects, within budget, the images of the listed registries that it names. Nothing
 * restored is trusted: the index is read strictly. The entries holding the images' blobs are restored afterwards,
 * in the background (background-restore.ts). `signal` cancels the download and tar.
 */
export async function restoreIndex(
  service: CacheService | undefined,
  scope: CacheScope,
  budget: Budget,
  registries: string[],
  now: Date,
  signal: AbortSignal,
): Promise<Restored> {
  const indexDir = join(scope.workDir, 'restoring-index');
  let restoredKey: string | undefined;
  let read: ReadIndex;
  if (!service) throw new Error(NO_CACHE_SERVICE);
  try {
    restoredKey = await restoreEntry({
      service,
      paths: [INDEX_FILE],
      key: indexKeyPrefix(scope.prefix, scope.arch),
      expected: new Map([[INDEX_FILE, MAX_INDEX_BYTES]]),
      into: indexDir,
      signal,
    });
    if (!restoredKey) return NOTHING_RESTORED;
    checkIndexKey(restoredKey, scope.prefix, scope.arch);
    read = readIndex(await readFile(join(indexDir, INDEX_FILE), 'utf8'), { prefix: scope.prefix, registries });
  } catch (e) {
    if (signal.aborted || !(e instanceof RefusedArchive || e instanceof InvalidIndex)) throw e;
    // An index that cannot be read at all is a cache to start over: this run saves a new one.
    warn(`refused the cache index: ${e.message}. Starting with an empty cache.`);
    return { ...NOTHING_RESTORED, refused: [e instanceof InvalidIndex ? `${restoredKey}: ${e.message}` : e.message] };
  } finally {
    await rm(indexDir, { recursive: true, force: true });
  }
  const { index, invalid } = read;
  for (const problem of invalid) warn(`dropped from the restored cache index: ${problem}`);
  const selection = selectImages(index, budget, now);
  return {
    ...NOTHING_RESTORED,
    restoredKey,
    index,
    images: selection.images,
    dropped: selection.dropped,
    entries: selection.entries,
    finished: selection.entries.length === 0,
    refused: invalid,
  };
}

/** What restoring one entry came to. */
export interface EntryOutcome {
  /** Whether the cache had the entry. */
  found: boolean;
  /** Its blobs now in storage, each checked against its digest. */
  present: string[];
  /** Why its archive was refused. */
  refused?: string;
  /** Why it was given up: the cache service kept rate-limiting it past what cache-timeout left (it is still there). */
  limited?: string;
  /** The cache service said it does not have it (not an error on the way): evicted, or deleted. */
  gone?: true;
  /** How long the cache service's rate limits held it back (ms). */
  heldBackMs: number;
}

/**
 * One entry: restored into its own directory, each blob moved into the storage once it matches its digest. The
 * move is a rename: the registry, serving meanwhile, sees a blob whole or not at all.
 */
export async function restoreBlobs(
  service: CacheService,
  entry: EntryRef,
  sizes: Record<string, number>,
  into: string,
  storage: string,
  signal: AbortSignal,
): Promise<EntryOutcome> {
  const paths = entryPaths(entry);
  const expected = new Map(entry.digests.map((d) => [`${STORAGE_DIR}/${blobPath(d)}`, sizes[d]]));
  const held = new HeldBack(processHeldBack);
  let key: string | undefined;
  try {
    key = await restoreEntry({ service, paths, key: entry.key, expected, into, signal, held });
  } catch (e) {
    if (e instanceof RefusedArchive) return { found: true, present: [], refused: e.message, heldBackMs: held.ms };
    if (signal.aborted) throw e;
    if (e instanceof RateLimited) return { found: false, present: [], limited: e.message, heldBackMs: held.ms };
    core.info(`Could not restore ${entry.key}: ${(e as Error).message}`);
    return { found: false, present: [], heldBackMs: held.ms };
  }
  // The service matches keys as prefixes: only this very entry holds what the index says.
  if (key !== entry.key) return { found: false, gone: true, present: [], heldBackMs: held.ms };
  const present: string[] = [];
  for (const digest of entry.digests) {
    const restored = inside(into, `${STORAGE_DIR}/${blobPath(digest)}`);
    if (!(await holdsDigest(restored, digest))) continue;
    const destination = inside(storage, blobPath(digest));
    await mkdir(dirname(destination), { recursive: true });
    await rename(restored, destination);
    present.push(digest);
  }
  await rm(into, { recursive: true, force: true });
  return { found: true, present, heldBackMs: held.ms };
}

/** What a save works from: the scope, what was restored, the storage now, what the job used. */
export interface SaveRequest {
  scope: CacheScope;
  restored: Restored;
  after: StorageState;
  job: JobImages;
  run: { id: string; attempt: string };
  now: Date;
}

const NOTHING_SAVED: Saved = {
  entries: [],
  bytes: 0,
  indexKey: '',
  deferred: 0,
  stopped: '',
  leftToOthers: 0,
  heldBack: new HeldBack().summary(),
  withheld: { blobs: 0, bytes: 0 },
};

/**
 * Saves what the job added: the new blobs as entries, then the index. Each archive is built by the action's own
 * tar, which never sees the cache token; `signal` (cache-timeout) ends the tar, uploads and calls under way.
 */
export async function saveStorage(
  service: CacheService | undefined,
  scope: CacheScope,
  restored: Restored,
  after: StorageState,
  job: JobImages,
  run: { id: string; attempt: string },
  signal: AbortSignal,
): Promise<Saved> {
  const request: SaveRequest = { scope, restored, after, job, run, now: new Date() };
  const planned = savePlan(request);
  const { plan, index, newBlobs, withheld } = planned;
  if (plan.entries.length === 0 && !indexChanged(restored.index, index)) return { ...NOTHING_SAVED, withheld };
  if (!service) return { ...NOTHING_SAVED, deferred: Object.keys(newBlobs).length, stopped: NO_CACHE_SERVICE, withheld };
  return saveEntries(service, request, planned, signal);
}

/** The new blobs split into entries, and the index as it would be if none of them were saved. */
export function savePlan({ scope, restored, after, job, run, now }: SaveRequest) {
  // What the images need that no entry restored whole holds: fetched in this job, or left over from a damaged
  // or missing entry. Only what an image of the index needs: content the job may not share stays out.
  const wanted = new Set(job.seen.flatMap((image) => [...image.manifests, ...image.blobs]));
  const held = new Set(restored.kept.flatMap((e) => e.digests));
  const needed = Object.entries(after.blobs).filter(([d]) => wanted.has(d) && !held.has(d));
  // Blobs of entries evicted early in the last day wait a day: saved now, they would push out another entry.
  const evicted = withheldDigests(restored.thrash);
  const newBlobs = Object.fromEntries(needed.filter(([d]) => !evicted.has(d)));
  const left = needed.filter(([d]) => evicted.has(d));
  const withheld = { blobs: left.length, bytes: left.reduce((sum, [, size]) => sum + size, 0) };
  const plan = planEntries(scope.prefix, newBlobs, {
    images: job.seen.map(contentOf),
    damaged: new Set(restored.damaged),
    salt: `${run.id}-${run.attempt}`,
  });
  const index = withEvicted(nextIndex(restored.kept, [], restored.images, job, after.blobs, now), restored.thrash);
  return { newBlobs, plan, index, withheld };
}

/** The index with the evictions of the last day recorded, within what the reader takes. */
function withEvicted(index: CacheIndex, thrash: Thrash | null | undefined): CacheIndex {
  const named = [...index.entries.map((e) => e.digests), ...index.images.flatMap((i) => [i.manifests, i.blobs])];
  const room = { items: MAX_INDEX_ITEMS, digests: MAX_INDEX_DIGESTS - named.reduce((sum, list) => sum + list.length, 0) };
  const evicted = evictedToRecord(thrash, room);
  return evicted.length ? { ...index, evicted } : index;
}

async function saveEntries(
  service: CacheService,
  request: SaveRequest,
  { newBlobs, plan, withheld }: ReturnType<typeof savePlan>,
  signal: AbortSignal,
): Promise<Saved> {
  const { scope, restored, after, run, now } = request;
  const saved: EntryRef[] = [];
  const leftToOthers: EntryRef[] = [];
  let stopped = '';
  const held = new HeldBack();
  const saving = join(scope.workDir, 'saving');
  const save = (paths: string[], key: string, n: number) =>
    saveEntry({ service, paths, key, from: scope.workDir, archive: join(saving, `${n}.archive`), signal, held });
  const notTaken = (what: string, outcome: Error | SaveOutcome) => {
    // Past a rate limit the service will not take more now: the rest waits for the next run rather than thrash.
    if (outcome instanceof RateLimited && !stopped) warn(`${outcome.message}: saving stops here; the next run saves the rest`);
    stopped ||= `the cache service did not take ${what}${outcome instanceof Error ? ` (${outcome.message})` : ''}`;
  };
  let n = 0;
  await mapBounded(plan.entries, SAVE_CONCURRENCY, async (entry) => {
    if (stopped) return;
    const paths = entryPaths(entry);
    const outcome = await save(paths, entry.key, n++).catch((e: Error) => (signal.aborted ? Promise.reject(e) : e));
    if (outcome === 'saved') saved.push(entry);
    // Another job of the run saved the same blobs first, or is uploading them now: as good as saved once it is
    // there; if it is not there soon, that job's index names it, and this one leaves it out (quietly).
    else if (outcome === 'exists') ((await entryAppears(service, paths, entry.key, signal, held)) ? saved : leftToOthers).push(entry);
    else notTaken(entry.key, outcome);
  });
  const index = withEvicted(nextIndex(restored.kept, saved, restored.images, request.job, after.blobs, now), restored.thrash);
  let key = '';
  // After a refusal the service is failing or limiting this repository: the next run saves the index.
  if (!stopped && indexChanged(restored.index, index)) {
    key = indexKey(scope.prefix, scope.arch, run.id, run.attempt, now.getTime(), randomBytes(3).toString('hex'));
    await writeFile(join(scope.workDir, INDEX_FILE), JSON.stringify(index));
    const outcome = await save([INDEX_FILE], key, n++).catch((e: Error) => (signal.aborted ? Promise.reject(e) : e));
    if (outcome !== 'saved') {
      notTaken('the index', outcome);
      key = '';
    }
  }
  await rm(saving, { recursive: true, force: true });
  const savedDigests = new Set(saved.flatMap((e) => e.digests));
  const othersDigests = new Set(leftToOthers.flatMap((e) => e.digests));
  return {
    entries: saved,
    bytes: [...savedDigests].reduce((sum, d) => sum + (after.blobs[d] ?? 0), 0),
    indexKey: key,
    deferred: Object.keys(newBlobs).filter((d) => !savedDigests.has(d) && !othersDigests.has(d)).length,
    stopped,
    leftToOthers: leftToOthers.length,
    heldBack: held.summary(),
    withheld,
  };
}

/**
 * Whether the entry is, or within 10 s comes to be, in the cache (another job's upload of it finishing). A look-up
 * that fails or is rate-limited counts as not there: the other job's index names the entry anyway.
 */
async function entryAppears(service: CacheService, paths: string[], key: string, signal: AbortSignal, held: HeldBack): Promise<boolean> {
  let waited = 0;
  for (const at of ENTRY_LOOKS_MS) {
    await sleep(at - waited, undefined, { signal });
    waited = at;
    if (await entryExists(service, paths, key, signal, held).catch(() => false)) return true;
  }
  return false;
}
