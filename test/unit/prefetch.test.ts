// The prefetch's pure parts: what to pull in the background (what the run that saved the index pulled),
// which of it the job went on to use, and the time docker ps gives containers.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { CacheIndex, CachedImage } from '../../src/cache-index.js';
import { dockerTime, MAX_PREFETCH, normalRef, prefetchRefs, prefetchUsage, type PrefetchResult } from '../../src/prefetch.js';

const digest = (name: string) => `sha256:${createHash('sha256').update(name).digest('hex')}`;

const CREATED = '2026-11-29T19:20:00.000Z';
const EARLIER = '2026-11-28T08:00:00.000Z';

function image(repository: string, reference: string, lastUsed: string): CachedImage {
  return {
    repository,
    reference,
    manifests: [digest(`${repository}:${reference} manifest`)],
    blobs: [digest(`${repository}:${reference} layer`)],
    lastUsed,
  };
}

function indexOf(images: CachedImage[], created = CREATED): CacheIndex {
  return { version: 2, created, blobs: {}, entries: [], images };
}

const ref = ({ repository, reference }: CachedImage) => ({ repository, reference });

describe('prefetchRefs', () => {
  const alpha = image('library/alpha', '1', CREATED);
  const beta = image('library/beta', '1', CREATED);
  const old = image('library/old', '3', EARLIER);
  const tool = image('octo/tool', 'v1.2', CREATED);
  const pinned = image('library/gamma', digest('gamma index'), CREATED);

  test('no index (nothing restored): nothing to prefetch', () => {
    assert.deepEqual(prefetchRefs(null, []), []);
    assert.deepEqual(prefetchRefs(null, [ref(alpha)]), []);
  });

  test("only the images the run that saved the index pulled: lastUsed equal to the index's created", () => {
    const index = indexOf([alpha, old, beta]);
    assert.deepEqual(prefetchRefs(index, index.images.map(ref)), ['alpha:1', 'beta:1']);
  });

  test(`at most ${MAX_PREFETCH} images: each costs a manifest request upstream, and a restored index could name thousands`, () => {
    const many = Array.from({ length: MAX_PREFETCH + 10 }, (_, i) => image('library/alpha', `t${i}`, CREATED));
    const refs = prefetchRefs(indexOf(many), many.map(ref));
    assert.deepEqual(
      refs,
      many.slice(0, MAX_PREFETCH).map((i) => `alpha:${i.reference}`),
    );
  });

  test("a lastUsed that differs from created by a millisecond is another run's", () => {
    const index = indexOf([alpha, image('library/beta', '1', '2026-11-29T19:20:00.001Z')]);
    assert.deepEqual(prefetchRefs(index, index.images.map(ref)), ['alpha:1']);
  });

  test('only those among the images restored (an image dropped for the budget is not prefetched)', () => {
    const index = indexOf([alpha, beta, tool]);
    assert.deepEqual(prefetchRefs(index, [ref(beta)]), ['beta:1']);
    assert.deepEqual(prefetchRefs(index, []), []);
  });

  test('an image restored but not in the index is not prefetched', () => {
    const index = indexOf([alpha]);
    assert.deepEqual(prefetchRefs(index, [ref(alpha), ref(beta)]), ['alpha:1']);
  });

  test('the same tag in another repository is another image', () => {
    const index = indexOf([alpha]);
    assert.deepEqual(prefetchRefs(index, [{ repository: 'octo/alpha', reference: '1' }]), []);
  });

  test('library/ is left out; other namespaces are kept', () => {
    const index = indexOf([alpha, tool]);
    assert.deepEqual(prefetchRefs(index, index.images.map(ref)), ['alpha:1', 'octo/tool:v1.2']);
  });

  test('an image pulled by digest is referenced with @', () => {
    const index = indexOf([pinned, image('octo/tool', digest('tool'), CREATED)]);
    assert.deepEqual(prefetchRefs(index, index.images.map(ref)), [`gamma@${digest('gamma index')}`, `octo/tool@${digest('tool')}`]);
  });

  test('in the order the images were restored', () => {
    const index = indexOf([alpha, beta, tool]);
    assert.deepEqual(prefetchRefs(index, [ref(tool), ref(alpha), ref(beta)]), ['octo/tool:v1.2', 'alpha:1', 'beta:1']);
  });

  test('an index where every image is older than the index: nothing to prefetch', () => {
    const index = indexOf([image('library/alpha', '1', EARLIER), image('library/beta', '1', EARLIER)]);
    assert.deepEqual(prefetchRefs(index, index.images.map(ref)), []);
  });
});

describe('prefetchUsage', () => {
  // The images the job used, as accountUsage found them: asked the mirror for (a pull joining the prefetch asks
  // too), or ran a container of.
  const T = Date.parse('2026-11-29T19:10:00Z');
  const ok = (r: string, started: number, ended: number): PrefetchResult => ({ ref: r, ok: true, started, ended });
  const failed = (r: string, error: string): PrefetchResult => ({ ref: r, ok: false, started: T, ended: T + 1_000, error });
  const alpha = ok('alpha:1', T, T + 4_300);

  test("an image of the job's: used", () => {
    assert.deepEqual(prefetchUsage([alpha], ['alpha:1']), { used: ['alpha:1'], unused: [], failed: [] });
  });

  test("not among the job's images: unused, with the time its pull took", () => {
    assert.deepEqual(prefetchUsage([alpha], []), { used: [], unused: [{ ref: 'alpha:1', ms: 4_300 }], failed: [] });
  });

  test('another image, or another tag, is not use of this one', () => {
    const u = prefetchUsage([alpha], ['beta:1', 'alpha:2', 'octo/alpha:1']);
    assert.deepEqual(u, { used: [], unused: [{ ref: 'alpha:1', ms: 4_300 }], failed: [] });
  });

  test('an image pulled by digest is used when the job used that digest', () => {
    const r = `gamma@${digest('gamma index')}`;
    assert.deepEqual(prefetchUsage([ok(r, T, T + 1_500)], [r]).used, [r]);
  });

  test('failed prefetches are listed with their error, and never counted as used', () => {
    const u = prefetchUsage(
      [alpha, failed('beta:1', 'manifest for beta:1 not found'), failed('octo/tool:v1', 'socket hang up')],
      ['beta:1', 'octo/tool:v1'],
    );
    assert.deepEqual(u, {
      used: [],
      unused: [{ ref: 'alpha:1', ms: 4_300 }],
      failed: [
        { ref: 'beta:1', error: 'manifest for beta:1 not found' },
        { ref: 'octo/tool:v1', error: 'socket hang up' },
      ],
    });
  });

  test('a mix, in the order of the results', () => {
    const u = prefetchUsage([alpha, ok('beta:1', T, T + 2_000), ok('gamma:2', T, T + 7_900)], ['gamma:2', 'beta:1']);
    assert.deepEqual(u, { used: ['beta:1', 'gamma:2'], unused: [{ ref: 'alpha:1', ms: 4_300 }], failed: [] });
  });

  test('nothing prefetched: nothing used, unused or failed', () => {
    assert.deepEqual(prefetchUsage([], ['alpha:1']), { used: [], unused: [], failed: [] });
  });
});

describe('dockerTime', () => {
  test('docker ps CreatedAt in UTC', () => {
    assert.equal(dockerTime('2026-11-29 19:14:15 +0000 UTC'), Date.parse('2026-11-29T19:14:15Z'));
    assert.equal(dockerTime('2026-11-29 19:14:15 +0000 UTC') % 1000, 0);
  });

  test('other offsets are honoured', () => {
    assert.equal(dockerTime('2026-11-29 14:14:15 -0500 EST'), Date.parse('2026-11-29T19:14:15Z'));
    assert.equal(dockerTime('2026-11-30 00:44:15 +0530 IST'), Date.parse('2026-11-29T19:14:15Z'));
    assert.equal(dockerTime('2026-11-29 20:14:15 +0100 CET'), Date.parse('2026-11-29T19:14:15Z'));
  });

  test('without the zone name after the offset', () => {
    assert.equal(dockerTime('2026-11-29 19:14:15 +0000'), Date.parse('2026-11-29T19:14:15Z'));
  });

  test('anything else is NaN', () => {
    for (const text of [
      '',
      'garbage',
      '2026-11-29',
      '2026-11-29 19:14:15',
      '2026-11-29T19:14:15Z',
      'About a minute ago',
      '29/Nov/2026:19:14:15 +0000',
      '2026-11-29 19:14 +0000 UTC',
    ]) {
      assert.ok(Number.isNaN(dockerTime(text)), `${JSON.stringify(text)}: ${dockerTime(text)}`);
    }
  });
});

describe('normalRef', () => {
  test('references as users type them match the prefetch form', () => {
    assert.equal(normalRef('alpha'), 'alpha:latest');
    assert.equal(normalRef('alpha:1'), 'alpha:1');
    assert.equal(normalRef('docker.io/library/alpha:1'), 'alpha:1');
    assert.equal(normalRef('library/alpha'), 'alpha:latest');
    assert.equal(normalRef('someuser/app'), 'someuser/app:latest');
    assert.equal(normalRef('alpha@sha256:abc'), 'alpha@sha256:abc');
  });
});
