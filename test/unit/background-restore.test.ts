// What the background restore records and what post makes of it: the entries in the order they restore, the
// outcome (kept, missing, damaged, unfinished), when each repository came to link each blob, and how far the
// restore had come when the job asked for an image the mirrors' front held.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  backgroundRestoreFacts,
  ImagesInPlace,
  linkedAt,
  parseProgress,
  restoreOutcome,
  RestoreQueue,
  type RestoreProgress,
} from '../../src/background-restore.js';
import { restoreOrder, type CachedImage, type EntryRef } from '../../src/cache-index.js';
import { NOTHING_RESTORED, type Restored } from '../../src/persistence.js';

const digest = (name: string) => `sha256:${createHash('sha256').update(name).digest('hex')}`;
const [m1, c1, base, l1, m2, c2, l2] = ['m1', 'c1', 'base', 'l1', 'm2', 'c2', 'l2'].map(digest);
const image = (repository: string, reference: string, manifests: string[], blobs: string[]): CachedImage => ({
  repository,
  reference,
  manifests,
  blobs,
  lastUsed: '2026-12-01T00:00:00.000Z',
});
const app = image('library/app', '1', [m1], [c1, base, l1]);
const tool = image('library/tool', '2', [m2], [c2, base, l2]);
const pack: EntryRef = { key: 'pack', digests: [m1, c1, m2, c2].sort() };
const entry = (d: string): EntryRef => ({ key: `blob-${d.slice(7, 15)}`, digests: [d] });
const entries = [entry(l2), pack, entry(base), entry(l1)];
const selected: Restored = {
  ...NOTHING_RESTORED,
  restoredKey: 'index-1',
  images: [app, tool],
  entries: restoreOrder([app, tool], entries),
  finished: false,
};
const T0 = Date.parse('2026-12-02T12:00:00Z');

describe('restoreOrder', () => {
  test("the most recently used image's entries first, its manifest's entry first, each entry once", () => {
    assert.deepEqual(
      restoreOrder([app, tool], entries).map((e) => e.key),
      ['pack', entry(base).key, entry(l1).key, entry(l2).key],
    );
    assert.deepEqual(
      restoreOrder([tool, app], entries).map((e) => e.key),
      ['pack', entry(base).key, entry(l2).key, entry(l1).key],
    );
  });

  test('only the entries the images need', () => {
    assert.deepEqual(
      restoreOrder([app], entries).map((e) => e.key),
      ['pack', entry(base).key, entry(l1).key],
    );
  });
});

describe('RestoreQueue', () => {
  const order = restoreOrder([app, tool], entries);
  const none = new Map<string, number>();
  const waitingForTool = new Map([['library/tool:2', T0]]);

  test('in restore order while no pull waits, each entry once, then nothing', () => {
    const queue = new RestoreQueue(order, [app, tool]);
    assert.deepEqual(
      order.map(() => queue.take(none)?.key),
      order.map((e) => e.key),
    );
    assert.equal(queue.take(none), undefined);
  });

  test('an entry of the image a pull waits for jumps the queue', () => {
    const queue = new RestoreQueue(order, [app, tool]);
    // The pack holds tool's manifest and config, the base layer is tool's too: first anyway. Then tool's own layer.
    assert.deepEqual(
      [queue.take(waitingForTool), queue.take(waitingForTool), queue.take(waitingForTool)].map((e) => e?.key),
      ['pack', entry(base).key, entry(l2).key],
    );
    assert.equal(queue.take(waitingForTool)?.key, entry(l1).key, 'nothing of tool left: the queue as it is');
    assert.equal(queue.take(waitingForTool), undefined);
  });

  test('a pull that starts waiting half-way takes the entries left of its image first', () => {
    const queue = new RestoreQueue(order, [app, tool]);
    assert.equal(queue.take(none)?.key, 'pack');
    assert.equal(queue.take(none)?.key, entry(base).key);
    assert.equal(queue.take(waitingForTool)?.key, entry(l2).key);
    assert.equal(queue.take(waitingForTool)?.key, entry(l1).key);
  });

  test('a held image the plan does not hold changes nothing', () => {
    const queue = new RestoreQueue(order, [app, tool]);
    const other = new Map([['library/other:1', T0]]);
    assert.deepEqual(
      order.map(() => queue.take(other)?.key),
      order.map((e) => e.key),
    );
  });
});

describe('ImagesInPlace', () => {
  test('an image is whole once its last blob is in place, and is given once', () => {
    const inPlace = new ImagesInPlace([app, tool]);
    assert.deepEqual(inPlace.add([m1, c1, m2, c2]), []);
    assert.deepEqual(inPlace.add([l2]), []);
    assert.deepEqual(inPlace.add([base]), [tool]);
    assert.deepEqual(inPlace.add([base, l1]), [app], 'a blob in place twice counts once');
    assert.deepEqual(inPlace.add([l1, l2]), []);
  });

  test('images made whole by the same blob come in the order of the plan', () => {
    const inPlace = new ImagesInPlace([tool, app]);
    inPlace.add([m1, c1, l1, m2, c2, l2]);
    assert.deepEqual(inPlace.add([base]), [tool, app]);
  });

  test('an image lacking a blob no entry brings is never whole', () => {
    const inPlace = new ImagesInPlace([image('library/x', '1', [m1], [digest('nowhere')])]);
    assert.deepEqual(inPlace.add([m1, c1, base, l1, m2, c2, l2]), []);
  });
});

describe('parseProgress', () => {
  test('entries, images and the end, a line cut off by a write in progress skipped', () => {
    const text = [
      JSON.stringify({ entry: 'pack', found: true, present: pack.digests, bytes: 40, at: T0 + 100 }),
      JSON.stringify({ image: 'library/app:1', ref: 'app:1', repository: 'library/app', linked: [m1], whole: true, at: T0 + 200 }),
      JSON.stringify({ done: true, at: T0 + 300 }),
      '{"entry": "blob-',
    ].join('\n');
    const p = parseProgress(text);
    assert.deepEqual(
      p.entries.map((e) => e.entry),
      ['pack'],
    );
    assert.deepEqual(
      p.images.map((i) => i.image),
      ['library/app:1'],
    );
    assert.equal(p.done?.at, T0 + 300);
  });
});

/** What the worker would record: each entry in turn, and an image as soon as all of its blobs are in. */
function progressOf(
  outcomes: Record<string, { found: boolean; present: string[]; refused?: string }>,
  done?: { error?: string },
): RestoreProgress {
  const p: RestoreProgress = { entries: [], images: [] };
  const present = new Set<string>();
  let at = T0;
  for (const e of selected.entries.filter((e) => outcomes[e.key])) {
    outcomes[e.key].present.forEach((d) => present.add(d));
    p.entries.push({ entry: e.key, ...outcomes[e.key], bytes: outcomes[e.key].present.length * 10, at: (at += 1000) });
    for (const i of [app, tool]) {
      const key = `${i.repository}:${i.reference}`;
      if (!p.images.some((r) => r.image === key) && [...i.manifests, ...i.blobs].every((d) => present.has(d))) {
        p.images.push({
          image: key,
          ref: key.replace('library/', ''),
          repository: i.repository,
          linked: [...i.manifests, ...i.blobs],
          whole: true,
          at: (at += 10),
        });
      }
    }
  }
  if (done) p.done = { done: true, at: at + 10, ...done };
  return p;
}

const all = (present = true) =>
  Object.fromEntries(selected.entries.map((e) => [e.key, { found: true, present: present ? e.digests : [] }]));

describe('restoreOutcome', () => {
  test('every entry whole: all kept, finished', () => {
    const r = restoreOutcome(selected, progressOf(all(), {}));
    assert.equal(r.finished, true);
    assert.deepEqual(
      r.kept.map((e) => e.key),
      selected.entries.map((e) => e.key),
    );
    assert.deepEqual([r.missingEntries, r.damaged, r.refused], [0, [], []]);
    assert.equal(r.present.length, 7);
  });

  test('an entry refused and one gone: not kept; the refused blobs are damaged (saved again), the gone entry counted', () => {
    const outcomes = {
      ...all(),
      [entry(l1).key]: { found: true, present: [], refused: 'blob-x: not a tar' },
      [entry(l2).key]: { found: false, present: [] },
    };
    const r = restoreOutcome(selected, progressOf(outcomes, {}));
    assert.equal(r.finished, true);
    assert.deepEqual(
      r.kept.map((e) => e.key),
      ['pack', entry(base).key],
    );
    assert.deepEqual(r.damaged, [l1]);
    assert.equal(r.missingEntries, 1);
    assert.deepEqual(r.refused, ['blob-x: not a tar']);
  });

  test('stopped half-way (cache-timeout, or the worker ended): unfinished, so post saves nothing', () => {
    const half = Object.fromEntries(Object.entries(all()).slice(0, 2));
    assert.equal(restoreOutcome(selected, progressOf(half)).finished, false);
    assert.equal(
      restoreOutcome(selected, progressOf(half, { error: 'restoring the cache took longer than 3 s (cache-timeout)' })).finished,
      false,
    );
    assert.equal(restoreOutcome(selected, progressOf(all(), { error: 'cut off after the last entry' })).finished, false);
  });

  // Main went on without the index (its look-up rate-limited past what main waits); the worker kept looking it up.
  const limited = { ...NOTHING_RESTORED, finished: false, indexLimited: 'the cache service rate-limited looking up index-' };
  test("the index main went on without, got late by the worker: its selection stands for main's, and the job saves", () => {
    const late = {
      lateIndex: { restoredKey: 'index-1', index: null, images: [app, tool], dropped: [], entries: selected.entries, refused: [] },
      at: T0,
    };
    const r = restoreOutcome(limited, { ...progressOf(all(), {}), lateIndex: late });
    assert.equal(r.restoredKey, 'index-1');
    assert.equal(r.finished, true, 'every entry of the late index tried');
    assert.deepEqual(r.indexLate, { limited: limited.indexLimited, at: T0 });
    assert.equal(r.indexLimited, undefined);
    assert.deepEqual(
      r.kept.map((e) => e.key),
      selected.entries.map((e) => e.key),
    );
  });

  test('the index never got (the service kept refusing past cache-timeout): unfinished, so post saves nothing', () => {
    const r = restoreOutcome(limited, {
      entries: [],
      images: [],
      done: { done: true, at: T0, error: 'restoring the cache took longer than 300 s' },
    });
    assert.equal(r.finished, false);
    assert.equal(restoreOutcome(limited, { entries: [], images: [], done: { done: true, at: T0 } }).finished, false);
  });

  test('the late index record is read back from the progress file', () => {
    const late = { lateIndex: { restoredKey: 'index-1', index: null, images: [app], dropped: [], entries: [pack], refused: [] }, at: T0 };
    assert.deepEqual(parseProgress(`${JSON.stringify(late)}\n`).lateIndex, late);
  });
});

describe('linkedAt', () => {
  test('each repository and blob at the time its image was linked, the first link kept', () => {
    const p = progressOf(all(), {});
    const at = linkedAt(p);
    const appAt = p.images.find((i) => i.image === 'library/app:1')!.at;
    assert.equal(at.get(`library/app@${l1}`), appAt);
    assert.equal(at.get(`library/app@${l2}`), undefined, "a blob of another repository's image");
    assert.ok(at.get(`library/tool@${base}`)! > appAt);
  });
});

describe('backgroundRestoreFacts', () => {
  test('images held by the front: when asked, when in place, and how much of the restore was done by then', () => {
    const p = progressOf(all(), {});
    const restored = restoreOutcome(selected, p);
    const f = backgroundRestoreFacts(restored, p, T0, new Map([['library/tool:2', T0 + 1500]]));
    assert.equal(f.finished, true);
    assert.equal(f.images, 2);
    assert.equal(f.seconds, Math.round((p.done!.at - T0) / 100) / 10);
    const inPlace = p.images.find((i) => i.image === 'library/tool:2')!.at;
    assert.deepEqual(f.early, [{ image: 'tool:2', askedAt: 1.5, inPlaceAt: Math.round((inPlace - T0) / 100) / 10, restoredShare: 0.57 }]);
  });

  test('unfinished: no end time', () => {
    const p = progressOf(Object.fromEntries(Object.entries(all()).slice(0, 1)));
    const f = backgroundRestoreFacts(restoreOutcome(selected, p), p, T0, new Map());
    assert.deepEqual([f.finished, f.seconds, f.early], [false, null, []]);
  });
});
