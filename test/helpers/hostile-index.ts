// Hostile cache indexes as large as the reader accepts, each shaped to be the worst case for one of the functions
// main, the restore worker and post run over an index: what the work-bound tests feed them.
import { createHash } from 'node:crypto';
import type { CachedImage, CacheIndex, EntryRef } from '../../src/cache-index.js';
import type { Manifests } from '../../src/images.js';
import type { StorageState } from '../../src/storage.js';

/** The reader's caps (MAX_INDEX_ITEMS, MAX_INDEX_DIGESTS, MAX_INDEX_BYTES): the test checks they still are. */
export const ITEMS = 20_000;
export const DIGESTS = 100_000;
export const BYTES = 32 * 1024 * 1024;

export const PREFIX = 'p';
export const RULES = { prefix: PREFIX, registries: ['docker.io', 'ghcr.io'] };
export const CREATED = '2026-12-01T10:00:00.000Z';

/** Real digests (hashes): ones that share a long prefix would make comparing them slower than any real index does. */
export function digests(label: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `sha256:${createHash('sha256').update(`${label}${i}`).digest('hex')}`);
}

const entryKey = (i: number, pad = 0) => `${PREFIX}-pack-${String(i).padStart(8, '0')}${'k'.repeat(pad)}`;
const image = (repository: string, reference: string, manifests: string[], blobs: string[], i: number): CachedImage => ({
  repository,
  reference,
  manifests,
  blobs,
  // All used the same day: the order falls to the keys, the longest comparison the sort can be made to do.
  lastUsed: `${CREATED.slice(0, 17)}${String(i % 60).padStart(2, '0')}.000Z`,
});

/**
 * Worst for restoreOrder (so selectImages): half the digests in 10,000 entries, half in 2,500 images that need
 * 50,000 distinct blobs of no size (within any budget), only one in eight of which any entry holds. Scanning every
 * entry for each digest is 50,000 x 50,000 comparisons.
 */
export function selectionWorst(): CacheIndex {
  const sized = digests('sized', ITEMS);
  const unsized = digests('unsized', DIGESTS / 2);
  const entries: EntryRef[] = Array.from({ length: 10_000 }, (_, i) => ({
    key: entryKey(i),
    digests: [...new Set(Array.from({ length: 5 }, (_, j) => sized[(i * 5 + j) % ITEMS]))],
  }));
  const perImage = 20;
  const images = Array.from({ length: unsized.length / perImage }, (_, i) => {
    const own = unsized.slice(i * perImage, (i + 1) * perImage);
    own[perImage - 1] = sized[(i * 8) % ITEMS];
    return image(`library/app${i}`, 'latest', own.slice(0, 1), own.slice(1), i);
  });
  return { version: 2, created: CREATED, blobs: Object.fromEntries(sized.map((d) => [d, 0])), entries, images };
}

/**
 * Worst for the restore worker (its queue and its linking) and for the sort: as many entries and images as the
 * reader takes, each image needing three blobs of three entries and one blob no entry holds, so that none is ever
 * whole and every image waits to the end; with the queue in restore order, the images a pull waits for are those
 * whose entries come last.
 */
export function workerWorst(): CacheIndex {
  const sized = digests('blob', ITEMS);
  const missing = digests('missing', ITEMS);
  const entries: EntryRef[] = sized.map((d, i) => ({ key: entryKey(i), digests: [d] }));
  const images = Array.from({ length: ITEMS }, (_, i) =>
    image(`library/app${i}`, `v${i}`, [sized[i]], [sized[(i + 1) % ITEMS], sized[(i + 2) % ITEMS], missing[i]], i),
  );
  return { version: 2, created: CREATED, blobs: Object.fromEntries(sized.map((d) => [d, 0])), entries, images };
}

/**
 * The largest text the reader accepts: every list at its cap, every key and name at its longest, the digest cap
 * reached, and the rest of the 32 MiB the smallest items JSON has, past the item cap (the most for JSON.parse to
 * build; the reader drops them, said once).
 */
export function largestText(): string {
  const sized = digests('sized', ITEMS);
  const entries: EntryRef[] = Array.from({ length: ITEMS }, (_, i) => ({
    key: entryKey(i, 512 - entryKey(i).length),
    digests: [sized[i], sized[(i + 1) % ITEMS]],
  }));
  const name = (i: number) => `ghcr.io/${String(i).padStart(8, '0')}/${'a'.repeat(255 - 9)}`;
  const perImage = (DIGESTS - 2 * ITEMS) / ITEMS;
  const images = Array.from({ length: ITEMS }, (_, i) =>
    image(
      name(i),
      `t${'a'.repeat(127)}`,
      [sized[i]],
      Array.from({ length: perImage - 1 }, (_, j) => sized[(i + j + 1) % ITEMS]),
      i,
    ),
  );
  const index: CacheIndex = { version: 2, created: CREATED, blobs: Object.fromEntries(sized.map((d) => [d, 1])), entries, images };
  const text = JSON.stringify(index);
  return `${text.slice(0, -2)}${',0'.repeat((BYTES - text.length) / 2 - 1)}]}`;
}

/** Every list at its cap and images of 17 digests each: more than three times the digest cap, most of it past the cap. */
export function digestHeavyText(): string {
  const sized = digests('sized', ITEMS);
  const unsized = digests('unsized', 16);
  const entries: EntryRef[] = sized.map((d, i) => ({ key: entryKey(i), digests: [d] }));
  const images = sized.map((d, i) => image(`library/app${i}`, 'latest', [d], unsized, i));
  return JSON.stringify({ version: 2, created: CREATED, blobs: Object.fromEntries(sized.map((d) => [d, 1])), entries, images });
}

/**
 * Worst for imagesInStorage (post): one repository holding as many manifests as an index may name, each pulled by
 * digest with no tag, each an index of 50 platform manifests: asking each whether it is a child of any other is
 * 20,000 x 20,000 x 50 comparisons.
 */
export function storageWorst(): { storage: StorageState; manifests: Manifests } {
  const indexes = digests('index', ITEMS);
  const children = digests('child', 50);
  const manifests: Manifests = Object.fromEntries(indexes.map((d) => [d, { manifests: children.map((c) => ({ digest: c })) }]));
  return {
    storage: {
      blobs: Object.fromEntries(indexes.map((d) => [d, 500])),
      repositories: { 'library/app': { tags: {}, manifests: indexes, layers: [] } },
    },
    manifests,
  };
}
