// What goes into the Actions cache: keys, entries, and the index a later run restores.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  blobKey,
  checkIndexKey,
  entryPaths,
  imageKey,
  imagesInStorage,
  indexChanged,
  InvalidIndex,
  indexKey,
  indexKeyPrefix,
  MAX_ENTRY_BYTES,
  MAX_NEW_ENTRIES,
  nextIndex,
  PACK_BELOW_BYTES,
  packKey,
  MAX_INDEX_DIGESTS,
  MAX_INDEX_ITEMS,
  readIndex,
  planEntries,
  selectImages,
  STORAGE_DIR,
  type Budget,
  type CachedImage,
  type CacheIndex,
  type EntryRef,
  type JobImages,
} from '../../src/cache-index.js';
import type { Manifests } from '../../src/images.js';
import type { RepositoryLinks, StorageState } from '../../src/storage.js';

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

  test("packKey does not reorder the caller's array", () => {
    const list = [digest('z'), digest('a')];
    const copy = [...list];
    packKey('p', list);
    assert.deepEqual(list, copy);
  });

  test('an index key starts with its prefix, which names the platform', () => {
    assert.equal(indexKeyPrefix('pull-cache', 'amd64'), 'pull-cache-index-linux-amd64-');
    assert.equal(indexKeyPrefix('pull-cache', 'arm64'), 'pull-cache-index-linux-arm64-');
    const key = indexKey('pull-cache', 'arm64', '123456', '2', NOW.getTime(), 'a1b2c3');
    assert.ok(key.startsWith(indexKeyPrefix('pull-cache', 'arm64')));
    assert.ok(key.includes('123456-2-'));
    assert.ok(!key.startsWith(indexKeyPrefix('pull-cache', 'amd64')));
  });

  test('index keys of later saves in the same run attempt differ', () => {
    assert.notEqual(indexKey('p', 'amd64', '1', '1', 1000, 'aaaaaa'), indexKey('p', 'amd64', '1', '1', 1001, 'aaaaaa'));
  });

  test('matrix jobs of one run saving in the same millisecond get different keys', () => {
    assert.notEqual(indexKey('p', 'amd64', '1', '1', 1000, 'aaaaaa'), indexKey('p', 'amd64', '1', '1', 1000, 'bbbbbb'));
  });

  test('no key of one prefix is restored by prefix lookup for another arch or another key kind', () => {
    const idx = indexKeyPrefix('p', 'amd64');
    assert.ok(!blobKey('p', digest('a')).startsWith(idx));
    assert.ok(!packKey('p', [digest('a')]).startsWith(idx));
    assert.ok(!indexKey('p', 'arm64', '1', '1', 1, 'aaaaaa').startsWith(idx));
  });
});

describe('checkIndexKey: the key the cache service names a restored index by', () => {
  test('an index key this action saves passes', () => {
    assert.doesNotThrow(() =>
      checkIndexKey(indexKey('pull-cache', 'amd64', '123456', '2', NOW.getTime(), 'a1b2c3'), 'pull-cache', 'amd64'),
    );
  });

  // The service matches by prefix: whoever saves into the scope chooses the rest, and the key reaches the summary.
  const hostile = [
    ['a backtick that ends the code span', 'pull-cache-index-linux-amd64-1`'],
    ['a link', 'pull-cache-index-linux-amd64-1`](http://evil.example/x)'],
    ['an image', 'pull-cache-index-linux-amd64-1 ![i](http://evil.example/p.png)'],
    ['HTML', 'pull-cache-index-linux-amd64-<img src=x onerror=alert(1)>'],
    ['a line break', 'pull-cache-index-linux-amd64-1\n## Restored everything'],
    ['a path', 'pull-cache-index-linux-amd64-../../x'],
    ['more than 512 characters', `pull-cache-index-linux-amd64-${'1'.repeat(512)}`],
    ["another cache's prefix", 'other-cache-index-linux-amd64-1-1-abc-a1b2c3'],
    ['another architecture', 'pull-cache-index-linux-arm64-1-1-abc-a1b2c3'],
    ["an entry's key", blobKey('pull-cache', digest('a'))],
    ['no key at all', ''],
  ];
  for (const [what, key] of hostile) {
    test(`${what}: the index is refused`, () => {
      assert.throws(
        () => checkIndexKey(key, 'pull-cache', 'amd64'),
        (e: Error) => {
          assert.ok(e instanceof InvalidIndex);
          assert.equal(e.message, "its key is not one of this cache's index keys (pull-cache-index-linux-amd64-…)");
          return true;
        },
      );
    });
  }
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
  const KB = 1024;
  // Two images on one base, as python and nginx on debian: a manifest and a config each, layers of their own.
  const [base, a1, a2, b1, mA, cA, mB, cB] = ['base', 'a1', 'a2', 'b1', 'mA', 'cA', 'mB', 'cB'].map(digest);
  const sizes = { [base]: 50 * MB, [a1]: 10 * MB, [a2]: 5 * MB, [b1]: 8 * MB, [mA]: KB, [cA]: 2 * KB, [mB]: KB, [cB]: 2 * KB };
  const imageA = [mA, cA, base, a1, a2];
  const imageB = [mB, cB, base, b1];

  test('nothing new: no entries', () => {
    assert.deepEqual(planEntries('p', {}), { entries: [], deferred: [] });
  });

  test('blobs the same images need share an entry: the base, then each image with its manifest and config', () => {
    const plan = planEntries('p', sizes, { images: [imageA, imageB] });
    assert.deepEqual(plan.deferred, []);
    assert.deepEqual(plan.entries, [
      { key: blobKey('p', base), digests: [base] },
      { key: packKey('p', [a1, a2, mA, cA]), digests: [a1, a2, mA, cA].sort() },
      { key: packKey('p', [b1, mB, cB]), digests: [b1, mB, cB].sort() },
    ]);
  });

  test("an image whose layers all are shared: its manifest and config join the entry of its closest siblings' layers", () => {
    // debian:12 (the base alone), python (base + its layers), api (python + its own): debian's manifest and config
    // go with the base; python's with the layers python and api share.
    const [mD, cD, mP, cP, mX, cX, py, api] = ['mD', 'cD', 'mP', 'cP', 'mX', 'cX', 'py', 'api'].map(digest);
    const blobs = { [base]: 50 * MB, [py]: 20 * MB, [api]: 9 * MB, [mD]: KB, [cD]: KB, [mP]: KB, [cP]: KB, [mX]: KB, [cX]: KB };
    const debian = [mD, cD, base];
    const python = [mP, cP, base, py];
    const app = [mX, cX, base, py, api];
    const plan = planEntries('p', blobs, { images: [debian, python, app] });
    assert.deepEqual(
      plan.entries.map((e) => e.digests),
      [[base, mD, cD].sort(), [py, mP, cP].sort(), [api, mX, cX].sort()],
    );
  });

  test('small sets with no larger entry of their image stay an entry of their own', () => {
    const [m, c, l] = ['m', 'c', 'l'].map(digest);
    const plan = planEntries('p', { [m]: KB, [c]: KB, [l]: 100 * KB }, { images: [[m, c, l]] });
    assert.deepEqual(plan.entries, [{ key: packKey('p', [m, c, l]), digests: [m, c, l].sort() }]);
  });

  test('an entry holds at most MAX_ENTRY_BYTES; a larger blob is an entry of its own', () => {
    const ds = ['x1', 'x2', 'x3', 'huge'].map(digest);
    const blobs = { [ds[0]]: 150 * MB, [ds[1]]: 100 * MB, [ds[2]]: 90 * MB, [ds[3]]: MAX_ENTRY_BYTES + 1 };
    const plan = planEntries('p', blobs, { images: [ds] });
    assert.deepEqual(
      plan.entries.map((e) => e.digests),
      [[ds[3]], [ds[0], ds[1]].sort(), [ds[2]]],
    );
    for (const e of plan.entries.slice(1)) assert.ok(e.digests.reduce((sum, d) => sum + blobs[d], 0) <= MAX_ENTRY_BYTES);
  });

  test('without images, the new blobs are one set, split by size', () => {
    assert.equal(planEntries('p', { [digest('a')]: 1, [digest('b')]: 2 * MB }).entries.length, 1);
    assert.equal(planEntries('p', { [digest('a')]: 200 * MB, [digest('b')]: 200 * MB }).entries.length, 2);
  });

  test('every new blob is in exactly one entry, under a key of its own', () => {
    const ds = Array.from({ length: 40 }, (_, i) => digest(`b${i}`));
    const blobs = Object.fromEntries(ds.map((d, i) => [d, (i % 4) * 40 * MB + i]));
    const images = Array.from({ length: 6 }, (_, k) => ds.filter((_, i) => i % (k + 2) === 0));
    const plan = planEntries('p', blobs, { images });
    const all = plan.entries.flatMap((e) => e.digests);
    assert.equal(all.length, ds.length);
    assert.deepEqual(new Set(all), new Set(ds));
    assert.equal(new Set(plan.entries.map((e) => e.key)).size, plan.entries.length);
  });

  test('the cap keeps the largest entries and defers the blobs of the rest', () => {
    const large = Array.from({ length: 5 }, (_, i) => digest(`large${i}`));
    const blobs: Record<string, number> = {};
    large.forEach((d, i) => (blobs[d] = (10 - i) * MB)); // large0 is the largest
    const plan = planEntries('p', blobs, { images: large.map((d) => [d]), maxEntries: 3 });
    assert.deepEqual(
      plan.entries.map((e) => e.digests),
      [[large[0]], [large[1]], [large[2]]],
    );
    assert.deepEqual(plan.deferred, [large[3], large[4]]);
  });

  test('the default cap is MAX_NEW_ENTRIES', () => {
    const ds = Array.from({ length: MAX_NEW_ENTRIES + 5 }, (_, i) => digest(`l${i}`));
    const plan = planEntries('p', Object.fromEntries(ds.map((d, i) => [d, 2 * MB + i])), { images: ds.map((d) => [d]) });
    assert.equal(plan.entries.length, MAX_NEW_ENTRIES);
    assert.equal(plan.deferred.length, 5);
  });

  test('the same blobs and images give the same plan (jobs of a matrix that pulled the same images share keys)', () => {
    const reordered = Object.fromEntries(Object.entries(sizes).reverse());
    assert.deepEqual(planEntries('p', sizes, { images: [imageA, imageB] }), planEntries('p', reordered, { images: [imageA, imageB] }));
  });

  test('blobs already in the cache do not change how the new ones are grouped', () => {
    const { [base]: _, ...withoutBase } = sizes;
    const plan = planEntries('p', withoutBase, { images: [imageA, imageB] });
    assert.deepEqual(
      plan.entries.map((e) => e.digests),
      [[a1, a2, mA, cA].sort(), [b1, mB, cB].sort()],
    );
  });
});

describe('planEntries: blobs of a damaged entry', () => {
  const [l1, l2] = [digest('l1'), digest('l2')];
  const twoImages = { images: [[l1], [l2]] };

  test('the entry of a damaged blob goes under `${key}-${salt}`; the others keep their keys', () => {
    const plan = planEntries('p', { [l1]: 2 * MB, [l2]: 3 * MB }, { ...twoImages, damaged: new Set([l1]), salt: '123-1' });
    assert.deepEqual(plan.entries, [
      { key: blobKey('p', l2), digests: [l2] },
      { key: `${blobKey('p', l1)}-123-1`, digests: [l1] },
    ]);
    assert.deepEqual(plan.deferred, []);
  });

  test('a damaged small blob puts its whole pack under a fresh key', () => {
    const [s1, s2] = [digest('s1'), digest('s2')];
    const plan = planEntries('p', { [s1]: 100, [s2]: 200, [l1]: 2 * MB }, { images: [[s1, s2, l1]], damaged: new Set([s2]), salt: '9-2' });
    assert.deepEqual(plan.entries, [{ key: `${packKey('p', [s1, s2, l1])}-9-2`, digests: [s1, s2, l1].sort() }]);
  });

  test('damaged digests that are not new change nothing', () => {
    const blobs = { [digest('a')]: 5, [digest('b')]: 2 * MB };
    assert.deepEqual(planEntries('p', blobs, { damaged: new Set([digest('elsewhere')]), salt: '1-1' }), planEntries('p', blobs));
  });

  test('another run (another salt) gets another fresh key', () => {
    const [a] = planEntries('p', { [l1]: 2 * MB }, { damaged: new Set([l1]), salt: '1-1' }).entries;
    const [b] = planEntries('p', { [l1]: 2 * MB }, { damaged: new Set([l1]), salt: '2-1' }).entries;
    assert.notEqual(a.key, b.key);
    assert.ok(a.key.startsWith(blobKey('p', l1)));
  });

  test('the salt does not change which blobs are deferred by the cap', () => {
    const large = Array.from({ length: 4 }, (_, i) => digest(`large${i}`));
    const blobs = Object.fromEntries(large.map((d, i) => [d, (10 - i) * MB]));
    const plan = planEntries('p', blobs, { images: large.map((d) => [d]), damaged: new Set([large[3]]), salt: 's', maxEntries: 2 });
    assert.deepEqual(
      plan.entries.map((e) => e.key),
      [blobKey('p', large[0]), blobKey('p', large[1])],
    );
    assert.deepEqual(plan.deferred, [large[2], large[3]]);
  });
});

describe('imageKey', () => {
  test('repository:tag, or repository@digest for an image pulled by digest', () => {
    const m = digest('m');
    assert.equal(imageKey({ repository: 'library/alpha', reference: '1' }), 'library/alpha:1');
    assert.equal(imageKey({ repository: 'octo/tool', reference: m }), `octo/tool@${m}`);
  });
});

// A small world.
//   alpha:1   manifest ma: config ca, layers base + la
//   beta:2    manifest mb: config cb, layers base + lb (base shared with alpha)
//   gamma:3   index gi of g64 (config cg, layer lg) and garm (config cga, layer lga); the job pulls amd64 only
//   delta@md  pulled by digest, no tag: config cd, layer ld
const d = {
  ma: digest('ma'),
  ca: digest('ca'),
  la: digest('la'),
  base: digest('base'),
  mb: digest('mb'),
  cb: digest('cb'),
  lb: digest('lb'),
  gi: digest('gi'),
  g64: digest('g64'),
  garm: digest('garm'),
  cg: digest('cg'),
  lg: digest('lg'),
  cga: digest('cga'),
  lga: digest('lga'),
  md: digest('md'),
  cd: digest('cd'),
  ld: digest('ld'),
};
const sizes: Record<string, number> = {
  [d.ma]: 500,
  [d.ca]: 1500,
  [d.la]: 3 * MB,
  [d.base]: 30 * MB,
  [d.mb]: 600,
  [d.cb]: 1600,
  [d.lb]: 4 * MB,
  [d.gi]: 900,
  [d.g64]: 700,
  [d.garm]: 700,
  [d.cg]: 1200,
  [d.lg]: 5 * MB,
  [d.cga]: 1300,
  [d.lga]: 6 * MB,
  [d.md]: 800,
  [d.cd]: 1400,
  [d.ld]: 2 * MB,
};
const manifests: Manifests = {
  [d.ma]: { config: { digest: d.ca }, layers: [{ digest: d.base }, { digest: d.la }] },
  [d.mb]: { config: { digest: d.cb }, layers: [{ digest: d.base }, { digest: d.lb }] },
  [d.gi]: { manifests: [{ digest: d.g64 }, { digest: d.garm }] },
  [d.g64]: { config: { digest: d.cg }, layers: [{ digest: d.lg }] },
  [d.garm]: { config: { digest: d.cga }, layers: [{ digest: d.lga }] },
  [d.md]: { config: { digest: d.cd }, layers: [{ digest: d.ld }] },
};
const pick = (...ds: string[]) => Object.fromEntries(ds.map((x) => [x, sizes[x]]));
const bytesOf = (...ds: string[]) => ds.reduce((sum, x) => sum + sizes[x], 0);
const DAY = 86_400_000;
const TODAY = NOW.toISOString();
const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();
const daysAgo = (n: number) => ago(n * DAY);
const NO_LIMIT: Budget = { maxBytes: 0, maxAgeDays: 0 };

const image = (repository: string, reference: string, ms: string[], blobs: string[], lastUsed = TODAY): CachedImage => ({
  repository,
  reference,
  manifests: ms,
  blobs,
  lastUsed,
});
const alphaImage = (lastUsed = TODAY) => image('library/alpha', '1', [d.ma], [d.ca, d.base, d.la], lastUsed);
const betaImage = (lastUsed = TODAY) => image('library/beta', '2', [d.mb], [d.cb, d.base, d.lb], lastUsed);
const gammaImage = (lastUsed = TODAY) => image('library/gamma', '3', [d.gi, d.g64], [d.cg, d.lg], lastUsed);
const deltaImage = (lastUsed = TODAY) => image('octo/delta', d.md, [d.md], [d.cd, d.ld], lastUsed);
/** An image as imagesInStorage gives it: no lastUsed. */
const seen = ({ lastUsed: _, ...rest }: CachedImage): Omit<CachedImage, 'lastUsed'> => rest;

const entry = (...ds: string[]): EntryRef =>
  ds.length === 1 && sizes[ds[0]] >= PACK_BELOW_BYTES
    ? { key: blobKey('p', ds[0]), digests: ds }
    : { key: packKey('p', ds), digests: [...ds].sort() };
const alphaEntries = [entry(d.ma, d.ca), entry(d.base), entry(d.la)];
const betaEntries = [entry(d.mb, d.cb), entry(d.lb)];
const gammaEntries = [entry(d.gi, d.g64, d.cg), entry(d.lg)];
const deltaEntries = [entry(d.md, d.cd), entry(d.ld)];

const byKey = (entries: EntryRef[]) => [...entries].sort((a, b) => a.key.localeCompare(b.key));
const indexOf = (images: CachedImage[], entries: EntryRef[]): CacheIndex => ({
  version: 2,
  created: NOW.toISOString(),
  blobs: pick(...entries.flatMap((e) => e.digests)),
  entries: byKey(entries),
  images,
});
const keys = (images: { repository: string; reference: string }[]) => images.map(imageKey);

describe('selectImages', () => {
  test('no limits: every image, most recently used first, and every entry that holds what they need', () => {
    const stray = entry(digest('a blob no image needs'));
    const index = indexOf(
      [alphaImage(daysAgo(30)), gammaImage(daysAgo(2)), betaImage()],
      [...alphaEntries, ...betaEntries, ...gammaEntries, stray],
    );
    const s = selectImages(index, NO_LIMIT, NOW);
    assert.deepEqual(keys(s.images), ['library/beta:2', 'library/gamma:3', 'library/alpha:1']);
    assert.deepEqual(s.dropped, []);
    assert.deepEqual(new Set(s.entries), new Set([...alphaEntries, ...betaEntries, ...gammaEntries]));
  });

  test('images used the same day are taken in the order of their keys, whatever the index order', () => {
    const a = selectImages(indexOf([deltaImage(), betaImage(), alphaImage()], []), NO_LIMIT, NOW);
    const b = selectImages(indexOf([alphaImage(), deltaImage(), betaImage()], []), NO_LIMIT, NOW);
    assert.deepEqual(keys(a.images), ['library/alpha:1', 'library/beta:2', `octo/delta@${d.md}`]);
    assert.deepEqual(keys(b.images), keys(a.images));
  });

  test('max-age: an image unused for exactly max-age days is kept; one day more and it is dropped', () => {
    const index = indexOf([alphaImage(daysAgo(7)), betaImage(daysAgo(8))], [...alphaEntries, ...betaEntries]);
    const s = selectImages(index, { maxBytes: 0, maxAgeDays: 7 }, NOW);
    assert.deepEqual(keys(s.images), ['library/alpha:1']);
    // base is alpha's too: only what beta alone needs is dropped.
    assert.deepEqual(s.dropped, [{ image: 'library/beta:2', bytes: bytesOf(d.mb, d.cb, d.lb), reason: 'age' }]);
    assert.deepEqual(byKey(s.entries), byKey(alphaEntries));
  });

  test('max-age counts whole days (UTC): used seven days ago is kept, eight days ago is dropped', () => {
    const at = (lastUsed: string) => selectImages(indexOf([alphaImage(lastUsed)], alphaEntries), { maxBytes: 0, maxAgeDays: 7 }, NOW);
    // A hit-only job saves no index the same day, so the time stored may be that day's first use.
    assert.equal(at(`${new Date(NOW.getTime() - 7 * DAY).toISOString().slice(0, 10)}T00:00:01.000Z`).images.length, 1);
    assert.deepEqual(
      at(`${new Date(NOW.getTime() - 8 * DAY).toISOString().slice(0, 10)}T23:59:59.000Z`).dropped.map((x) => x.reason),
      ['age'],
    );
  });

  test('an index written with day-only lastUsed (YYYY-MM-DD) is read by its day', () => {
    const at = (lastUsed: string) => selectImages(indexOf([alphaImage(lastUsed)], alphaEntries), { maxBytes: 0, maxAgeDays: 7 }, NOW);
    assert.equal(at('2026-11-22').images.length, 1);
    assert.equal(at('2026-11-21').images.length, 0);
  });

  test('max-age 0 keeps images of any age', () => {
    const s = selectImages(indexOf([alphaImage('2020-01-01')], alphaEntries), { maxBytes: 0, maxAgeDays: 0 }, NOW);
    assert.deepEqual(keys(s.images), ['library/alpha:1']);
    assert.deepEqual(s.dropped, []);
  });

  test('max-size: a layer shared by two images counts once', () => {
    const index = indexOf([alphaImage(), betaImage()], [...alphaEntries, ...betaEntries]);
    const exact = bytesOf(d.ma, d.ca, d.base, d.la) + bytesOf(d.mb, d.cb, d.lb);
    assert.ok(exact < bytesOf(d.ma, d.ca, d.base, d.la) + bytesOf(d.mb, d.cb, d.base, d.lb), 'counting base twice would not fit');
    const fits = selectImages(index, { maxBytes: exact, maxAgeDays: 0 }, NOW);
    assert.deepEqual(keys(fits.images), ['library/alpha:1', 'library/beta:2']);
    assert.deepEqual(fits.dropped, []);
    const short = selectImages(index, { maxBytes: exact - 1, maxAgeDays: 0 }, NOW);
    assert.deepEqual(keys(short.images), ['library/alpha:1']);
    assert.deepEqual(short.dropped, [{ image: 'library/beta:2', bytes: bytesOf(d.mb, d.cb, d.lb), reason: 'size' }]);
  });

  test('max-size: the most recently used image is taken first', () => {
    const index = indexOf([alphaImage(daysAgo(3)), betaImage(daysAgo(1))], [...alphaEntries, ...betaEntries]);
    const s = selectImages(index, { maxBytes: bytesOf(d.mb, d.cb, d.base, d.lb), maxAgeDays: 0 }, NOW);
    assert.deepEqual(keys(s.images), ['library/beta:2']);
    assert.deepEqual(s.dropped, [{ image: 'library/alpha:1', bytes: bytesOf(d.ma, d.ca, d.la), reason: 'size' }]);
    assert.deepEqual(byKey(s.entries), byKey([entry(d.base), ...betaEntries]));
  });

  test('max-size: an image is never split; a smaller, older image that fits is still taken', () => {
    const index = indexOf(
      [alphaImage(), betaImage(daysAgo(1)), deltaImage(daysAgo(2))],
      [...alphaEntries, ...betaEntries, ...deltaEntries],
    );
    const budget = bytesOf(d.ma, d.ca, d.base, d.la) + 3 * MB; // beta needs 4 MB more, delta 2 MB more
    const s = selectImages(index, { maxBytes: budget, maxAgeDays: 0 }, NOW);
    assert.deepEqual(keys(s.images), ['library/alpha:1', `octo/delta@${d.md}`]);
    assert.deepEqual(s.dropped, [{ image: 'library/beta:2', bytes: bytesOf(d.mb, d.cb, d.lb), reason: 'size' }]);
    // Nothing of beta's own is restored.
    for (const e of s.entries) assert.ok(!e.digests.some((x) => [d.mb, d.cb, d.lb].includes(x)), e.key);
    assert.deepEqual(byKey(s.entries), byKey([...alphaEntries, ...deltaEntries]));
  });

  test('max-size: an image larger than the whole budget is dropped and nothing is restored for it', () => {
    const s = selectImages(indexOf([alphaImage()], alphaEntries), { maxBytes: 1000, maxAgeDays: 0 }, NOW);
    assert.deepEqual(s.images, []);
    assert.deepEqual(s.entries, []);
    assert.deepEqual(s.dropped, [{ image: 'library/alpha:1', bytes: bytesOf(d.ma, d.ca, d.base, d.la), reason: 'size' }]);
  });

  test('an image too old is dropped for age even when it would not fit either', () => {
    const s = selectImages(indexOf([alphaImage(daysAgo(10))], alphaEntries), { maxBytes: 1000, maxAgeDays: 7 }, NOW);
    assert.deepEqual(
      s.dropped.map((x) => x.reason),
      ['age'],
    );
  });

  test('an index image counts its manifests and the blobs of the platform pulled', () => {
    const index = indexOf([gammaImage()], gammaEntries);
    const exact = bytesOf(d.gi, d.g64, d.cg, d.lg);
    assert.equal(selectImages(index, { maxBytes: exact, maxAgeDays: 0 }, NOW).images.length, 1);
    assert.equal(selectImages(index, { maxBytes: exact - 1, maxAgeDays: 0 }, NOW).images.length, 0);
  });

  test('the entries selected are those holding any blob a selected image needs, packs shared with a dropped image included', () => {
    // One run saved alpha and beta together: their manifests and configs share a pack.
    const shared = entry(d.ma, d.ca, d.mb, d.cb);
    const index = indexOf([alphaImage(), betaImage(daysAgo(9))], [shared, entry(d.base), entry(d.la), entry(d.lb)]);
    const s = selectImages(index, { maxBytes: 0, maxAgeDays: 7 }, NOW);
    assert.deepEqual(keys(s.images), ['library/alpha:1']);
    assert.deepEqual(byKey(s.entries), byKey([shared, entry(d.base), entry(d.la)]));
  });

  test('an empty index selects nothing', () => {
    assert.deepEqual(selectImages(indexOf([], []), { maxBytes: 1, maxAgeDays: 1 }, NOW), { images: [], entries: [], dropped: [] });
  });
});

describe('imagesInStorage', () => {
  const all = Object.keys(sizes);
  const storage = (blobs: string[], repositories: Record<string, RepositoryLinks>): StorageState => ({
    blobs: pick(...blobs),
    repositories,
  });
  const alphaLinks = (tags: Record<string, string> = { '1': d.ma }): RepositoryLinks => ({
    tags,
    manifests: [d.ma],
    layers: [d.base, d.ca, d.la].sort(),
  });

  test('each tag is an image: its manifest, then its config and layers in manifest order', () => {
    const images = imagesInStorage(storage(all, { 'library/alpha': alphaLinks({ '1': d.ma, latest: d.ma }) }), manifests);
    assert.deepEqual(images, [
      { repository: 'library/alpha', reference: '1', manifests: [d.ma], blobs: [d.ca, d.base, d.la] },
      { repository: 'library/alpha', reference: 'latest', manifests: [d.ma], blobs: [d.ca, d.base, d.la] },
    ]);
  });

  test('images come sorted by repository, then tag', () => {
    const images = imagesInStorage(
      storage(all, {
        'library/beta': { tags: { '2': d.mb }, manifests: [d.mb], layers: [d.base, d.cb, d.lb] },
        'library/alpha': alphaLinks({ z: d.ma, a: d.ma }),
      }),
      manifests,
    );
    assert.deepEqual(keys(images), ['library/alpha:a', 'library/alpha:z', 'library/beta:2']);
  });

  test('an index of which only one platform was pulled: the index, that child, and its blobs', () => {
    const present = [d.gi, d.g64, d.cg, d.lg];
    const images = imagesInStorage(
      storage(present, { 'library/gamma': { tags: { '3': d.gi }, manifests: [d.gi, d.g64], layers: [d.cg, d.lg] } }),
      manifests,
    );
    assert.deepEqual(images, [{ repository: 'library/gamma', reference: '3', manifests: [d.gi, d.g64], blobs: [d.cg, d.lg] }]);
  });

  test('the child manifests of an index are not images of their own, tagged or pulled by digest', () => {
    const present = [d.gi, d.g64, d.cg, d.lg];
    const links: RepositoryLinks = { tags: {}, manifests: [d.g64, d.gi], layers: [d.cg, d.lg] };
    const images = imagesInStorage(storage(present, { 'library/gamma': links }), manifests);
    assert.deepEqual(images, [{ repository: 'library/gamma', reference: d.gi, manifests: [d.gi, d.g64], blobs: [d.cg, d.lg] }]);
  });

  test('a manifest pulled by digest with no tag is an image whose reference is the digest', () => {
    const images = imagesInStorage(storage(all, { 'octo/delta': { tags: {}, manifests: [d.md], layers: [d.cd, d.ld] } }), manifests);
    assert.deepEqual(images, [{ repository: 'octo/delta', reference: d.md, manifests: [d.md], blobs: [d.cd, d.ld] }]);
    assert.equal(imageKey(images[0]), `octo/delta@${d.md}`);
  });

  test('a tagged manifest also pulled by digest is one image, named by its tag', () => {
    assert.deepEqual(keys(imagesInStorage(storage(all, { 'library/alpha': alphaLinks() }), manifests)), ['library/alpha:1']);
  });

  test('a platform manifest pulled by digest without its index is an image of its own', () => {
    const images = imagesInStorage(
      storage([d.g64, d.cg, d.lg], { 'library/gamma': { tags: {}, manifests: [d.g64], layers: [d.cg, d.lg] } }),
      manifests,
    );
    assert.deepEqual(images, [{ repository: 'library/gamma', reference: d.g64, manifests: [d.g64], blobs: [d.cg, d.lg] }]);
  });

  test('blobs not in storage are left out; a manifest not in storage makes no image', () => {
    const images = imagesInStorage(
      storage([d.ma, d.ca, d.base], {
        'library/alpha': alphaLinks(),
        'library/beta': { tags: { '2': d.mb }, manifests: [d.mb], layers: [d.base] },
        'octo/delta': { tags: {}, manifests: [d.md], layers: [] },
      }),
      manifests,
    );
    assert.deepEqual(images, [{ repository: 'library/alpha', reference: '1', manifests: [d.ma], blobs: [d.ca, d.base] }]);
  });

  test('a manifest that could not be read still makes an image, needing only itself', () => {
    assert.deepEqual(imagesInStorage(storage(all, { 'library/alpha': alphaLinks() }), {}), [
      { repository: 'library/alpha', reference: '1', manifests: [d.ma], blobs: [] },
    ]);
  });

  test('a repository with layers only, and an empty storage, give no image', () => {
    assert.deepEqual(imagesInStorage(storage(all, { 'library/beta': { tags: {}, manifests: [], layers: [d.base] } }), manifests), []);
    assert.deepEqual(imagesInStorage({ blobs: {}, repositories: {} }, {}), []);
  });
});

describe('nextIndex', () => {
  const job = (images: CachedImage[], ...used: CachedImage[]): JobImages => ({ seen: images.map(seen), used: new Set(used.map(imageKey)) });

  test('a first run: the entries it saved (sorted by key), their blob sizes, and the image used today', () => {
    const index = nextIndex([], alphaEntries, [], job([alphaImage()], alphaImage()), sizes, NOW);
    assert.deepEqual(index, {
      version: 2,
      created: NOW.toISOString(),
      blobs: pick(...[d.ma, d.ca, d.base, d.la].sort()),
      entries: byKey(alphaEntries),
      images: [alphaImage(TODAY)],
    });
    assert.deepEqual(Object.keys(index.blobs), [d.ma, d.ca, d.base, d.la].sort());
  });

  test('lastUsed: today for the images the job pulled, kept from the previous index for the others', () => {
    const previous = [alphaImage(daysAgo(4)), betaImage(daysAgo(6))];
    const index = nextIndex([...alphaEntries, ...betaEntries], [], previous, job([alphaImage(), betaImage()], alphaImage()), sizes, NOW);
    assert.deepEqual(
      index.images.map((i) => [imageKey(i), i.lastUsed]),
      [
        ['library/alpha:1', TODAY],
        ['library/beta:2', daysAgo(6)],
      ],
    );
  });

  test('an image pulled by digest is matched by repository@digest', () => {
    const index = nextIndex(deltaEntries, [], [deltaImage(daysAgo(3))], job([deltaImage()], deltaImage()), sizes, NOW);
    assert.equal(index.images[0].lastUsed, TODAY);
    const unused = nextIndex(deltaEntries, [], [deltaImage(daysAgo(3))], job([deltaImage()]), sizes, NOW);
    assert.equal(unused.images[0].lastUsed, daysAgo(3));
  });

  test('keeps the restored entries and adds the saved ones', () => {
    const index = nextIndex(alphaEntries, betaEntries, [alphaImage(daysAgo(1))], job([alphaImage(), betaImage()], betaImage()), sizes, NOW);
    assert.deepEqual(index.entries, byKey([...alphaEntries, ...betaEntries]));
    assert.deepEqual(index.blobs, pick(d.ma, d.ca, d.base, d.la, d.mb, d.cb, d.lb));
    assert.deepEqual(keys(index.images), ['library/alpha:1', 'library/beta:2']);
  });

  test('an entry both kept and saved is listed once', () => {
    const index = nextIndex(alphaEntries, [alphaEntries[0]], [], job([alphaImage()], alphaImage()), sizes, NOW);
    assert.deepEqual(index.entries, byKey(alphaEntries));
  });

  test('an image whose manifest no entry holds is left out, and so are the entries only it needed', () => {
    // beta's pack (manifest and config) was not saved; its layer was.
    const index = nextIndex(alphaEntries, [entry(d.lb)], [], job([alphaImage(), betaImage()], alphaImage(), betaImage()), sizes, NOW);
    assert.deepEqual(keys(index.images), ['library/alpha:1']);
    assert.deepEqual(index.entries, byKey(alphaEntries));
    assert.ok(!(d.lb in index.blobs));
  });

  test('an image stays when its manifest is held though a layer is not (deferred): that layer is fetched on demand', () => {
    const index = nextIndex([], [entry(d.ma, d.ca), entry(d.base)], [], job([alphaImage()], alphaImage()), sizes, NOW);
    assert.deepEqual(index.images, [alphaImage()]);
    assert.deepEqual(index.entries, byKey([entry(d.ma, d.ca), entry(d.base)]));
    assert.ok(!(d.la in index.blobs));
  });

  test('entries that hold nothing an image needs are dropped', () => {
    // delta was in the previous index but is not in storage now (dropped by the budget, so not restored).
    const index = nextIndex(
      [...alphaEntries, ...deltaEntries, entry(digest('stray'))],
      [],
      [alphaImage(), deltaImage(daysAgo(9))],
      job([alphaImage()]),
      sizes,
      NOW,
    );
    assert.deepEqual(keys(index.images), ['library/alpha:1']);
    assert.deepEqual(index.entries, byKey(alphaEntries));
    assert.deepEqual(Object.keys(index.blobs).sort(), [d.ma, d.ca, d.base, d.la].sort());
  });

  test('images of the previous index that are not in storage are left out', () => {
    const index = nextIndex([...alphaEntries, ...betaEntries], [], [alphaImage(), betaImage()], job([alphaImage()]), sizes, NOW);
    assert.deepEqual(keys(index.images), ['library/alpha:1']);
  });

  test('an entry lost from the cache (not kept) takes its blobs out of the index', () => {
    const kept = alphaEntries.filter((e) => !e.digests.includes(d.la));
    const index = nextIndex(kept, [], [alphaImage()], job([alphaImage()]), sizes, NOW);
    assert.ok(!(d.la in index.blobs));
    assert.deepEqual(index.entries, byKey(kept));
  });

  test('nothing saved, nothing kept: an empty index', () => {
    assert.deepEqual(nextIndex([], [], [], job([alphaImage()], alphaImage()), sizes, NOW), {
      version: 2,
      created: NOW.toISOString(),
      blobs: {},
      entries: [],
      images: [],
    });
  });

  test('the index round-trips through readIndex', () => {
    const index = nextIndex(
      alphaEntries,
      gammaEntries,
      [alphaImage(daysAgo(2))],
      job([alphaImage(), gammaImage()], gammaImage()),
      sizes,
      NOW,
    );
    assert.deepEqual(read(JSON.stringify(index)), { index, invalid: [] });
  });
});

describe('indexChanged', () => {
  const job = (images: CachedImage[], ...used: CachedImage[]): JobImages => ({ seen: images.map(seen), used: new Set(used.map(imageKey)) });
  const later = (ms: number) => new Date(NOW.getTime() + ms);
  const HOUR = 3_600_000;
  /** The index a run that pulled alpha saved at NOW, as the next run reads it back. */
  const saved = (): CacheIndex =>
    read(JSON.stringify(nextIndex([], alphaEntries, [], job([alphaImage()], alphaImage()), sizes, NOW))).index;

  test('no previous index: changed only when there are entries', () => {
    assert.equal(indexChanged(null, nextIndex([], [], [], job([]), sizes, NOW)), false);
    assert.equal(indexChanged(null, nextIndex([], alphaEntries, [], job([alphaImage()], alphaImage()), sizes, NOW)), true);
  });

  test('false for a job that only hit the cache the same day', () => {
    const previous = saved();
    const next = nextIndex(previous.entries, [], previous.images, job([alphaImage()], alphaImage()), sizes, later(4 * HOUR));
    assert.equal(indexChanged(previous, next), false);
    assert.equal(next.images[0].lastUsed, later(4 * HOUR).toISOString());
  });

  test('true for a job that hit the cache on a new day (lastUsed moves)', () => {
    const previous = saved();
    const next = nextIndex(previous.entries, [], previous.images, job([alphaImage()], alphaImage()), sizes, later(DAY));
    assert.equal(indexChanged(previous, next), true);
  });

  test('false for a job that pulled nothing, even days later', () => {
    const previous = saved();
    const next = nextIndex(previous.entries, [], previous.images, job([alphaImage()]), sizes, later(3 * DAY));
    assert.equal(indexChanged(previous, next), false);
  });

  test('false when only the order of entries or images differs', () => {
    const previous = indexOf([alphaImage(), betaImage()], [...alphaEntries, ...betaEntries]);
    const next: CacheIndex = {
      ...previous,
      created: later(HOUR).toISOString(),
      entries: [...previous.entries].reverse(),
      images: [...previous.images].reverse(),
    };
    assert.equal(indexChanged(previous, next), false);
  });

  test('true with a new image', () => {
    const previous = saved();
    const next = nextIndex(
      previous.entries,
      betaEntries,
      previous.images,
      job([alphaImage(), betaImage()], betaImage()),
      sizes,
      later(HOUR),
    );
    assert.equal(indexChanged(previous, next), true);
  });

  test('true with a new tag on a cached manifest (no new entry)', () => {
    const previous = saved();
    const latest = image('library/alpha', 'latest', [d.ma], [d.ca, d.base, d.la]);
    const next = nextIndex(previous.entries, [], previous.images, job([alphaImage(), latest], latest), sizes, later(HOUR));
    assert.deepEqual(next.entries, previous.entries);
    assert.equal(indexChanged(previous, next), true);
  });

  test('true when a tag moved to another manifest', () => {
    const previous = saved();
    const [ma2, ca2] = [digest('ma2'), digest('ca2')];
    const moved = image('library/alpha', '1', [ma2], [ca2, d.base, d.la]);
    const pack = { key: packKey('p', [ma2, ca2]), digests: [ma2, ca2].sort() };
    const next = nextIndex(
      previous.entries,
      [pack],
      previous.images,
      job([moved], moved),
      { ...sizes, [ma2]: 510, [ca2]: 1510 },
      later(HOUR),
    );
    assert.deepEqual(keys(next.images), ['library/alpha:1']);
    assert.equal(indexChanged(previous, next), true);
  });

  test('true when an entry was lost from the cache', () => {
    const previous = saved();
    const kept = previous.entries.filter((e) => !e.digests.includes(d.la));
    assert.equal(indexChanged(previous, nextIndex(kept, [], previous.images, job([alphaImage()]), sizes, later(HOUR))), true);
  });

  test('true when an image left the cache (dropped by the budget)', () => {
    const previous = indexOf([alphaImage(), betaImage(daysAgo(9))], [...alphaEntries, ...betaEntries]);
    const next = nextIndex(alphaEntries, [], [alphaImage()], job([alphaImage()]), sizes, NOW);
    assert.equal(indexChanged(previous, next), true);
  });
});

const RULES = { prefix: 'p', registries: ['docker.io', 'ghcr.io'] };
const read = (text: string) => readIndex(text, RULES);

describe('readIndex', () => {
  const valid = () => indexOf([alphaImage(), deltaImage()], [...alphaEntries, ...deltaEntries]);
  /** The valid index with one image or entry replaced: what is read, and the one warning. */
  const withImage = (bad: unknown) => read(JSON.stringify({ ...valid(), images: [bad, deltaImage()] }));
  const withEntry = (bad: unknown) => read(JSON.stringify({ ...valid(), entries: [bad, ...valid().entries.slice(1)] }));

  test('reads a version 2 index', () => {
    assert.deepEqual(read(JSON.stringify(valid())), { index: valid(), invalid: [] });
  });

  test('refuses a file that is not an index', () => {
    assert.throws(
      () => read(JSON.stringify({ version: 1, created: NOW.toISOString(), blobs: {}, entries: [], repositories: {} })),
      /format this version does not read/,
    );
    assert.throws(() => read(JSON.stringify({ version: 2, entries: [], repositories: {} })), /format this version does not read/);
    assert.throws(() => read(JSON.stringify({ version: 2, images: [] })), /format this version does not read/);
    assert.throws(() => read(JSON.stringify([valid()])), /format this version does not read/);
    assert.throws(() => read('not json'), /not JSON/);
  });

  const badImages: [string, unknown, RegExp][] = [
    ['a repository that climbs out', { ...alphaImage(), repository: '../../../tmp/x' }, /not a repository name/],
    ['an absolute repository', { ...alphaImage(), repository: '/etc/docker' }, /not a repository name/],
    [
      'a repository with a NUL byte',
      { ...alphaImage(), repository: 'library/al\u0000pha' },
      /image 1 \(library\/al\?pha\): not a repository name/,
    ],
    ['upper case', { ...alphaImage(), repository: 'Library/Alpha' }, /not a repository name/],
    ['a component with ..', { ...alphaImage(), repository: 'library/../alpha' }, /not a repository name/],
    ['a host that is not one', { ...alphaImage(), repository: '..:1/alpha' }, /not a repository name/],
    ['a tag that climbs out', { ...alphaImage(), reference: '../../x' }, /neither a tag nor a digest/],
    ['a tag with a slash', { ...alphaImage(), reference: 'a/b' }, /neither a tag nor a digest/],
    ['a tag of 129 characters', { ...alphaImage(), reference: 'a'.repeat(129) }, /neither a tag nor a digest/],
    ['a digest reference that is not its manifest', { ...deltaImage(), reference: d.ma }, /its manifest is another/],
    ['a manifest that is not a digest', { ...alphaImage(), manifests: ['sha256:../../../some/dir'] }, /not a list of sha256 digests/],
    ['no manifest', { ...alphaImage(), manifests: [] }, /not a list of sha256 digests/],
    ['a blob in upper case hex', { ...alphaImage(), blobs: [d.ca.toUpperCase()] }, /not a list of sha256 digests/],
    ['blobs that are not a list', { ...alphaImage(), blobs: 'sha256:x' }, /not a list of sha256 digests/],
    ['a last use that is not a time', { ...alphaImage(), lastUsed: 'yesterday' }, /not a time/],
    ['a number for a repository', { ...alphaImage(), repository: 7 }, /no repository name/],
    // JSON can name a toString that is not a function: String() of it throws, which once dropped the whole index.
    ['a reference whose toString is not a function', { ...alphaImage(), reference: { toString: 0 } }, /\{"toString":0\} is neither a tag/],
    ['null', null, /not an image/],
  ];
  for (const [what, bad, message] of badImages) {
    test(`drops an image with ${what}, keeps the rest, and says why`, () => {
      const { index, invalid } = withImage(bad);
      assert.deepEqual(index.images, [deltaImage()]);
      assert.equal(invalid.length, 1);
      assert.match(invalid[0], message);
    });
  }

  test('leaves out quietly the images of registries this run does not cache', () => {
    const { index, invalid } = withImage({ ...alphaImage(), repository: 'quay.io/org/tool' });
    assert.deepEqual([index.images, invalid], [[deltaImage()], []]);
    assert.deepEqual(
      readIndex(JSON.stringify({ ...valid(), images: [{ ...alphaImage(), repository: 'ghcr.io/org/tool' }] }), RULES).index.images.length,
      1,
    );
  });

  const badEntries: [string, unknown, RegExp][] = [
    ['a key outside this cache', { ...alphaEntries[0], key: 'other-blob-x' }, /not one of this cache's/],
    ['a key with a slash', { ...alphaEntries[0], key: 'p-blob-../x' }, /characters or a length/],
    ['a key of 513 characters', { ...alphaEntries[0], key: `p-blob-${'a'.repeat(506)}` }, /characters or a length/],
    ['a digest that climbs out', { ...alphaEntries[0], digests: ['sha256:../../../some/dir'] }, /is not a sha256 digest/],
    ['a digest whose toString is not a function', { ...alphaEntries[0], digests: [{ toString: 0 }] }, /\{"toString":0\} is not a sha256/],
    ['a digest with no size', { ...alphaEntries[0], digests: [digest('unsized')] }, /has no valid size/],
    ['no digests', { ...alphaEntries[0], digests: [] }, /holds no blob/],
    ['a key given twice', valid().entries[1], /listed twice/],
    ['digests that are not a list', { key: 'p-blob-x', digests: 'sha256:x' }, /not an entry/],
  ];
  for (const [what, bad, message] of badEntries) {
    test(`drops an entry with ${what}, keeps the rest, and says why`, () => {
      const { index, invalid } = withEntry(bad);
      assert.deepEqual(index.entries, valid().entries.slice(1));
      assert.equal(invalid.length, 1);
      assert.match(invalid[0], message);
    });
  }

  test('sizes that are negative, fractional, unsafe or not numbers are not sizes: their entries are dropped', () => {
    for (const size of [-1, 1.5, 2 ** 53, '10', null]) {
      const index = valid();
      const [first] = index.entries;
      const { index: read1, invalid } = read(JSON.stringify({ ...index, blobs: { ...index.blobs, [first.digests[0]]: size } }));
      assert.ok(!read1.entries.some((e) => e.key === first.key), String(size));
      assert.match(invalid.join('\n'), /has no valid size/);
    }
  });

  test('digests past the cap of the whole index: the item that passes it and every one after are dropped, and said', () => {
    const full = Array.from({ length: MAX_INDEX_DIGESTS / MAX_INDEX_ITEMS + 1 }, (_, i) => ({
      key: `p-pack-${i}`,
      digests: Array<string>(MAX_INDEX_ITEMS).fill(d.la),
    }));
    // The valid index's own entries come first and name a few digests: the fifth full entry passes the cap.
    const { index, invalid } = read(JSON.stringify({ ...valid(), entries: [...valid().entries, ...full] }));
    assert.deepEqual(index.entries, [...valid().entries, ...full.slice(0, 4).map((e) => ({ ...e, digests: [d.la] }))]);
    assert.deepEqual(index.images, []);
    assert.deepEqual(invalid, [
      '2 entries past the first 100000 digests the index names',
      '2 images past the first 100000 digests the index names',
    ]);
  });

  test('huge counts are cut at a bound, and said', () => {
    const many = Array.from({ length: MAX_INDEX_ITEMS + 5 }, () => deltaImage());
    const { index, invalid } = read(JSON.stringify({ ...valid(), images: many }));
    assert.equal(index.images.length, MAX_INDEX_ITEMS);
    assert.match(invalid.join('\n'), /5 images past the first 20000/);
  });
});
