// The pruning rule, pure: given a listing of the repository's cache entries and the keys the indexes name, what is
// deleted. Only this action's own keys of the job's ref scope, more than an hour old, that no index counting names.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blobKey, indexKey, packKey } from '../../src/cache-index.js';
import {
  entriesToDelete,
  githubApiOf,
  indexesThatCount,
  MAX_DELETES,
  MIN_AGE_MS,
  ownKind,
  type ListedEntry,
  type PruneScope,
} from '../../src/prune.js';

const NOW = Date.parse('2026-03-10T12:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const REF = 'refs/heads/main';
const scope: PruneScope = { prefix: 'pc', ref: REF, maxAgeDays: 7, now: NOW };
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

let id = 0;
function listed(key: string, ageMs: number, extra: Partial<ListedEntry> = {}): ListedEntry {
  const at = new Date(NOW - ageMs).toISOString();
  return { id: ++id, ref: REF, key, version: 'v', created_at: at, last_accessed_at: at, size_in_bytes: 1000 + id, ...extra };
}
const index = (ageMs: number, arch = 'amd64', prefix = 'pc') => listed(indexKey(prefix, arch, '77', '1', NOW - ageMs, 'a1b2c3'), ageMs);
const keys = (entries: ListedEntry[]) => entries.map((e) => e.key).sort();

describe('ownKind: the whole grammar of this action keys, nothing else', () => {
  test("its blob, pack and index keys, a damaged blob's salted key", () => {
    assert.equal(ownKind(blobKey('pc', digest(1)), 'pc'), 'blob');
    assert.equal(ownKind(`${blobKey('pc', digest(1))}-1234-2`, 'pc'), 'blob');
    assert.equal(ownKind(packKey('pc', [digest(1), digest(2)]), 'pc'), 'pack');
    assert.equal(ownKind(indexKey('pc', 'arm64', '99', '3', NOW, 'ffee00'), 'pc'), 'index');
    assert.equal(ownKind(`pc-index-linux-amd64-99-3-${NOW.toString(36)}`, 'pc'), 'index', 'an index saved before keys had a nonce');
  });

  test("another prefix's keys, even one that begins with this prefix, and keys of other tools", () => {
    for (const key of [
      blobKey('pc-other', digest(1)),
      blobKey('pc-blob', digest(1)),
      `pc-blob-${blobKey('x', digest(1))}`,
      `${blobKey('pc', digest(1))}-tail-more`,
      indexKey('pc-x', 'amd64', '1', '1', NOW, 'abcdef'),
      'pc-index-linux-amd64-',
      'pc-node-modules-abc',
      'Linux-node-958aff96db2d75d67787d1e634ae70b659de937b',
      `PC-blob-sha256-${'0'.repeat(64)}`,
    ])
      assert.equal(ownKind(key, 'pc'), undefined, key);
  });

  test('a prefix with characters a regular expression would read', () => {
    assert.equal(ownKind(blobKey('p.c', digest(1)), 'p.c'), 'blob');
    assert.equal(ownKind(blobKey('pxc', digest(1)), 'p.c'), undefined);
  });
});

describe('indexesThatCount: those of the last max-age days, and the newest of each platform', () => {
  test('past max-age an index counts only as the newest of its platform', () => {
    const recent = index(2 * DAY);
    const old = index(9 * DAY);
    const oldArm = index(10 * DAY, 'arm64');
    const older = index(11 * DAY, 'arm64');
    assert.deepEqual(keys(indexesThatCount([recent, old, oldArm, older], scope)), keys([recent, oldArm]));
  });

  test('max-age 0: every index counts', () => {
    const all = [index(2 * DAY), index(90 * DAY)];
    assert.equal(indexesThatCount(all, { ...scope, maxAgeDays: 0 }).length, 2);
  });

  test("another ref's or another prefix's indexes do not count (nor are they read)", () => {
    const other = { ...index(DAY), ref: 'refs/heads/other' };
    assert.deepEqual(indexesThatCount([other, index(DAY, 'amd64', 'pcx')], scope), []);
  });
});

describe('entriesToDelete', () => {
  const named = blobKey('pc', digest(1));
  const unnamed = blobKey('pc', digest(2));
  const unnamedPack = packKey('pc', [digest(3)]);

  test('a blob or pack no index names, older than an hour, goes; a named one stays', () => {
    const listing = [listed(named, 2 * DAY), listed(unnamed, 2 * DAY), listed(unnamedPack, 3 * HOUR)];
    assert.deepEqual(keys(entriesToDelete(listing, new Set([named]), new Set(), scope)), [unnamedPack, unnamed].sort());
  });

  test('nothing created in the last hour goes: a job running now may be saving an index that names it', () => {
    const listing = [listed(unnamed, MIN_AGE_MS - 60_000), listed(unnamedPack, MIN_AGE_MS + 60_000)];
    assert.deepEqual(keys(entriesToDelete(listing, new Set(), new Set(), scope)), [unnamedPack]);
  });

  test("never another ref's, another prefix's, or another tool's entry, however old and unnamed", () => {
    const listing = [
      listed(unnamed, 30 * DAY, { ref: 'refs/heads/feature' }),
      listed(unnamed, 30 * DAY, { ref: 'refs/pull/1/merge' }),
      listed(blobKey('pc-other', digest(2)), 30 * DAY),
      listed('pc-node-modules-abc', 30 * DAY),
      listed({ ...index(30 * DAY, 'amd64', 'pcx') }.key, 30 * DAY),
    ];
    assert.deepEqual(entriesToDelete(listing, new Set(), new Set(), scope), []);
  });

  test('an index goes when past max-age and not the newest of its platform, unless the job restored or saved it', () => {
    const newest = index(20 * DAY);
    const old = index(25 * DAY);
    const restored = index(26 * DAY);
    const recent = index(3 * DAY, 'arm64');
    const listing = [newest, old, restored, recent];
    assert.deepEqual(keys(entriesToDelete(listing, new Set(), new Set([restored.key]), scope)), [old.key]);
    assert.deepEqual(entriesToDelete(listing, new Set(), new Set(), { ...scope, maxAgeDays: 0 }), [], 'no max-age: every index counts');
  });

  test('an entry the listing gives no readable time for is never deleted', () => {
    assert.deepEqual(entriesToDelete([listed(unnamed, 0, { created_at: 'yesterday' })], new Set(), new Set(), scope), []);
  });

  test(`largest first, at most ${MAX_DELETES} a job`, () => {
    const listing = Array.from({ length: MAX_DELETES + 20 }, (_, i) => listed(blobKey('pc', digest(100 + i)), DAY, { size_in_bytes: i }));
    const deleted = entriesToDelete(listing, new Set(), new Set(), scope);
    assert.equal(deleted.length, MAX_DELETES);
    assert.equal(deleted[0].size_in_bytes, MAX_DELETES + 19);
    assert.equal(deleted.at(-1)!.size_in_bytes, 20);
  });
});

describe('githubApiOf: where the REST API is, from the runner', () => {
  const env = { GITHUB_REPOSITORY: 'octo/repo', GITHUB_REF: REF };
  test('api.github.com by default; GITHUB_API_URL for GHES or a stand-in', () => {
    assert.deepEqual(githubApiOf(env, 'ghs_x'), { url: 'https://api.github.com', repository: 'octo/repo', ref: REF, token: 'ghs_x' });
    assert.equal((githubApiOf({ ...env, GITHUB_API_URL: 'http://127.0.0.1:8080/' }, 't') as { url: string }).url, 'http://127.0.0.1:8080');
  });
  test('without the repository or ref, or with an API URL that is not http(s), a reason (that never holds the token)', () => {
    for (const bad of [
      {},
      { GITHUB_REPOSITORY: 'octo/repo' },
      { ...env, GITHUB_REPOSITORY: '../x' },
      { ...env, GITHUB_API_URL: 'file:///x' },
    ]) {
      const reason = githubApiOf(bad, 'ghs_secret_token_value');
      assert.equal(typeof reason, 'string');
      assert.doesNotMatch(reason as string, /ghs_secret/);
    }
  });
});
