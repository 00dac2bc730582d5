// Thrash (issue 23): entries the index says a job saved or restored days ago, gone from the cache service, were
// evicted for size. Found from the index and the restore's look-ups; their blobs are left out of the save for a day,
// and the index records them so that the next runs of the day leave them out too. The index is untrusted: the new
// fields are checked and bounded like the rest.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { restoreOutcome, type RestoreProgress } from '../../src/background-restore.js';
import {
  MAX_INDEX_DIGESTS,
  MAX_INDEX_ITEMS,
  readIndex,
  type CachedImage,
  type CacheIndex,
  type EntryRef,
  type EvictedEntry,
} from '../../src/cache-index.js';
import { NOTHING_RESTORED, savePlan, type Restored } from '../../src/persistence.js';
import { renderReport, type ReportFacts } from '../../src/report.js';
import { reportFacts } from '../../src/report-facts.js';
import { evictedToRecord, suggestedMaxSize, thrashOf, withheldDigests } from '../../src/thrash.js';

const MiB = 1024 * 1024;
const digest = (name: string) => `sha256:${createHash('sha256').update(name).digest('hex')}`;
const [manifest, config, base, layer, other] = ['manifest', 'config', 'base', 'layer', 'other'].map(digest);
const NOW = new Date('2026-12-10T12:00:00.000Z');
const daysAgo = (days: number) => new Date(NOW.getTime() - days * 86_400_000).toISOString();
const RULES = { prefix: 'p', registries: ['docker.io'] };

const sizes = { [manifest]: 1_000, [config]: 2_000, [base]: 30 * MiB, [layer]: 20 * MiB, [other]: 5 * MiB };
const pack: EntryRef = { key: 'p-pack-sha256-1', digests: [config, manifest].sort() };
const baseEntry: EntryRef = { key: 'p-blob-base', digests: [base] };
const layerEntry: EntryRef = { key: 'p-blob-layer', digests: [layer] };
const app: CachedImage = {
  repository: 'library/app',
  reference: '1',
  manifests: [manifest],
  blobs: [config, base, layer],
  lastUsed: daysAgo(1),
};
const indexOf = (created: string, over: Partial<CacheIndex> = {}): CacheIndex => ({
  version: 2,
  created,
  blobs: Object.fromEntries([manifest, config, base, layer].map((d) => [d, sizes[d]])),
  entries: [pack, baseEntry, layerEntry],
  images: [app],
  ...over,
});
const restoredOf = (index: CacheIndex, kept: EntryRef[], gone: EntryRef[]): Restored => ({
  ...NOTHING_RESTORED,
  restoredKey: 'p-index-linux-x64-1',
  index,
  images: index.images,
  entries: index.entries,
  kept,
  gone,
  missingEntries: gone.length,
});

describe('thrashOf: entries evicted before GitHub would have for age', () => {
  test('an entry of an index saved two days ago, gone: thrash, with its bytes, the days, and what survived', () => {
    const thrash = thrashOf(restoredOf(indexOf(daysAgo(2)), [pack, baseEntry], [layerEntry]), NOW);
    assert.deepEqual(thrash?.evicted, { entries: 1, bytes: 20 * MiB, days: 2 });
    assert.equal(thrash?.survivedBytes, 3_000 + 30 * MiB);
    assert.deepEqual(thrash?.withheld, [{ digests: [layer], bytes: 20 * MiB, at: NOW.toISOString() }]);
    assert.equal(thrash?.until, '2026-12-11T12:00:00.000Z');
    assert.equal(suggestedMaxSize(thrash!), '30MiB');
  });

  test('an index of an older version (no last use per entry): its entries were seen when it was created', () => {
    assert.ok(thrashOf(restoredOf(indexOf(daysAgo(5)), [pack, baseEntry], [layerEntry]), NOW));
    // Seven days and more unused: evicted for age, as GitHub does; saved again as before.
    assert.equal(thrashOf(restoredOf(indexOf(daysAgo(8)), [pack, baseEntry], [layerEntry]), NOW), null);
  });

  test("an entry's own last use (kept untried while rate-limited) counts over the index's time", () => {
    const stale = { ...layerEntry, seen: daysAgo(9) };
    assert.equal(thrashOf(restoredOf(indexOf(daysAgo(1), { entries: [pack, baseEntry, stale] }), [pack], [stale]), NOW), null);
  });

  test('nothing gone, nothing recorded: no thrash', () => {
    assert.equal(thrashOf(restoredOf(indexOf(daysAgo(1)), [pack, baseEntry, layerEntry], []), NOW), null);
    assert.equal(thrashOf(NOTHING_RESTORED, NOW), null);
  });

  test("an earlier run's evictions are withheld for a day from when it found them, no longer", () => {
    const earlier = (at: string): EvictedEntry => ({ digests: [other], bytes: 5 * MiB, at });
    const recent = thrashOf(restoredOf(indexOf(daysAgo(1), { evicted: [earlier(daysAgo(0.5))] }), [pack], []), NOW);
    assert.equal(recent?.evicted, null, 'this run found none');
    assert.deepEqual([...withheldDigests(recent)], [other]);
    assert.equal(recent?.until, new Date(Date.parse(daysAgo(0.5)) + 86_400_000).toISOString());
    assert.equal(thrashOf(restoredOf(indexOf(daysAgo(1), { evicted: [earlier(daysAgo(1.1))] }), [pack], []), NOW), null);
  });

  test('hostile times: a last use or an eviction in the future withholds nothing', () => {
    const future = '2099-01-01T00:00:00.000Z';
    const index = indexOf(future, { evicted: [{ digests: [other], bytes: 1, at: future }] });
    assert.equal(thrashOf(restoredOf(index, [pack], [{ ...layerEntry, seen: future }]), NOW), null);
  });
});

describe('the save after thrash', () => {
  const after = {
    blobs: sizes,
    repositories: { 'library/app': { tags: { '1': manifest }, manifests: [manifest], layers: [config, base, layer] } },
  };
  const seen = { repository: app.repository, reference: app.reference, manifests: app.manifests, blobs: app.blobs };
  const request = (restored: Restored, now = NOW) => ({
    scope: { workDir: '/nonexistent', prefix: 'p', arch: 'x64' },
    restored: { ...restored, thrash: thrashOf(restored, now) },
    after,
    job: { seen: [seen], used: new Set(['library/app:1']) },
    run: { id: '7', attempt: '1' },
    now,
  });

  test('the blob of the entry evicted early is not planned; the index records it and still names the image', () => {
    const { plan, index, withheld, newBlobs } = savePlan(request(restoredOf(indexOf(daysAgo(2)), [pack, baseEntry], [layerEntry])));
    assert.deepEqual(Object.keys(newBlobs), []);
    assert.deepEqual(plan.entries, []);
    assert.deepEqual(withheld, { blobs: 1, bytes: 20 * MiB });
    assert.deepEqual(index.evicted, [{ digests: [layer], bytes: 20 * MiB, at: NOW.toISOString() }]);
    assert.deepEqual(
      index.entries.map((e) => e.key),
      [baseEntry.key, pack.key],
    );
    assert.deepEqual(
      index.images.map((i) => i.repository),
      ['library/app'],
      'the image stays: its layer comes from the upstream',
    );
  });

  test('an entry gone for age (unused 8 days) is saved again, as before', () => {
    const { plan, withheld, index } = savePlan(request(restoredOf(indexOf(daysAgo(8)), [pack, baseEntry], [layerEntry])));
    assert.deepEqual(
      plan.entries.flatMap((e) => e.digests),
      [layer],
    );
    assert.deepEqual(withheld, { blobs: 0, bytes: 0 });
    assert.equal(index.evicted, undefined);
  });

  test('the next run of the day, with the eviction in its index: the blob is still left out, the record carried', () => {
    const evicted = [{ digests: [layer], bytes: 20 * MiB, at: daysAgo(0.25) }];
    const index = indexOf(daysAgo(0.25), { entries: [pack, baseEntry], evicted });
    const next = savePlan(request(restoredOf(index, [pack, baseEntry], [])));
    assert.deepEqual(next.plan.entries, []);
    assert.deepEqual(next.index.evicted, evicted);
    // A day after: saved again, and the record gone.
    const later = savePlan(request(restoredOf(index, [pack, baseEntry], []), new Date(NOW.getTime() + 86_400_000)));
    assert.deepEqual(
      later.plan.entries.flatMap((e) => e.digests),
      [layer],
    );
    assert.equal(later.index.evicted, undefined);
  });

  test('the evictions recorded fit in what the index may still name, newest first', () => {
    const records = [0.1, 0.3, 0.2].map((d) => ({ digests: [digest(`e${d}`), digest(`f${d}`)], bytes: 1, at: daysAgo(d) }));
    const thrash = { evicted: null, survivedBytes: 0, withheld: records, until: NOW.toISOString() };
    assert.deepEqual(evictedToRecord(thrash, { items: 10, digests: 5 }), [records[0], records[2]]);
    assert.deepEqual(evictedToRecord(thrash, { items: 1, digests: 100 }), [records[0]]);
    assert.deepEqual(evictedToRecord(null, { items: 10, digests: 100 }), []);
  });
});

describe('readIndex: the new fields are untrusted', () => {
  const text = (over: Record<string, unknown>) => JSON.stringify({ ...indexOf(daysAgo(1)), ...over });

  test('an index of an older version (no evicted, no last use per entry) reads as it did', () => {
    const read = readIndex(JSON.stringify(indexOf(daysAgo(1))), RULES);
    assert.deepEqual(read, { index: indexOf(daysAgo(1)), invalid: [] });
  });

  test('round trip: last uses and evictions come back as written', () => {
    const index = indexOf(daysAgo(1), {
      entries: [pack, baseEntry, { ...layerEntry, seen: daysAgo(3) }],
      evicted: [{ digests: [other], bytes: 5 * MiB, at: daysAgo(0.5) }],
    });
    assert.deepEqual(readIndex(JSON.stringify(index), RULES), { index, invalid: [] });
  });

  test('evicted that is not a list, or records of the wrong shape: dropped, each said, the rest kept', () => {
    const notAList = readIndex(text({ evicted: { digests: [other] } }), RULES);
    assert.equal(notAList.index.evicted, undefined);
    assert.deepEqual(notAList.invalid, ['evicted: not a list']);
    assert.equal(notAList.index.entries.length, 3);

    const good = { digests: [other], bytes: 1, at: daysAgo(0.5) };
    const read = readIndex(
      text({
        evicted: [
          good,
          'x',
          { ...good, digests: ['sha256:../../etc'] },
          { ...good, digests: [] },
          { ...good, digests: other },
          { ...good, bytes: -1 },
          { ...good, bytes: 1e300 },
          { ...good, bytes: '1' },
          { ...good, at: 'tomorrow' },
          { ...good, at: { toString: 1 } },
        ],
      }),
      RULES,
    );
    assert.deepEqual(read.index.evicted, [good]);
    assert.equal(read.invalid.length, 9, read.invalid.join('\n'));
    assert.ok(read.invalid.every((line) => /^evicted entry \d+: /.test(line)));
  });

  test('an entry whose last use is not a time is dropped like any entry that fails a check', () => {
    const read = readIndex(text({ entries: [pack, baseEntry, { ...layerEntry, seen: 'yesterday' }] }), RULES);
    assert.deepEqual(
      read.index.entries.map((e) => e.key),
      [pack.key, baseEntry.key],
    );
    assert.match(read.invalid[0], /entry 3 \(p-blob-layer\): its last use is not a time/);
  });

  test('past the item cap, the records are dropped and said once', () => {
    const records = Array.from({ length: MAX_INDEX_ITEMS + 5 }, (_, i) => ({ digests: [digest(`r${i}`)], bytes: 1, at: daysAgo(0.5) }));
    const read = readIndex(text({ evicted: records }), RULES);
    assert.equal(read.index.evicted?.length, MAX_INDEX_ITEMS);
    assert.deepEqual(read.invalid, [`5 evicted entries past the first ${MAX_INDEX_ITEMS}`]);
  });

  test('the largest list the reader takes costs little: read, found, withheld and recorded again within a second or so', () => {
    const all = Array.from({ length: MAX_INDEX_DIGESTS - 10 }, (_, i) => digest(`w${i}`));
    const per = Math.floor(all.length / MAX_INDEX_ITEMS);
    const records = Array.from({ length: MAX_INDEX_ITEMS }, (_, i) => ({
      digests: all.slice(i * per, (i + 1) * per),
      bytes: 1,
      at: daysAgo(0.5),
    }));
    const cpu = process.cpuUsage();
    const read = readIndex(text({ evicted: records }), RULES);
    const thrash = thrashOf(restoredOf(read.index, [pack], []), NOW);
    const withheld = withheldDigests(thrash);
    const recorded = evictedToRecord(thrash, { items: MAX_INDEX_ITEMS, digests: MAX_INDEX_DIGESTS });
    const { user, system } = process.cpuUsage(cpu);
    assert.deepEqual(read.invalid, []);
    assert.equal(withheld.size, per * MAX_INDEX_ITEMS);
    assert.equal(recorded.length, MAX_INDEX_ITEMS);
    assert.ok((user + system) / 1000 < 3000, `${(user + system) / 1000} ms of CPU`);
  });

  test('past the digest cap, the records are dropped, never the entries or images: the list is read last', () => {
    const huge = Array.from({ length: MAX_INDEX_DIGESTS }, (_, i) => digest(`h${i}`));
    const read = readIndex(text({ evicted: [{ digests: huge, bytes: 1, at: daysAgo(0.5) }] }), RULES);
    assert.equal(read.index.evicted, undefined);
    assert.equal(read.index.entries.length, 3);
    assert.equal(read.index.images.length, 1);
    assert.deepEqual(read.invalid, [`1 evicted past the first ${MAX_INDEX_DIGESTS} digests the index names`]);
  });
});

describe('restoreOutcome: what the look-ups said', () => {
  const index = indexOf(daysAgo(3), { entries: [pack, { ...baseEntry, seen: daysAgo(4) }, layerEntry] });
  const selected: Restored = { ...restoredOf(index, [], []), finished: false };
  const at = Date.parse(daysAgo(0));
  const progress: RestoreProgress = {
    entries: [
      { entry: pack.key, found: true, present: pack.digests, bytes: 3_000, at },
      { entry: baseEntry.key, found: false, present: [], limited: 'rate-limited', bytes: 0, at },
      { entry: layerEntry.key, found: false, gone: true, present: [], bytes: 0, at },
    ],
    images: [],
    done: { done: true, at },
  };

  test('gone: only the entries the service said it does not have; a look-up that failed is not', () => {
    const r = restoreOutcome(selected, progress);
    assert.deepEqual(r.gone, [layerEntry]);
    const failed = { ...progress, entries: progress.entries.map((e) => (e.gone ? { ...e, gone: undefined } : e)) };
    assert.deepEqual(restoreOutcome(selected, failed).gone, []);
  });

  test('kept: one restored is seen now (its time is the next index’s); one rate-limited keeps its last use', () => {
    const r = restoreOutcome(selected, progress);
    assert.deepEqual(r.kept, [pack, { ...baseEntry, seen: daysAgo(4) }]);
    const old = restoreOutcome({ ...selected, entries: [pack, baseEntry, layerEntry] }, progress);
    assert.deepEqual(old.kept[1], { ...baseEntry, seen: daysAgo(3) }, "an older index's entry: seen when the index was created");
  });
});

describe('the report on thrash', () => {
  const facts = (restored: Restored, withheld = { blobs: 1, bytes: 20 * MiB }): ReportFacts =>
    reportFacts({
      inputs: { upstream: 'https://registry-1.docker.io', save: true, maxSize: 2 * 1024 * MiB, maxAgeDays: 7 },
      baseline: { started: 0, restored, storage: { blobs: {}, repositories: {} } },
      restored,
      background: null,
      mirrors: [],
      usages: null,
      decision: { withheld: [], stale: [], unverified: [] },
      saved: {
        entries: [],
        bytes: 0,
        indexKey: 'p-index-2',
        deferred: 0,
        stopped: '',
        leftToOthers: 0,
        heldBack: { ms: 0, refused: 0, kinds: [] },
        withheld,
      },
      quota: null,
      prefetch: null,
      unpigz: true,
      pulled: [],
      viaHostsToml: [],
      builtInBuildkit: '',
      problems: [],
    });

  test('the run that finds it: the figures, the cause, until when, and the max-size to set', () => {
    const restored = restoredOf(indexOf(daysAgo(2)), [pack, baseEntry], [layerEntry]);
    const md = renderReport(facts({ ...restored, thrash: thrashOf(restored, NOW) }));
    assert.ok(
      md.includes(
        "- ⚠️ Evicted early: 1 entry (20.0 MiB) this cache saved or restored in the last 2 days was gone: the repository's Actions cache is over its size limit, and GitHub evicts the least recently used entries first (unused ones only after 7 days). Their blobs are not saved again until 2026-12-11 12:00 UTC. Set `max-size: 30MiB` or less (what of this cache survived, 30.0 MiB; it is 2.00 GiB now), or make room in the repository's Actions cache.",
      ),
      md,
    );
    assert.ok(md.includes('- Not saved again until 2026-12-11 12:00 UTC: 1 blob (20.0 MiB) of entries evicted early;'), md);
  });

  test('a later run of the day: only what it left out, and until when', () => {
    const index = indexOf(daysAgo(0.25), {
      entries: [pack, baseEntry],
      evicted: [{ digests: [layer], bytes: 20 * MiB, at: daysAgo(0.25) }],
    });
    const restored = restoredOf(index, [pack, baseEntry], []);
    const md = renderReport(facts({ ...restored, thrash: thrashOf(restored, NOW) }));
    assert.doesNotMatch(md, /Evicted early/);
    assert.ok(md.includes('- Not saved again until 2026-12-11 06:00 UTC: 1 blob (20.0 MiB)'), md);
  });

  test('no thrash: not a word of it', () => {
    const restored = restoredOf(indexOf(daysAgo(1)), [pack, baseEntry, layerEntry], []);
    const md = renderReport(facts({ ...restored, thrash: thrashOf(restored, NOW) }, { blobs: 0, bytes: 0 }));
    assert.doesNotMatch(md, /Evicted early|Not saved again/);
  });
});
