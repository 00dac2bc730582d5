// What of the cache layer runs without the cache service: a job with nothing new saves nothing and writes nothing.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CacheIndex, CachedImage } from '../../src/cache-index.js';
import { NOTHING_RESTORED, saveStorage, type CacheScope, type Restored } from '../../src/persistence.js';
import { sha256 } from '../helpers/images.js';

const RUN = { id: '7', attempt: '1' };

describe('saveStorage with nothing new', () => {
  let scope: CacheScope;
  before(async () => {
    scope = { workDir: await mkdtemp(join(tmpdir(), 'persistence-')), prefix: 'pull-cache', arch: 'x64' };
  });
  after(() => rm(scope.workDir, { recursive: true, force: true }));

  const nothingSaved = {
    entries: [],
    bytes: 0,
    indexKey: '',
    deferred: 0,
    stopped: '',
    leftToOthers: 0,
    heldBack: { ms: 0, refused: 0, kinds: [] },
    withheld: { blobs: 0, bytes: 0 },
  };
  const never = new AbortController().signal;

  test('a job that pulled nothing, on an empty cache: nothing saved, nothing written', async () => {
    const saved = await saveStorage(
      undefined,
      scope,
      NOTHING_RESTORED,
      { blobs: {}, repositories: {} },
      { seen: [], used: new Set() },
      RUN,
      never,
    );
    assert.deepEqual(saved, nothingSaved);
    assert.deepEqual(await readdir(scope.workDir), []);
  });

  test('a warm job that only hit the cache, again the same day: everything is held by entries it restored whole', async () => {
    const [manifest, config, layer] = ['manifest', 'config', 'layer'].map(sha256);
    const entry = { key: `pull-cache-pack-${sha256('pack').replace(':', '-')}`, digests: [config, layer, manifest].sort() };
    const sizes = { [manifest]: 500, [config]: 300, [layer]: 2_000 };
    const seen = { repository: 'library/alpha', reference: '1', manifests: [manifest], blobs: [config, layer] };
    const image: CachedImage = { ...seen, lastUsed: new Date().toISOString() };
    const index: CacheIndex = { version: 2, created: image.lastUsed, blobs: sizes, entries: [entry], images: [image] };
    const restored: Restored = { ...NOTHING_RESTORED, restoredKey: 'pull-cache-index-x64-6-1', index, images: [image], kept: [entry] };
    const after = {
      blobs: sizes,
      repositories: { 'library/alpha': { tags: { '1': manifest }, manifests: [manifest], layers: [config, layer] } },
    };
    assert.deepEqual(
      await saveStorage(undefined, scope, restored, after, { seen: [seen], used: new Set(['library/alpha:1']) }, RUN, never),
      nothingSaved,
    );
    assert.deepEqual(await readdir(scope.workDir), []);
  });
});
