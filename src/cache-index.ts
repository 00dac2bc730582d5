// What the Actions cache holds, computed: the keys, which blobs go into which entry, which images a run
// restores within its budget, and the index the next run restores. Pure, so the rules are unit-tested
// without a cache service.
import { imageContent, isRegistryHost, splitRepository, type Manifests } from './images.js';
import { sha256Hex } from './sha256.js';
import { blobPath, isDigest, type StorageState } from './storage.js';

/** One Actions cache entry and the blobs it holds. */
export interface EntryRef {
  key: string;
  digests: string[];
  /**
   * When a job last saved it or restored it (ISO 8601), when that was before the index was created (an entry the
   * cache service rate-limited, kept untried); otherwise the index's `created`. GitHub evicts an entry nobody
   * accessed for 7 days, so one gone sooner was evicted for size (thrash.ts).
   */
  seen?: string;
}

/** An entry the cache service evicted within days of its last use, and when a run found it gone (thrash.ts). */
export interface EvictedEntry {
  digests: string[];
  bytes: number;
  /** When a run found it gone (ISO 8601): its blobs are not saved again for a day. */
  at: string;
}

/** An image the cache holds: a tag (or a digest pulled as such) of a repository, and all it needs. */
export interface CachedImage {
  repository: string;
  /** The tag, or the manifest digest for an image pulled by digest. */
  reference: string;
  /** The manifest first, then for an index the child manifests that were pulled. */
  manifests: string[];
  /** Configs and layers. */
  blobs: string[];
  /** When a job last pulled it (ISO 8601). A hit-only job saves no index for it the same day. */
  lastUsed: string;
}

export interface CacheIndex {
  version: 2;
  created: string;
  /** digest -> size, for every blob an entry holds */
  blobs: Record<string, number>;
  entries: EntryRef[];
  images: CachedImage[];
  /** Entries evicted early in the last day: what the next runs do not upload again yet. Absent from older indexes. */
  evicted?: EvictedEntry[];
}

export interface Budget {
  /** Bytes a run restores at most; 0 for no limit. */
  maxBytes: number;
  /** Days since an image was last used after which it is dropped; 0 for no limit. */
  maxAgeDays: number;
}

export const STORAGE_DIR = 'storage';
export const INDEX_FILE = 'index.json';

/** New blobs that the same images need and that together are smaller than this join a larger entry of theirs. */
export const PACK_BELOW_BYTES = 1024 * 1024;
/**
 * Bytes an entry holds at most (a larger blob is an entry of its own): few entries an image, and still several to
 * download at once while the cache restores.
 */
export const MAX_ENTRY_BYTES = 256 * 1024 * 1024;
/** New entries one run may create: GitHub allows 200 a minute per repository, shared by all its jobs. */
export const MAX_NEW_ENTRIES = 32;

export function blobKey(prefix: string, digest: string): string {
  return `${prefix}-blob-${digest.replace(':', '-')}`;
}

export function packKey(prefix: string, digests: string[]): string {
  return `${prefix}-pack-sha256-${sha256Hex([...digests].sort().join('\n'))}`;
}

/** Index keys are per platform: the same tag resolves to other blobs on another architecture. */
export function indexKeyPrefix(prefix: string, arch: string): string {
  return `${prefix}-index-linux-${arch}-`;
}

/**
 * Unique per run, attempt and save; matrix jobs of one run share the run id and may save in the same
 * millisecond, so `nonce` (a few random hex digits) keeps them from fighting over an index key.
 */
export function indexKey(prefix: string, arch: string, runId: string, attempt: string, now: number, nonce: string): string {
  return `${indexKeyPrefix(prefix, arch)}${runId}-${attempt}-${now.toString(36)}-${nonce}`;
}

/**
 * The paths an entry is saved and restored with, relative to the work directory: the entry's version
 * hashes them, so they must be the same on every runner.
 */
export function entryPaths(entry: EntryRef): string[] {
  return [...entry.digests].sort().map((d) => `${STORAGE_DIR}/${blobPath(d)}`);
}

export function imageKey(image: Pick<CachedImage, 'repository' | 'reference'>): string {
  return `${image.repository}${isDigest(image.reference) ? '@' : ':'}${image.reference}`;
}

export function contentOf(image: Pick<CachedImage, 'manifests' | 'blobs'>): string[] {
  return [...image.manifests, ...image.blobs];
}

export interface Dropped {
  image: string;
  bytes: number;
  reason: 'age' | 'size';
}

export interface Selection {
  images: CachedImage[];
  /** The entries that hold anything the images need, most recently used image's first. */
  entries: EntryRef[];
  dropped: Dropped[];
}

/**
 * The images a run restores: most recently used first, none unused for longer than maxAgeDays, as many as
 * fit in maxBytes (a layer shared by two images counts once). An image is kept whole or not at all.
 */
export function selectImages(index: CacheIndex, budget: Budget, now: Date): Selection {
  const order = [...index.images].sort((a, b) => b.lastUsed.localeCompare(a.lastUsed) || imageKey(a).localeCompare(imageKey(b)));
  const taken = new Set<string>();
  let total = 0;
  const images: CachedImage[] = [];
  const dropped: Dropped[] = [];
  for (const image of order) {
    const added = [...new Set(contentOf(image))].filter((d) => !taken.has(d));
    const bytes = added.reduce((sum, d) => sum + (index.blobs[d] ?? 0), 0);
    // Whole days: a hit-only job saves no index the same day, so the stored time may be that day's first use.
    const ageDays = (Date.parse(now.toISOString().slice(0, 10)) - Date.parse(image.lastUsed.slice(0, 10))) / 86_400_000;
    if (budget.maxAgeDays > 0 && ageDays > budget.maxAgeDays) dropped.push({ image: imageKey(image), bytes, reason: 'age' });
    else if (budget.maxBytes > 0 && total + bytes > budget.maxBytes) dropped.push({ image: imageKey(image), bytes, reason: 'size' });
    else {
      images.push(image);
      added.forEach((d) => taken.add(d));
      total += bytes;
    }
  }
  return { images, entries: restoreOrder(images, index.entries), dropped };
}

/**
 * The entries the images need, in the order the background restore takes them: those of the most recently used
 * image first (its manifest first), so the images a job is likeliest to pull are in place soonest.
 */
export function restoreOrder(images: CachedImage[], entries: EntryRef[]): EntryRef[] {
  const holders = holdersOf(entries);
  const ordered = new Set<EntryRef>();
  for (const digest of new Set(images.flatMap(contentOf))) for (const i of holders.get(digest) ?? []) ordered.add(entries[i]);
  return [...ordered];
}

/**
 * For each digest, the positions of the entries holding it, in order: built once, so that finding an entry costs a
 * look-up, not a scan of every entry (which, for every digest of a hostile index, took minutes).
 */
export function holdersOf(entries: EntryRef[]): Map<string, number[]> {
  const holders = new Map<string, number[]>();
  entries.forEach((entry, i) => {
    for (const digest of new Set(entry.digests)) {
      const list = holders.get(digest);
      if (list) list.push(i);
      else holders.set(digest, [i]);
    }
  });
  return holders;
}

export interface EntryPlan {
  entries: EntryRef[];
  /** Blobs left for a later run by the per-run cap. */
  deferred: string[];
}

export interface PlanOptions {
  /** What each image in the storage needs (contentOf), in a fixed order: blobs the same images need share an entry. */
  images?: string[][];
  /** Blobs whose entry was found damaged: their new entry gets a fresh key. */
  damaged?: Set<string>;
  salt?: string;
  maxEntries?: number;
}

interface Group {
  images: number[];
  digests: string[];
  bytes: number;
}

/**
 * Splits new blobs into entries, one per set of images that need them: what is always restored together is one
 * look-up and one upload, so an image is a handful of entries (its base, what it shares with its siblings, its own
 * layers), not one per layer. A set under PACK_BELOW_BYTES (an image's manifests and config, tiny layers) joins the
 * largest entry of its first image with the fewest other images, which is restored whenever that image is. An
 * entry holds at most MAX_ENTRY_BYTES. A blob whose entry was found damaged goes under a fresh key: the damaged
 * entry's key stays taken until GitHub evicts it. Linear in the blobs and the images' content.
 */
export function planEntries(prefix: string, newBlobs: Record<string, number>, options: PlanOptions = {}): EntryPlan {
  const { images = [], damaged = new Set<string>(), salt = '', maxEntries = MAX_NEW_ENTRIES } = options;
  const users = new Map<string, number[]>();
  images.forEach((content, i) => {
    for (const d of new Set(content)) {
      if (!Object.hasOwn(newBlobs, d)) continue;
      const list = users.get(d);
      if (list) list.push(i);
      else users.set(d, [i]);
    }
  });
  const groups = new Map<string, Group>();
  for (const d of Object.keys(newBlobs).sort()) {
    const needing = users.get(d) ?? [];
    const signature = needing.join(',');
    let group = groups.get(signature);
    if (!group) groups.set(signature, (group = { images: needing, digests: [], bytes: 0 }));
    group.digests.push(d);
    group.bytes += newBlobs[d];
  }
  // Each image's most specific large group: the fewest images, then the most bytes, then the first signature.
  const home = new Map<number, Group>();
  const closer = (a: Group, b: Group) => a.images.length - b.images.length || b.bytes - a.bytes;
  for (const group of groups.values())
    if (group.bytes >= PACK_BELOW_BYTES)
      for (const i of group.images) {
        const known = home.get(i);
        if (!known || closer(group, known) < 0) home.set(i, group);
      }
  for (const [signature, group] of groups) {
    const into = group.bytes < PACK_BELOW_BYTES && group.images.length ? home.get(group.images[0]) : undefined;
    if (!into) continue;
    into.digests.push(...group.digests);
    into.bytes += group.bytes;
    groups.delete(signature);
  }
  const fresh = (key: string, ds: string[]) => (ds.some((d) => damaged.has(d)) ? `${key}-${salt}` : key);
  const all = [...groups.values()]
    .flatMap((group) => splitAt(group.digests, newBlobs, MAX_ENTRY_BYTES))
    .map((ds) => ({ digests: ds.sort(), bytes: ds.reduce((sum, d) => sum + newBlobs[d], 0) }))
    .sort((a, b) => b.bytes - a.bytes || a.digests[0].localeCompare(b.digests[0]))
    .map(({ digests }): EntryRef => ({
      key: fresh(digests.length === 1 ? blobKey(prefix, digests[0]) : packKey(prefix, digests), digests),
      digests,
    }));
  return { entries: all.slice(0, maxEntries), deferred: all.slice(maxEntries).flatMap((e) => e.digests) };
}

/** Digests in runs of at most `max` bytes, largest first (next fit: linear); a blob over `max` is a run of its own. */
function splitAt(digests: string[], sizes: Record<string, number>, max: number): string[][] {
  const runs: string[][] = [];
  let bytes = Infinity;
  for (const d of [...digests].sort((a, b) => sizes[b] - sizes[a] || a.localeCompare(b))) {
    if (bytes + sizes[d] > max) {
      runs.push([]);
      bytes = 0;
    }
    runs[runs.length - 1].push(d);
    bytes += sizes[d];
  }
  return runs;
}

/** Every image the storage holds after the job: each tag, and each manifest no tag reaches (pulled by digest). */
export function imagesInStorage(storage: StorageState, manifests: Manifests): Omit<CachedImage, 'lastUsed'>[] {
  const images: Omit<CachedImage, 'lastUsed'>[] = [];
  const present = (d: string) => d in storage.blobs;
  for (const [repository, links] of Object.entries(storage.repositories).sort(([a], [b]) => a.localeCompare(b))) {
    const reached = new Set<string>();
    const add = (reference: string, manifest: string) => {
      if (!present(manifest)) return;
      const content = imageContent(manifest, manifests, present);
      content.manifests.forEach((d) => reached.add(d));
      images.push({ repository, reference, manifests: content.manifests, blobs: content.blobs.filter(present) });
    };
    for (const [tag, manifest] of Object.entries(links.tags).sort(([a], [b]) => a.localeCompare(b))) add(tag, manifest);
    const children = new Set(links.manifests.flatMap((d) => manifests[d]?.manifests?.map((c) => c.digest) ?? []));
    for (const manifest of links.manifests.filter((d) => !reached.has(d) && !children.has(d))) add(manifest, manifest);
  }
  return images;
}

export interface JobImages {
  /** What the storage holds after the job (imagesInStorage). */
  seen: Omit<CachedImage, 'lastUsed'>[];
  /** imageKey of every image the job pulled. */
  used: Set<string>;
}

/**
 * The index the next run restores: the images the job left in storage whose manifest an entry holds, with
 * their last use, and the entries (restored and kept, or saved now) that hold what those images need.
 */
export function nextIndex(
  kept: EntryRef[],
  saved: EntryRef[],
  previous: CachedImage[],
  job: JobImages,
  sizes: Record<string, number>,
  now: Date,
): CacheIndex {
  const all = [...new Map([...kept, ...saved].map((e) => [e.key, e])).values()];
  const covered = new Set(all.flatMap((e) => e.digests));
  const before = new Map(previous.map((i) => [imageKey(i), i]));
  // A tagged image pulled by its digest was used too.
  const used = (image: Omit<CachedImage, 'lastUsed'>) =>
    job.used.has(imageKey(image)) || job.used.has(`${image.repository}@${image.manifests[0]}`);
  const images = job.seen
    .filter((image) => covered.has(image.manifests[0]))
    // A manifest no tag names any more (the tag moved) is kept only while jobs pull it by digest.
    .filter((image) => !isDigest(image.reference) || used(image) || before.has(imageKey(image)))
    .map((image) => ({
      ...image,
      lastUsed: used(image) ? now.toISOString() : (before.get(imageKey(image))?.lastUsed ?? now.toISOString()),
    }));
  const needed = new Set(images.flatMap(contentOf));
  const entries = all.filter((e) => e.digests.some((d) => needed.has(d))).sort((a, b) => a.key.localeCompare(b.key));
  const blobs = Object.fromEntries(
    entries
      .flatMap((e) => e.digests)
      .sort()
      .map((d) => [d, sizes[d] ?? 0]),
  );
  return { version: 2, created: now.toISOString(), blobs, entries, images };
}

/**
 * Whether `next` says anything `previous` did not: only then is a new index saved. Last use counts by the
 * day, so jobs that only hit the cache save nothing more than once a day.
 */
export function indexChanged(previous: CacheIndex | null, next: CacheIndex): boolean {
  if (previous === null) return next.entries.length > 0;
  const essence = (i: CacheIndex) =>
    JSON.stringify([
      i.entries.map((e) => e.key).sort(),
      i.images.map((image) => ({ ...image, lastUsed: image.lastUsed.slice(0, 10) })).sort((a, b) => imageKey(a).localeCompare(imageKey(b))),
    ]);
  return essence(previous) !== essence(next);
}

/** What a run accepts from a restored index: its own key prefix, the registries it caches. */
export interface IndexRules {
  prefix: string;
  registries: string[];
}

/** A restored index, reduced to what passed every check, and why the rest was dropped. */
export interface ReadIndex {
  index: CacheIndex;
  /** One line per image or entry dropped as invalid, naming what was wrong. */
  invalid: string[];
}

/** A restored index that is not one at all: the whole index is refused. */
export class InvalidIndex extends Error {
  override name = 'InvalidIndex';
}

/** More than any real cache holds (10 GB in 1 MiB layers is 10,000): a bound on the work a hostile index can cause. */
export const MAX_INDEX_ITEMS = 20_000;
/** The index archive is a few hundred kilobytes for thousands of images; anything far larger is not one. */
export const MAX_INDEX_BYTES = 32 * 1024 * 1024;
/**
 * Digests an index may name in all, counting each time an entry or an image names one: a real index names each blob
 * once in its entry and once per image that needs it, a few tens of thousands for the largest cache. What main and
 * the restore do with an index is linear in this, so it bounds their work: a second or two at the cap.
 */
export const MAX_INDEX_DIGESTS = 100_000;

// Distribution's reference grammar (distribution/reference): path components, tags; names up to 255 characters.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REMOTE_NAME = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$/;
/** The grammar of every cache key this action makes (and so of every key it accepts from the cache service). */
export const KEY = /^[A-Za-z0-9._-]{1,512}$/;

/**
 * Refuses a restored index whose key (as the cache service names it) is not one of this cache's index keys: the
 * service matches keys by prefix, anyone who can save into the scope chooses the rest, and the key reaches the
 * restored-key output and the job summary.
 */
export function checkIndexKey(key: string, prefix: string, arch: string): void {
  if (typeof key !== 'string' || !KEY.test(key) || !key.startsWith(indexKeyPrefix(prefix, arch)))
    throw new InvalidIndex(`its key is not one of this cache's index keys (${indexKeyPrefix(prefix, arch)}…)`);
}

/** Whether a cache name (library/alpine, ghcr.io/org/app) is a repository of one of the listed registries, in Distribution's grammar. */
export function isRepositoryName(name: string, registries: string[]): boolean {
  if (typeof name !== 'string' || name.length > 255 + 256) return false;
  const { registry, repository } = splitRepository(name);
  return registries.includes(registry) && repository.length <= 255 && REMOTE_NAME.test(repository);
}

export function isTag(value: string): boolean {
  return typeof value === 'string' && TAG.test(value);
}

/**
 * Reads a restored index as hostile input: every name is checked against its grammar, every key against this
 * cache's prefix, every size is a safe non-negative integer. What fails is dropped (an image or an entry, not the
 * whole cache) and named in `invalid`; images of registries this run does not cache are left out quietly. What comes
 * past the caps on items and on digests is dropped too, said once: they bound the work of every step that reads the
 * index. Only a file that is not an index at all throws.
 */
export function readIndex(text: string, rules: IndexRules): ReadIndex {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new InvalidIndex('the cache index is not JSON');
  }
  const value = raw as Record<string, unknown> | null;
  if (
    !isRecord(value) ||
    value.version !== 2 ||
    !Array.isArray(value.entries) ||
    !Array.isArray(value.images) ||
    !isRecord(value.blobs) ||
    !isTime(value.created)
  ) {
    throw new InvalidIndex('the cache index has a format this version does not read');
  }
  const invalid: string[] = [];
  const bounded = <T>(items: T[], what: string): T[] => {
    if (items.length > MAX_INDEX_ITEMS) invalid.push(`${items.length - MAX_INDEX_ITEMS} ${what} past the first ${MAX_INDEX_ITEMS}`);
    return items.slice(0, MAX_INDEX_ITEMS);
  };
  // Counted before an item is checked, so that checking costs no more than the cap either. The first item past the
  // cap ends it: what comes after is dropped too, whatever its size.
  let digestsLeft = MAX_INDEX_DIGESTS;
  const pastDigestCap = { entries: 0, images: 0, evicted: 0 };
  const withinDigestCap = (what: keyof typeof pastDigestCap, ...lists: unknown[]): boolean => {
    const named = lists.reduce<number>((sum, list) => sum + (Array.isArray(list) ? list.length : 0), 0);
    if (named > digestsLeft) {
      digestsLeft = -1;
      pastDigestCap[what]++;
      return false;
    }
    digestsLeft -= named;
    return true;
  };

  const blobs: Record<string, number> = {};
  for (const [digest, size] of bounded(Object.entries(value.blobs), 'blob sizes')) {
    if (isDigest(digest) && Number.isSafeInteger(size) && (size as number) >= 0) blobs[digest] = size as number;
  }

  const entries: EntryRef[] = [];
  const keys = new Set<string>();
  for (const [i, entry] of bounded(value.entries as unknown[], 'entries').entries()) {
    if (!withinDigestCap('entries', isRecord(entry) && entry.digests)) continue;
    const problem = entryProblem(entry, rules.prefix, blobs, keys);
    if (problem)
      invalid.push(`entry ${i + 1}${isRecord(entry) && typeof entry.key === 'string' ? ` (${printable(entry.key)})` : ''}: ${problem}`);
    else {
      const { key, digests, seen } = entry as unknown as EntryRef;
      keys.add(key);
      entries.push({ key, digests: [...new Set(digests)], ...(seen === undefined ? {} : { seen }) });
    }
  }

  const images: CachedImage[] = [];
  for (const [i, image] of bounded(value.images as unknown[], 'images').entries()) {
    if (!withinDigestCap('images', isRecord(image) && image.manifests, isRecord(image) && image.blobs)) continue;
    const problem = imageProblem(image);
    if (problem) {
      invalid.push(
        `image ${i + 1}${isRecord(image) && typeof image.repository === 'string' ? ` (${printable(image.repository)})` : ''}: ${problem}`,
      );
      continue;
    }
    const { repository, reference, manifests, blobs: content, lastUsed } = image as unknown as CachedImage;
    const { registry } = splitRepository(repository);
    // Another job's index may hold registries this one does not cache: left out, not wrong.
    if (isRegistryHost(registry) && !rules.registries.includes(registry)) continue;
    if (!isRepositoryName(repository, rules.registries)) invalid.push(`image ${i + 1} (${printable(repository)}): not a repository name`);
    else images.push({ repository, reference, manifests: [...manifests], blobs: [...content], lastUsed });
  }
  // Read last: a hostile list of evictions cannot push out an entry or an image.
  const evicted: EvictedEntry[] = [];
  const evictedList = value.evicted === undefined ? [] : value.evicted;
  if (!Array.isArray(evictedList)) invalid.push('evicted: not a list');
  else
    for (const [i, record] of bounded(evictedList as unknown[], 'evicted entries').entries()) {
      if (!withinDigestCap('evicted', isRecord(record) && record.digests)) continue;
      const problem = evictedProblem(record);
      if (problem) invalid.push(`evicted entry ${i + 1}: ${problem}`);
      else {
        const { digests, bytes, at } = record as unknown as EvictedEntry;
        evicted.push({ digests: [...new Set(digests)], bytes, at });
      }
    }
  for (const [what, count] of Object.entries(pastDigestCap))
    if (count) invalid.push(`${count} ${what} past the first ${MAX_INDEX_DIGESTS} digests the index names`);
  return {
    index: { version: 2, created: value.created as string, blobs, entries, images, ...(evicted.length ? { evicted } : {}) },
    invalid,
  };
}

function entryProblem(entry: unknown, prefix: string, blobs: Record<string, number>, seen: Set<string>): string {
  if (!isRecord(entry) || typeof entry.key !== 'string' || !Array.isArray(entry.digests)) return 'not an entry (key and digests)';
  if (!KEY.test(entry.key)) return 'the key has characters or a length a cache key of this action never has';
  if (!entry.key.startsWith(`${prefix}-blob-`) && !entry.key.startsWith(`${prefix}-pack-`))
    return `the key is not one of this cache's (${prefix}-blob-… or ${prefix}-pack-…)`;
  if (seen.has(entry.key)) return 'the key is listed twice';
  if (entry.digests.length === 0 || entry.digests.length > MAX_INDEX_ITEMS) return 'it holds no blob, or more than any entry does';
  const bad = entry.digests.find((d) => !isDigest(d as string));
  if (bad !== undefined) return `${printable(shown(bad))} is not a sha256 digest`;
  const unsized = (entry.digests as string[]).find((d) => !(d in blobs));
  if (unsized) return `${unsized} has no valid size in the index`;
  if (entry.seen !== undefined && !isTime(entry.seen)) return 'its last use is not a time';
  return '';
}

function evictedProblem(record: unknown): string {
  if (!isRecord(record) || !Array.isArray(record.digests)) return 'not an evicted entry (digests, bytes and a time)';
  if (record.digests.length === 0 || record.digests.length > MAX_INDEX_ITEMS) return 'it names no blob, or more than any entry holds';
  const bad = record.digests.find((d) => !isDigest(d as string));
  if (bad !== undefined) return `${printable(shown(bad))} is not a sha256 digest`;
  if (!Number.isSafeInteger(record.bytes) || (record.bytes as number) < 0) return 'its size is not a non-negative integer';
  if (!isTime(record.at)) return 'when it was found gone is not a time';
  return '';
}

function imageProblem(image: unknown): string {
  if (!isRecord(image)) return 'not an image';
  const { repository, reference, manifests, blobs, lastUsed } = image;
  if (typeof repository !== 'string') return 'no repository name';
  if (typeof reference !== 'string' || !(isTag(reference) || isDigest(reference)))
    return `${printable(shown(reference))} is neither a tag nor a digest`;
  if (
    !Array.isArray(manifests) ||
    manifests.length === 0 ||
    manifests.length > MAX_INDEX_ITEMS ||
    !manifests.every((d) => isDigest(d as string))
  )
    return 'its manifests are not a list of sha256 digests';
  if (!Array.isArray(blobs) || blobs.length > MAX_INDEX_ITEMS || !blobs.every((d) => isDigest(d as string)))
    return 'its blobs are not a list of sha256 digests';
  if (isDigest(reference) && manifests[0] !== reference) return 'pulled by digest, but its manifest is another';
  if (!isTime(lastUsed)) return 'its last use is not a time';
  return '';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isTime(value: unknown): value is string {
  return typeof value === 'string' && TIME.test(value) && Number.isFinite(Date.parse(value));
}

/** A value from the index as a warning may quote it: short, one line, no control characters. */
/**
 * A value from the index as a message shows it: JSON, so that an object whose toString is not a function (hostile
 * JSON can name one) is shown rather than thrown on.
 */
function shown(value: unknown): string {
  return JSON.stringify(value) ?? String(typeof value);
}

function printable(value: string): string {
  const clean = value.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 160 ? `${clean.slice(0, 157)}...` : clean;
}
