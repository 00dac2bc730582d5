// What goes into the Actions cache: keys, entries, and the index a later run restores.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  blobKey,
  entryPaths,
  indexChanged,
  indexKey,
  indexKeyPrefix,
  MAX_NEW_ENTRIES,
  nextIndex,
  PACK_BELOW_BYTES,
  packKey,
  parseIndex,
  planEntries,
  STORAGE_DIR,
  type CacheIndex,
  type EntryRef,
} from '../src/cache-index.js';
import type { RepositoryLinks, StorageState } from '../src/storage.js';

const digest = (name: string) => `sha256:${createHash('sha256').update(name).digest('hex')}`;
const hex = (d: string) => d.slice('sha256:'.length);
const MB = 1024 * 1024;
const NOW = new Date('2026-11-29T19:10:00Z');

describe('cache keys', () => {
  test('a blob key is the prefix and the digest, with no colon', () => {
    const d = digest('layer');
    assert.equal(blobKey('pull-cache', d), `pull-cache-blob-sha256-${hex(d)}`);
    assert.ok(!blobKey('pull-cache', d).includes(':'));
  });

  test('different blobs, different keys; different prefixes, different keys', () => {
    assert.notEqual(blobKey('p', digest('a')), blobKey('p', digest('b')));
    assert.notEqual(blobKey('p', digest('a')), blobKey('q', digest('a')));
  });

  test('a pack key does not depend on the order of its blobs', () => {
    const [a, b, c] = [digest('a'), digest('b'), digest('c')];
    assert.equal(packKey('p', [a, b, c]), packKey('p', [c, a, b]));
    assert.equal(packKey('p', [a, b, c]), packKey('p', [b, c, a]));
  });

  test('a pack key depends on the set of blobs and the prefix', () => {
    const [a, b, c] = [digest('a'), digest('b'), digest('c')];
    assert.notEqual(packKey('p', [a, b]), packKey('p', [a, b, c]));
    assert.notEqual(packKey('p', [a, b]), packKey('q', [a, b]));
    assert.match(packKey('p', [a, b]), /^p-pack-sha256-[0-9a-f]{64}$/);
  });

  test('packKey does not reorder the caller\'s array', () => {
    const list = [digest('z'), digest('a')];
    const copy = [...list];
    packKey('p', list);
    assert.deepEqual(list, copy);
  });

  test('an index key starts with its prefix, which names the platform', () => {
    assert.equal(indexKeyPrefix('pull-cache', 'amd64'), 'pull-cache-index-linux-amd64-');
    assert.equal(indexKeyPrefix('pull-cache', 'arm64'), 'pull-cache-index-linux-arm64-');
    const key = indexKey('pull-cache', 'arm64', '123456', '2', NOW.getTime());
    assert.ok(key.startsWith(indexKeyPrefix('pull-cache', 'arm64')));
    assert.ok(key.includes('123456-2-'));
    assert.ok(!key.startsWith(indexKeyPrefix('pull-cache', 'amd64')));
  });

  test('index keys of later saves in the same run attempt differ', () => {
    assert.notEqual(indexKey('p', 'amd64', '1', '1', 1000), indexKey('p', 'amd64', '1', '1', 1001));
  });

  test('no key of one prefix is restored by prefix lookup for another arch or another key kind', () => {
    const idx = indexKeyPrefix('p', 'amd64');
    assert.ok(!blobKey('p', digest('a')).startsWith(idx));
    assert.ok(!packKey('p', [digest('a')]).startsWith(idx));
    assert.ok(!indexKey('p', 'arm64', '1', '1', 1).startsWith(idx));
  });
});

describe('entryPaths', () => {
  test('relative to the work directory, under the storage dir, in Distribution layout, sorted', () => {
    const [a, b] = [digest('a'), digest('b')].sort();
    const paths = entryPaths({ key: 'k', digests: [b, a] });
    assert.deepEqual(paths, [
      `${STORAGE_DIR}/docker/registry/v2/blobs/sha256/${hex(a).slice(0, 2)}/${hex(a)}/data`,
      `${STORAGE_DIR}/docker/registry/v2/blobs/sha256/${hex(b).slice(0, 2)}/${hex(b)}/data`,
    ]);
    for (const p of paths) assert.ok(!p.startsWith('/'), p);
  });

  test('the same entry gives the same paths whatever the digest order (the cache version hashes them)', () => {
    const ds = [digest('a'), digest('b'), digest('c')];
    assert.deepEqual(entryPaths({ key: 'k', digests: ds }), entryPaths({ key: 'k', digests: [...ds].reverse() }));
  });
});

describe('planEntries', () => {
  test('nothing new: no entries', () => {
    assert.deepEqual(planEntries('p', {}), { entries: [], deferred: [] });
  });

  test('small blobs share one pack entry; large ones get an entry each, largest first', () => {
    const [s1, s2, s3, l1, l2] = ['s1', 's2', 's3', 'l1', 'l2'].map(digest);
    const plan = planEntries('p', { [s1]: 1000, [s2]: PACK_BELOW_BYTES - 1, [s3]: 10, [l1]: PACK_BELOW_BYTES, [l2]: 50 * MB });
    assert.deepEqual(plan.deferred, []);
    assert.equal(plan.entries.length, 3);
    const [pack, ...large] = plan.entries;
    assert.deepEqual(pack, { key: packKey('p', [s1, s2, s3]), digests: [s1, s2, s3].sort() });
    assert.deepEqual(large, [
      { key: blobKey('p', l2), digests: [l2] },
      { key: blobKey('p', l1), digests: [l1] },
    ]);
  });

  test('every new blob is in exactly one entry', () => {
    const blobs = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [digest(`b${i}`), (i % 4) * MB + i]));
    const plan = planEntries('p', blobs);
    const all = plan.entries.flatMap((e) => e.digests);
    assert.equal(all.length, 20);
    assert.deepEqual(new Set(all), new Set(Object.keys(blobs)));
    assert.equal(new Set(plan.entries.map((e) => e.key)).size, plan.entries.length);
  });

  test('only small blobs: one pack; only large: one entry each', () => {
    assert.equal(planEntries('p', { [digest('a')]: 1, [digest('b')]: 2 }).entries.length, 1);
    assert.equal(planEntries('p', { [digest('a')]: 2 * MB, [digest('b')]: 3 * MB }).entries.length, 2);
  });

  test('the cap keeps the first entries and defers the blobs of the rest', () => {
    const large = Array.from({ length: 5 }, (_, i) => digest(`large${i}`));
    const blobs: Record<string, number> = { [digest('small')]: 100 };
    large.forEach((d, i) => (blobs[d] = (10 - i) * MB)); // large0 is the largest
    const plan = planEntries('p', blobs, 3);
    assert.equal(plan.entries.length, 3);
    assert.deepEqual(plan.entries.map((e) => e.digests), [[digest('small')], [large[0]], [large[1]]]);
    assert.deepEqual(plan.deferred, [large[2], large[3], large[4]]);
  });

  test('the default cap is MAX_NEW_ENTRIES', () => {
    const blobs = Object.fromEntries(Array.from({ length: MAX_NEW_ENTRIES + 5 }, (_, i) => [digest(`l${i}`), 2 * MB + i]));
    const plan = planEntries('p', blobs);
    assert.equal(plan.entries.length, MAX_NEW_ENTRIES);
    assert.equal(plan.deferred.length, 5);
  });

  test('the same blobs give the same plan (keys are reproducible across runs)', () => {
    const blobs = { [digest('a')]: 5, [digest('b')]: 2 * MB, [digest('c')]: 7 };
    const reordered = { [digest('c')]: 7, [digest('b')]: 2 * MB, [digest('a')]: 5 };
    assert.deepEqual(planEntries('p', blobs), planEntries('p', reordered));
  });
});

// A small world: image alpha (config ca, layers base + la, manifest ma), image beta (cb, base + lb, mb).
const d = {
  ma: digest('ma'),
  ca: digest('ca'),
  la: digest('la'),
  base: digest('base'),
  mb: digest('mb'),
  cb: digest('cb'),
  lb: digest('lb'),
};
const sizes: Record<string, number> = { [d.ma]: 500, [d.ca]: 1500, [d.la]: 3 * MB, [d.base]: 30 * MB, [d.mb]: 600, [d.cb]: 1600, [d.lb]: 4 * MB };
const alpha: RepositoryLinks = { tags: { '1': d.ma }, manifests: [d.ma], layers: [d.base, d.ca, d.la].sort() };
const beta: RepositoryLinks = { tags: { '2': d.mb }, manifests: [d.mb], layers: [d.base, d.cb, d.lb].sort() };
const pick = (...ds: string[]) => Object.fromEntries(ds.map((x) => [x, sizes[x]]));
const alphaEntries: EntryRef[] = [
  { key: packKey('p', [d.ma, d.ca]), digests: [d.ma, d.ca].sort() },
  { key: blobKey('p', d.base), digests: [d.base] },
  { key: blobKey('p', d.la), digests: [d.la] },
];
const betaEntries: EntryRef[] = [
  { key: packKey('p', [d.mb, d.cb]), digests: [d.mb, d.cb].sort() },
  { key: blobKey('p', d.lb), digests: [d.lb] },
];
/** The index a first run that pulled only alpha saved. */
const alphaIndex = (): CacheIndex => nextIndex([], alphaEntries, null, { blobs: pick(d.ma, d.ca, d.la, d.base), repositories: { 'library/alpha': alpha } }, NOW);

describe('nextIndex', () => {
  test('a first run: the entries it saved, their blob sizes, and the links', () => {
    const index = alphaIndex();
    assert.equal(index.version, 1);
    assert.equal(index.created, NOW.toISOString());
    assert.deepEqual(index.entries, alphaEntries);
    assert.deepEqual(index.blobs, pick(d.ma, d.ca, d.la, d.base));
    assert.deepEqual(index.repositories, { 'library/alpha': alpha });
  });

  test('keeps the restored entries and adds the saved ones, with links of both repositories', () => {
    const previous = alphaIndex();
    const after: StorageState = { blobs: pick(...Object.values(d)), repositories: { 'library/alpha': alpha, 'library/beta': beta } };
    const index = nextIndex(previous.entries, betaEntries, previous, after, NOW);
    assert.deepEqual(index.entries.map((e) => e.key), [...alphaEntries, ...betaEntries].map((e) => e.key));
    assert.deepEqual(index.blobs, pick(...Object.values(d)));
    assert.deepEqual(index.repositories, { 'library/alpha': alpha, 'library/beta': beta });
  });

  test('an entry both kept and saved is listed once', () => {
    const index = nextIndex(alphaEntries, [alphaEntries[0]], null, { blobs: pick(d.ma, d.ca, d.la, d.base), repositories: { 'library/alpha': alpha } }, NOW);
    assert.equal(index.entries.length, alphaEntries.length);
  });

  test('drops links to blobs no entry holds (deferred or unsaved blobs)', () => {
    const previous = alphaIndex();
    const after: StorageState = { blobs: pick(...Object.values(d)), repositories: { 'library/alpha': alpha, 'library/beta': beta } };
    // Only beta's pack was saved: lb was deferred.
    const index = nextIndex(previous.entries, [betaEntries[0]], previous, after, NOW);
    assert.ok(!(d.lb in index.blobs));
    assert.deepEqual(index.repositories['library/beta'], { tags: { '2': d.mb }, manifests: [d.mb], layers: [d.base, d.cb].sort() });
  });

  test('a repository whose manifest was not saved loses its tag too', () => {
    const previous = alphaIndex();
    const after: StorageState = { blobs: pick(...Object.values(d)), repositories: { 'library/alpha': alpha, 'library/beta': beta } };
    const index = nextIndex(previous.entries, [betaEntries[1]], previous, after, NOW);
    assert.deepEqual(index.repositories['library/beta'].tags, {});
    assert.deepEqual(index.repositories['library/beta'].manifests, []);
  });

  test('a repository none of whose blobs is held is left out', () => {
    const after: StorageState = { blobs: pick(d.mb, d.cb, d.lb), repositories: { 'library/beta': { tags: { '2': d.mb }, manifests: [d.mb], layers: [d.cb, d.lb].sort() } } };
    const index = nextIndex([], [], null, after, NOW);
    assert.deepEqual(index, { version: 1, created: NOW.toISOString(), blobs: {}, entries: [], repositories: {} });
  });

  test('entries gone from the cache (not kept) take their blobs and links out of the index', () => {
    const previous = alphaIndex();
    // The entry holding la could not be restored; storage after the run lacks it.
    const kept = previous.entries.filter((e) => !e.digests.includes(d.la));
    const after: StorageState = { blobs: pick(d.ma, d.ca, d.base), repositories: { 'library/alpha': alpha } };
    const index = nextIndex(kept, [], previous, after, NOW);
    assert.ok(!(d.la in index.blobs));
    assert.ok(!index.repositories['library/alpha'].layers.includes(d.la));
  });

  test('unions previous links with this run\'s: a repository not pulled this run keeps its links', () => {
    const previous = nextIndex([], [...alphaEntries, ...betaEntries], null, { blobs: pick(...Object.values(d)), repositories: { 'library/alpha': alpha, 'library/beta': beta } }, NOW);
    // This run restored everything but pulled only alpha: the storage after it links beta only through the
    // restored links, but even a storage that had lost them must not drop beta from the index.
    const after: StorageState = { blobs: pick(...Object.values(d)), repositories: { 'library/alpha': alpha } };
    const index = nextIndex(previous.entries, [], previous, after, NOW);
    assert.deepEqual(index.repositories['library/beta'], beta);
    assert.deepEqual(index.repositories['library/alpha'], alpha);
  });

  test('the base layer linked under a second repository this run is added to that repository', () => {
    const previous = alphaIndex();
    const after: StorageState = { blobs: pick(...Object.values(d)), repositories: { 'library/alpha': alpha, 'library/beta': beta } };
    const index = nextIndex(previous.entries, betaEntries, previous, after, NOW);
    assert.ok(index.repositories['library/beta'].layers.includes(d.base));
    assert.ok(index.repositories['library/alpha'].layers.includes(d.base));
  });

  test('a new tag this run is merged with the old tags', () => {
    const previous = alphaIndex();
    const after: StorageState = { blobs: pick(d.ma, d.ca, d.la, d.base), repositories: { 'library/alpha': { ...alpha, tags: { latest: d.ma } } } };
    const index = nextIndex(previous.entries, [], previous, after, NOW);
    assert.deepEqual(index.repositories['library/alpha'].tags, { '1': d.ma, latest: d.ma });
  });

  test('link lists come out sorted and without duplicates', () => {
    const previous = alphaIndex();
    const after: StorageState = { blobs: pick(d.ma, d.ca, d.la, d.base), repositories: { 'library/alpha': { tags: alpha.tags, manifests: [d.ma, d.ma], layers: [...alpha.layers].reverse() } } };
    const links = nextIndex(previous.entries, [], previous, after, NOW).repositories['library/alpha'];
    assert.deepEqual(links.layers, [...alpha.layers].sort());
    assert.deepEqual(links.manifests, [d.ma]);
  });

  test('a blob size missing from this run\'s storage is taken from the previous index', () => {
    const previous = alphaIndex();
    const index = nextIndex(previous.entries, [], previous, { blobs: {}, repositories: {} }, NOW);
    assert.deepEqual(index.blobs, previous.blobs);
  });

  test('the index round-trips through parseIndex', () => {
    const index = alphaIndex();
    assert.deepEqual(parseIndex(JSON.stringify(index)), index);
  });
});

describe('indexChanged', () => {
  const everything = (): StorageState => ({ blobs: pick(d.ma, d.ca, d.la, d.base), repositories: { 'library/alpha': structuredClone(alpha) } });

  test('no previous index: changed only when something was saved', () => {
    assert.equal(indexChanged(null, nextIndex([], [], null, { blobs: {}, repositories: {} }, NOW)), false);
    assert.equal(indexChanged(null, alphaIndex()), true);
  });

  test('false when the job only hit the cache (same entries, same links)', () => {
    const previous = parseIndex(JSON.stringify(alphaIndex()));
    const next = nextIndex(previous.entries, [], previous, everything(), new Date(NOW.getTime() + 86_400_000));
    assert.equal(indexChanged(previous, next), false);
  });

  test('false when the job pulled nothing at all', () => {
    const previous = parseIndex(JSON.stringify(alphaIndex()));
    const next = nextIndex(previous.entries, [], previous, { blobs: {}, repositories: {} }, NOW);
    assert.equal(indexChanged(previous, next), false);
  });

  test('true with a new entry', () => {
    const previous = alphaIndex();
    const after: StorageState = { blobs: pick(...Object.values(d)), repositories: { 'library/alpha': alpha, 'library/beta': beta } };
    assert.equal(indexChanged(previous, nextIndex(previous.entries, betaEntries, previous, after, NOW)), true);
  });

  test('true with a new tag on a cached manifest (no new blob)', () => {
    const previous = alphaIndex();
    const after = everything();
    after.repositories['library/alpha'].tags.latest = d.ma;
    assert.equal(indexChanged(previous, nextIndex(previous.entries, [], previous, after, NOW)), true);
  });

  test('true with a cached blob newly linked under another repository', () => {
    const previous = alphaIndex();
    const after = everything();
    after.repositories['library/gamma'] = { tags: {}, manifests: [], layers: [d.base] };
    assert.equal(indexChanged(previous, nextIndex(previous.entries, [], previous, after, NOW)), true);
  });

  test('true when an entry was lost from the cache', () => {
    const previous = alphaIndex();
    const kept = previous.entries.slice(1);
    assert.equal(indexChanged(previous, nextIndex(kept, [], previous, everything(), NOW)), true);
  });
});

describe('parseIndex', () => {
  test('refuses an index of another format', () => {
    assert.throws(() => parseIndex(JSON.stringify({ version: 2, entries: [], repositories: {} })), /unknown format/);
    assert.throws(() => parseIndex(JSON.stringify({ version: 1, repositories: {} })), /unknown format/);
    assert.throws(() => parseIndex('not json'));
  });
});
