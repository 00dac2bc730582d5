// Thrash: the repository's Actions cache over its size limit. GitHub evicts an entry nobody accessed for 7 days, and,
// past a repository's size limit (10 GB by default), the least recently used entries first. So an entry the index
// says a job saved or restored a few days ago, which the cache service no longer has, was evicted for size: saving
// it again now would only push out another entry, of this cache or of another, and be evicted in turn. The run says
// so, and its blobs are not saved again for a day (their images still work: what the cache lacks comes from the
// upstream). Pure, so the rules are unit-tested without a cache service.
import type { CacheIndex, EntryRef, EvictedEntry } from './cache-index.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** GitHub evicts entries not accessed for 7 days: one gone within 6 days of its last use was evicted for size. */
export const EVICTED_EARLY_MS = 6 * DAY_MS;
/** How long the blobs of entries evicted early are not saved again. */
export const WITHHELD_MS = DAY_MS;
/** Runners' clocks differ a little; a time further ahead than this is not believed (the index is untrusted). */
const CLOCK_SKEW_MS = HOUR_MS;

export interface Thrash {
  /** Entries this run found evicted early: how many, their bytes, and within how many days of their last use. */
  evicted: { entries: number; bytes: number; days: number } | null;
  /** The bytes of this cache's entries this run found still there: what the repository's cache held of it. */
  survivedBytes: number;
  /** Entries evicted early in the last day, found by this run or an earlier one: the next index records them. */
  withheld: EvictedEntry[];
  /** Until when their blobs are not saved again (ISO 8601). */
  until: string;
}

/** Whether `time` lies within the `ms` before `now` (a time in the future, beyond clock skew, does not). */
function within(time: string | undefined, ms: number, now: Date): boolean {
  const age = now.getTime() - Date.parse(time ?? '');
  return age >= -CLOCK_SKEW_MS && age < ms;
}

/**
 * What the restore found of thrash: the entries the cache service said it does not have (`gone`) that the index says
 * were saved or restored within EVICTED_EARLY_MS, and the entries an earlier run found so within the last day. Null
 * when there are none. `kept` are the entries restored whole (or still there): what survived.
 */
export function thrashOf(restored: { index: CacheIndex | null; gone: EntryRef[]; kept: EntryRef[] }, now: Date): Thrash | null {
  const sizes = restored.index?.blobs ?? {};
  const bytesOf = (digests: Iterable<string>) => [...new Set(digests)].reduce((sum, d) => sum + (sizes[d] ?? 0), 0);
  const seen = (e: EntryRef) => e.seen ?? restored.index?.created;
  const early = restored.gone.filter((e) => within(seen(e), EVICTED_EARLY_MS, now));
  const earlier = (restored.index?.evicted ?? []).filter((e) => within(e.at, WITHHELD_MS, now));
  if (!early.length && !earlier.length) return null;
  const found = early.map((e) => ({ digests: e.digests, bytes: bytesOf(e.digests), at: now.toISOString() }));
  const withheld = [...found, ...earlier];
  const oldest = Math.min(...early.map((e) => Date.parse(seen(e)!)));
  return {
    evicted: early.length
      ? {
          entries: early.length,
          bytes: bytesOf(early.flatMap((e) => e.digests)),
          days: Math.max(1, Math.ceil((now.getTime() - oldest) / DAY_MS)),
        }
      : null,
    survivedBytes: bytesOf(restored.kept.flatMap((e) => e.digests)),
    withheld,
    until: new Date(Math.max(...withheld.map((e) => Date.parse(e.at))) + WITHHELD_MS).toISOString(),
  };
}

/** The blobs a save leaves out: those of entries evicted early in the last day. */
export function withheldDigests(thrash: Thrash | null | undefined): Set<string> {
  return new Set(thrash?.withheld.flatMap((e) => e.digests));
}

/**
 * The evictions the next index records, within what an index may name: the newest first, as many as fit in the
 * items and digests `room` leaves (what the index's entries and images name is counted against the same caps).
 */
export function evictedToRecord(thrash: Thrash | null | undefined, room: { items: number; digests: number }): EvictedEntry[] {
  const records: EvictedEntry[] = [];
  let digests = room.digests;
  for (const record of [...(thrash?.withheld ?? [])].sort((a, b) => b.at.localeCompare(a.at))) {
    if (records.length >= room.items || record.digests.length > digests) break;
    digests -= record.digests.length;
    records.push(record);
  }
  return records;
}

/** A max-size the repository's cache can hold: what of this cache survived, in whole MiB (at least 1). */
export function suggestedMaxSize(thrash: Thrash): string {
  return `${Math.max(1, Math.floor(thrash.survivedBytes / (1024 * 1024)))}MiB`;
}
