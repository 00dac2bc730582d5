// What the Actions cache holds, computed: the keys, which blobs go into which entry, and the index that
// says what a run should restore. Pure, so the rules are unit-tested without a cache service.
import { createHash } from 'node:crypto';
import { blobPath, type RepositoryLinks, type StorageState } from './storage.js';

/** One Actions cache entry and the blobs it holds. */
export interface EntryRef {
  key: string;
  digests: string[];
}

export interface CacheIndex {
  version: 1;
  created: string;
  /** digest -> size, for every blob an entry holds */
  blobs: Record<string, number>;
  entries: EntryRef[];
  repositories: Record<string, RepositoryLinks>;
}

export const STORAGE_DIR = 'storage';
export const INDEX_FILE = 'index.json';

/** Blobs smaller than this share one pack entry per run; larger ones get an entry each. */
export const PACK_BELOW_BYTES = 1024 * 1024;
/** New entries one run may create: GitHub allows 200 a minute per repository, shared by all its jobs. */
export const MAX_NEW_ENTRIES = 32;

export function blobKey(prefix: string, digest: string): string {
  return `${prefix}-blob-${digest.replace(':', '-')}`;
}

export function packKey(prefix: string, digests: string[]): string {
  const hash = createHash('sha256').update([...digests].sort().join('\n')).digest('hex');
  return `${prefix}-pack-sha256-${hash}`;
}

/** Index keys are per platform: the same tag resolves to other blobs on another architecture. */
export function indexKeyPrefix(prefix: string, arch: string): string {
  return `${prefix}-index-linux-${arch}-`;
}

export function indexKey(prefix: string, arch: string, runId: string, attempt: string, now: number): string {
  return `${indexKeyPrefix(prefix, arch)}${runId}-${attempt}-${now.toString(36)}`;
}

/**
 * The paths an entry is saved and restored with, relative to the work directory: the entry's version
 * hashes them, so they must be the same on every runner.
 */
export function entryPaths(entry: EntryRef): string[] {
  return [...entry.digests].sort().map((d) => `${STORAGE_DIR}/${blobPath(d)}`);
}

export interface EntryPlan {
  entries: EntryRef[];
  /** Blobs left for a later run by the per-run cap. */
  deferred: string[];
}

/** Splits new blobs into entries: one per large blob, largest first, and one pack of all the small ones. */
export function planEntries(prefix: string, newBlobs: Record<string, number>, maxEntries = MAX_NEW_ENTRIES): EntryPlan {
  const digests = Object.keys(newBlobs).sort((a, b) => newBlobs[b] - newBlobs[a] || a.localeCompare(b));
  const small = digests.filter((d) => newBlobs[d] < PACK_BELOW_BYTES);
  const large = digests.filter((d) => newBlobs[d] >= PACK_BELOW_BYTES);
  const all: EntryRef[] = [
    ...(small.length ? [{ key: packKey(prefix, small), digests: [...small].sort() }] : []),
    ...large.map((d) => ({ key: blobKey(prefix, d), digests: [d] })),
  ];
  return { entries: all.slice(0, maxEntries), deferred: all.slice(maxEntries).flatMap((e) => e.digests) };
}

/**
 * The index the next run restores: the entries this run restored plus those it saved, and the links of
 * every repository whose content those entries hold.
 */
export function nextIndex(kept: EntryRef[], saved: EntryRef[], previous: CacheIndex | null, after: StorageState, now: Date): CacheIndex {
  const entries = [...new Map([...kept, ...saved].map((e) => [e.key, e])).values()];
  const blobs: Record<string, number> = {};
  for (const d of entries.flatMap((e) => e.digests)) blobs[d] = after.blobs[d] ?? previous?.blobs[d] ?? 0;
  const repositories: Record<string, RepositoryLinks> = {};
  for (const name of [...new Set([...Object.keys(previous?.repositories ?? {}), ...Object.keys(after.repositories)])].sort()) {
    const before = previous?.repositories[name];
    const now_ = after.repositories[name];
    const covered = (ds: string[]) => [...new Set(ds)].filter((d) => d in blobs).sort();
    const links: RepositoryLinks = {
      // A tag points where the job saw it, unless that manifest was not saved: then where it pointed before.
      tags: Object.fromEntries(
        [...new Set([...Object.keys(before?.tags ?? {}), ...Object.keys(now_?.tags ?? {})])]
          .sort()
          .map((tag) => [tag, [now_?.tags[tag], before?.tags[tag]].find((d) => d !== undefined && d in blobs)])
          .filter(([, d]) => d !== undefined),
      ),
      manifests: covered([...(before?.manifests ?? []), ...(now_?.manifests ?? [])]),
      layers: covered([...(before?.layers ?? []), ...(now_?.layers ?? [])]),
    };
    if (links.manifests.length || links.layers.length) repositories[name] = links;
  }
  return { version: 1, created: now.toISOString(), blobs, entries, repositories };
}

/** Whether `next` says anything `previous` did not: only then is a new index saved. */
export function indexChanged(previous: CacheIndex | null, next: CacheIndex): boolean {
  if (previous === null) return next.entries.length > 0;
  const essence = (i: CacheIndex) => JSON.stringify([i.entries.map((e) => e.key).sort(), i.repositories]);
  return essence(previous) !== essence(next);
}

export function parseIndex(text: string): CacheIndex {
  const index = JSON.parse(text) as CacheIndex;
  if (index.version !== 1 || !Array.isArray(index.entries) || typeof index.repositories !== 'object') throw new Error('the cache index has an unknown format');
  return index;
}
