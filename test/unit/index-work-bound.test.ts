// The work a hostile index can cause: on the largest index the reader accepts, shaped to be the worst case for each
// function main, the restore worker and post run over it, each finishes within a few seconds (scanning every entry
// for every digest once took minutes, in every job, where cache-timeout cannot cut it). And the faster functions give
// what the plain scans gave: checked against them, as the specification, over generated indexes.
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { ImagesInPlace, restoreOutcome, RestoreQueue, type RestoreProgress } from '../../src/background-restore.js';
import {
  contentOf,
  imageKey,
  imagesInStorage,
  MAX_INDEX_BYTES,
  MAX_INDEX_DIGESTS,
  MAX_INDEX_ITEMS,
  MAX_NEW_ENTRIES,
  nextIndex,
  PACK_BELOW_BYTES,
  planEntries,
  readIndex,
  restoreOrder,
  selectImages,
  type CachedImage,
  type EntryRef,
} from '../../src/cache-index.js';
import { NOTHING_RESTORED } from '../../src/persistence.js';
import {
  BYTES,
  DIGESTS,
  digestHeavyText,
  digests,
  ITEMS,
  largestText,
  RULES,
  selectionWorst,
  storageWorst,
  workerWorst,
} from '../helpers/hostile-index.js';

/**
 * CPU time, which other work on the machine does not stretch as it does the wall clock: each took well under a
 * second alone, and from tens of seconds to hours before.
 */
const BOUND_MS = 3000;
const NOW = new Date('2026-12-02T00:00:00Z');
const BUDGET = { maxBytes: 2 * 1024 ** 3, maxAgeDays: 0 };

function timed<T>(t: TestContext, what: string, fn: () => T): T {
  const [cpu, wall] = [process.cpuUsage(), performance.now()];
  const result = fn();
  const { user, system } = process.cpuUsage(cpu);
  const ms = (user + system) / 1000;
  t.diagnostic(`${what}: ${Math.round(ms)} ms of CPU, ${Math.round(performance.now() - wall)} ms`);
  assert.ok(ms < BOUND_MS, `${what} took ${Math.round(ms)} ms of CPU, more than ${BOUND_MS}`);
  return result;
}

describe('the work an index may cause, at the largest the reader accepts', () => {
  test('the hostile indexes are built at the reader’s caps', () => {
    assert.deepEqual([ITEMS, DIGESTS, BYTES], [MAX_INDEX_ITEMS, MAX_INDEX_DIGESTS, MAX_INDEX_BYTES]);
  });

  test('readIndex: 32 MiB with every list, key and name at its cap, and the rest past the item cap', (t) => {
    const text = largestText();
    assert.ok(text.length <= MAX_INDEX_BYTES);
    const { index, invalid } = timed(t, 'readIndex', () => readIndex(text, RULES));
    assert.deepEqual([index.images.length, index.entries.length, Object.keys(index.blobs).length], [ITEMS, ITEMS, ITEMS]);
    assert.equal(invalid.length, 1);
    assert.match(invalid[0], /^\d+ images past the first 20000$/);
  });

  test('readIndex: digests past the cap are dropped, whole images at a time, and said once', (t) => {
    const text = digestHeavyText();
    assert.ok(text.length <= MAX_INDEX_BYTES);
    const { index, invalid } = timed(t, 'readIndex', () => readIndex(text, RULES));
    const named = [...index.entries.map((e) => e.digests), ...index.images.map(contentOf)].reduce((sum, ds) => sum + ds.length, 0);
    assert.ok(named <= MAX_INDEX_DIGESTS && named > MAX_INDEX_DIGESTS - 17, String(named));
    assert.equal(index.entries.length, ITEMS);
    assert.deepEqual(invalid, [`${ITEMS - index.images.length} images past the first 100000 digests the index names`]);
  });

  test('selectImages (main): 50,000 image blobs of no size against 50,000 entry digests', (t) => {
    const selection = timed(t, 'selectImages', () => selectImages(selectionWorst(), BUDGET, NOW));
    assert.deepEqual([selection.images.length, selection.entries.length], [2500, 6250]);
  });

  test('selectImages (main): 20,000 images and 20,000 entries', (t) => {
    const selection = timed(t, 'selectImages', () => selectImages(workerWorst(), BUDGET, NOW));
    assert.deepEqual([selection.images.length, selection.entries.length], [ITEMS, ITEMS]);
  });

  test('the restore worker: its queue, with pulls waiting for the images restored last, and its linking', (t) => {
    const { images, entries } = selectImages(workerWorst(), BUDGET, NOW);
    const held = new Map(images.slice(-ITEMS / 2).map((image) => [imageKey(image), 0]));
    const taken = timed(t, 'RestoreQueue', () => {
      const queue = new RestoreQueue(entries, images);
      const order: EntryRef[] = [];
      for (let entry = queue.take(held); entry; entry = queue.take(held)) order.push(entry);
      return order;
    });
    assert.equal(new Set(taken).size, entries.length, 'every entry, once');
    // Every image lacks a blob no entry holds: it waits to the end, and is looked at again and again.
    const whole = timed(t, 'ImagesInPlace', () => {
      const inPlace = new ImagesInPlace(images);
      return taken.flatMap((entry) => inPlace.add(entry.digests));
    });
    assert.deepEqual(whole, []);
  });

  test('imagesInStorage (post): 20,000 indexes pulled by digest into one repository', (t) => {
    const { storage, manifests } = storageWorst();
    const images = timed(t, 'imagesInStorage', () => imagesInStorage(storage, manifests));
    assert.equal(images.length, ITEMS);
  });

  test('restoreOutcome, nextIndex and planEntries (post), over everything the worker restored', (t) => {
    const index = workerWorst();
    const { images, entries } = selectImages(index, BUDGET, NOW);
    const progress: RestoreProgress = {
      entries: entries.map((e, i) => ({ entry: e.key, found: true, present: e.digests, bytes: 0, at: i })),
      images: [],
      done: { done: true, at: ITEMS },
    };
    const selected = { ...NOTHING_RESTORED, restoredKey: 'k', index, images, entries, finished: false };
    const restored = timed(t, 'restoreOutcome', () => restoreOutcome(selected, progress));
    assert.equal(restored.kept.length, ITEMS);
    const job = { seen: images, used: new Set(images.map(imageKey)) };
    const next = timed(t, 'nextIndex', () => nextIndex(restored.kept, [], images, job, index.blobs, NOW));
    assert.equal(next.images.length, ITEMS);
    // Each new blob needed by one image and by an image holding all of them: a set for every blob, half of them small.
    const newDigests = digests('new', ITEMS);
    const fresh = Object.fromEntries(newDigests.map((d, i) => [d, i % 2 ? PACK_BELOW_BYTES : 1]));
    const needing = [newDigests, ...newDigests.map((d) => [d])];
    const plan = timed(t, 'planEntries', () =>
      planEntries(RULES.prefix, fresh, { images: needing, damaged: new Set(newDigests), salt: 'salt' }),
    );
    assert.equal(plan.entries.length, MAX_NEW_ENTRIES);
    assert.equal(plan.entries.flatMap((e) => e.digests).length + plan.deferred.length, ITEMS);
  });
});

// The plain scans the functions above replaced: what they must still give.
const scanRestoreOrder = (images: CachedImage[], entries: EntryRef[]): EntryRef[] => {
  const ordered = new Set<EntryRef>();
  for (const digest of new Set(images.flatMap(contentOf)))
    for (const entry of entries.filter((e) => e.digests.includes(digest))) ordered.add(entry);
  return [...ordered];
};
const scanNextInQueue = (queue: EntryRef[], images: CachedImage[], held: ReadonlyMap<string, number>): number => {
  const wanted = new Set(images.filter((i) => held.has(imageKey(i))).flatMap(contentOf));
  return Math.max(
    0,
    queue.findIndex((e) => e.digests.some((d) => wanted.has(d))),
  );
};

/** Small indexes whose images and entries name digests from a few, so that they share and miss blobs often. */
const pool = digests('pool', 12);
const digestList = fc.array(fc.constantFrom(...pool), { minLength: 1, maxLength: 5 });
const generated = fc.record({
  images: fc.array(
    fc.record({
      name: fc.constantFrom('a', 'b', 'c', 'd'),
      manifests: digestList,
      blobs: fc.array(fc.constantFrom(...pool), { maxLength: 5 }),
    }),
    { maxLength: 8 },
  ),
  entries: fc.array(digestList, { maxLength: 10 }),
});
const built = ({ images, entries }: { images: { name: string; manifests: string[]; blobs: string[] }[]; entries: string[][] }) => ({
  images: images.map(({ name, manifests, blobs }): CachedImage => ({
    repository: `library/${name}`,
    reference: '1',
    manifests,
    blobs,
    lastUsed: NOW.toISOString(),
  })),
  entries: entries.map((digests, i): EntryRef => ({ key: `e${i}`, digests })),
});

describe('the faster functions give what the plain scans gave', () => {
  test('restoreOrder', () => {
    fc.assert(
      fc.property(generated, (g) => {
        const { images, entries } = built(g);
        assert.deepEqual(restoreOrder(images, entries), scanRestoreOrder(images, entries));
      }),
      { numRuns: 1000 },
    );
  });

  test('RestoreQueue: the order nextInQueue took, with pulls starting to wait as the restore goes', () => {
    fc.assert(
      fc.property(generated, fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'x'), { maxLength: 12 }), (g, arrivals) => {
        const { images, entries } = built(g);
        const queue = new RestoreQueue(entries, images);
        const scanned = [...entries];
        const held = new Map<string, number>();
        for (let step = 0; scanned.length > 0; step++) {
          // The front's record only grows: a pull that waited once is held from then on.
          if (step < arrivals.length) held.set(`library/${arrivals[step]}:1`, step);
          assert.equal(queue.take(new Map(held)), scanned.splice(scanNextInQueue(scanned, images, held), 1)[0]);
        }
        assert.equal(queue.take(held), undefined);
      }),
      { numRuns: 1000 },
    );
  });

  test('ImagesInPlace: the images the loop found whole after each entry, in the same order', () => {
    fc.assert(
      fc.property(generated, (g) => {
        const { images, entries } = built(g);
        const inPlace = new ImagesInPlace(images);
        const present = new Set<string>();
        const waiting = new Set(images);
        for (const entry of entries) {
          entry.digests.forEach((d) => present.add(d));
          const scanned = [...waiting].filter((image) => contentOf(image).every((d) => present.has(d)));
          scanned.forEach((image) => waiting.delete(image));
          assert.deepEqual(inPlace.add(entry.digests), scanned);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
