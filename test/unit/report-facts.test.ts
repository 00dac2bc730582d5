// What post gathered becomes the report's facts: figures from the restored cache, one row per registry, what was
// saved, and the images dockerd pulled around the cache.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { NOTHING_RESTORED } from '../../src/persistence.js';
import { renderReport } from '../../src/report.js';
import { reportFacts, type JobOutcome } from '../../src/report-facts.js';
import type { MirrorState } from '../../src/state.js';
import type { Usage } from '../../src/usage.js';

const digest = (name: string) => `sha256:${createHash('sha256').update(name).digest('hex')}`;

function mirror(registry: string, port: number, pullsAs = ''): MirrorState {
  const upstream = registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`;
  return { registry, upstream, pid: 1, url: `http://127.0.0.1:${port}`, configPath: '', accessLog: '', offline: false, pullsAs };
}

function usage(images: { key: string; cached: number; fetched: number }[]): Usage {
  const rows = images.map((i) => ({
    key: i.key,
    image: i.key,
    fromCache: { blobs: 1, bytes: i.cached },
    fromUpstream: { blobs: 1, bytes: i.fetched },
  }));
  const sum = (f: (r: (typeof rows)[number]) => number) => rows.reduce((s, r) => s + f(r), 0);
  const none = { images: [], fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 0, bytes: 0 } };
  return {
    images: rows,
    fromCache: { blobs: rows.length, bytes: sum((r) => r.fromCache.bytes) },
    fromUpstream: { blobs: rows.length, bytes: sum((r) => r.fromUpstream.bytes) },
    prefetchOnly: none,
  };
}

const hub = mirror('docker.io', 5000, 'ci-bot');
const ghcr = mirror('ghcr.io', 5001);

function outcome(over: Partial<JobOutcome> = {}): JobOutcome {
  const restored = {
    ...NOTHING_RESTORED,
    restoredKey: 'pull-cache-linux-x64-1',
    missingEntries: 1,
    damaged: [digest('bad')],
    refused: ['entry x: not a tar'],
  };
  return {
    inputs: { upstream: 'https://registry-1.docker.io', save: true, maxSize: 4 * 1024 ** 3, maxAgeDays: 14 },
    baseline: { started: 0, restored, storage: { blobs: { [digest('a')]: 1000, [digest('b')]: 24 }, repositories: {} } },
    restored,
    background: null,
    mirrors: [hub, ghcr],
    usages: [
      usage([{ key: 'library/alpha:1', cached: 1000, fetched: 0 }]),
      usage([
        { key: 'ghcr.io/o/tool:2', cached: 0, fetched: 500 },
        { key: '', cached: 0, fetched: 7 },
      ]),
    ],
    decision: { withheld: ['o/private:1'], stale: [], unverified: [] },
    saved: {
      entries: [{ key: 'k1', digests: [digest('c')] }],
      bytes: 507,
      indexKey: 'pull-cache-linux-x64-index-1',
      deferred: 0,
      stopped: '',
      leftToOthers: 0,
      heldBack: { ms: 0, refused: 0, kinds: [] },
      withheld: { blobs: 0, bytes: 0 },
    },
    quota: { limit: 100, remaining: 90, window: 21600 },
    prefetch: null,
    unpigz: true,
    pulled: ['quay.io/o/thing:1', 'ghcr.io/o/other:3', 'docker.io/library/alpha:1', '127.0.0.1:5001/o/tool:2'],
    viaHostsToml: [],
    builtInBuildkit: '',
    problems: ['stopping the registry: gone'],
    ...over,
  };
}

describe('reportFacts', () => {
  test('the restored cache: its key, blobs and bytes as the job found them, and what was damaged or refused', () => {
    const f = reportFacts(outcome());
    assert.equal(f.restoredKey, 'pull-cache-linux-x64-1');
    assert.equal(f.restoredBlobs, 2);
    assert.equal(f.restoredBytes, 1024);
    assert.equal(f.missingEntries, 1);
    assert.equal(f.damagedBlobs, 1);
    assert.deepEqual(f.refused, ['entry x: not a tar']);
    assert.deepEqual(f.budget, { maxBytes: 4 * 1024 ** 3, maxAgeDays: 14 });
  });

  test('one row per mirror, counting images (not stray blobs), and the usage of all mirrors added up', () => {
    const f = reportFacts(outcome());
    assert.deepEqual(
      f.registries.map((r) => [r.registry, r.mirror, r.images, r.fromCache.bytes, r.fromUpstream.bytes]),
      [
        ['docker.io', 'http://127.0.0.1:5000', 1, 1000, 0],
        ['ghcr.io', 'http://127.0.0.1:5001', 1, 0, 507],
      ],
    );
    assert.deepEqual(
      f.usage?.images.map((i) => i.key),
      ['library/alpha:1', 'ghcr.io/o/tool:2', ''],
    );
    assert.equal(f.usage?.fromUpstream.bytes, 507);
  });

  test('access logs that could not be read: rows with nothing counted, and no usage', () => {
    const f = reportFacts(outcome({ usages: null }));
    assert.equal(f.usage, null);
    assert.deepEqual(
      f.registries.map((r) => [r.images, r.fromCache.blobs, r.fromUpstream.blobs]),
      [
        [0, 0, 0],
        [0, 0, 0],
      ],
    );
  });

  test('what was saved, or that saving was off', () => {
    assert.deepEqual(reportFacts(outcome()).saved, {
      entries: 1,
      bytes: 507,
      indexKey: 'pull-cache-linux-x64-index-1',
      deferred: 0,
      stopped: '',
      leftToOthers: 0,
      heldBack: { ms: 0, refused: 0, kinds: [] },
      withheld: { blobs: 0, bytes: 0 },
    });
    const off = reportFacts(outcome({ inputs: { ...outcome().inputs, save: false }, saved: null }));
    assert.equal(off.saved, null);
    assert.equal(off.saveDisabled, true);
  });

  test("Docker Hub's mirror names who the cache pulled as; none without one", () => {
    assert.equal(reportFacts(outcome()).pullsAs, 'ci-bot');
    assert.equal(reportFacts(outcome({ mirrors: [ghcr], usages: null })).pullsAs, '');
  });

  test('images dockerd pulled around the cache: not Docker Hub, not from a mirror itself; through its mirror when it has one', () => {
    assert.deepEqual(reportFacts(outcome()).aroundTheCache, [
      { image: 'quay.io/o/thing:1', throughMirror: '' },
      { image: 'ghcr.io/o/other:3', throughMirror: '127.0.0.1:5001/o/other:3' },
    ]);
    assert.deepEqual(
      reportFacts(outcome({ viaHostsToml: ['ghcr.io'] })).aroundTheCache.map((a) => a.image),
      ['quay.io/o/thing:1'],
    );
  });

  test('the report renders them: withheld images, the quota, and the problems', () => {
    const md = renderReport(reportFacts(outcome()));
    assert.match(md, /Restored: `pull-cache-linux-x64-1`, 2 blobs, 1\.0 KiB/);
    assert.match(md, /Not saved: 1 image anonymous users cannot pull \(o\/private:1\)/);
    assert.match(md, /Docker Hub pull quota: 90 of 100 pulls left for ci-bot \(per 6 hours\)/);
    assert.match(md, /⚠️ stopping the registry: gone/);
  });
});
