// What post saves, by what the upstream says of each image: pure rules, no processes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideSaves, verdictOf, type Verdict } from '../../src/upstream-check.js';

const M1 = `sha256:${'1'.repeat(64)}`;
const M2 = `sha256:${'2'.repeat(64)}`;
const tagged = { repository: 'library/alpha', reference: '1', manifests: [M1], blobs: [] };
const byDigest = { repository: 'library/alpha', reference: M1, manifests: [M1], blobs: [] };

describe('verdictOf', () => {
  const cases: [string, { status: number; digest: string } | null, typeof tagged, boolean, Verdict][] = [
    ['the tag names the stored manifest', { status: 200, digest: M1 }, tagged, false, 'current'],
    ['the tag names another manifest', { status: 200, digest: M2 }, tagged, false, 'moved'],
    ['the tag is gone', { status: 404, digest: '' }, tagged, false, 'gone'],
    ['an answer without a digest', { status: 200, digest: '' }, tagged, false, 'unverified'],
    ['rate limited', { status: 429, digest: '' }, tagged, false, 'unverified'],
    ['the upstream errs', { status: 503, digest: '' }, tagged, false, 'unverified'],
    ['an anonymous job refused', { status: 401, digest: '' }, tagged, false, 'unverified'],
    ['no answer at all', null, tagged, false, 'unverified'],
    ['pulled with credentials, refused anonymously', { status: 401, digest: '' }, tagged, true, 'private'],
    ['pulled with credentials, unknown anonymously', { status: 404, digest: '' }, tagged, true, 'private'],
    ['pulled with credentials, public', { status: 200, digest: M1 }, tagged, true, 'current'],
    ['pulled by digest', { status: 200, digest: '' }, byDigest, false, 'current'],
  ];
  for (const [what, head, image, anonymousCheck, verdict] of cases) {
    test(`${what}: ${verdict}`, () => assert.equal(verdictOf(head, image, anonymousCheck), verdict));
  }
});

describe('decideSaves', () => {
  const beta = { ...tagged, repository: 'library/beta' };
  const gamma = { ...tagged, repository: 'library/gamma' };
  const delta = { ...tagged, repository: 'library/delta' };
  const epsilon = { ...tagged, repository: 'library/epsilon' };

  test('current saved; private withheld; moved and gone stale; unverified kept unrefreshed only as the last index had it', () => {
    const movedSince = { ...epsilon, manifests: [M2] };
    const decision = decideSaves(
      [tagged, beta, gamma, delta, movedSince],
      ['current', 'private', 'moved', 'unverified', 'unverified'],
      [delta, epsilon],
    );
    assert.deepEqual(decision.images, [tagged, delta]);
    assert.deepEqual([...decision.unrefreshed], ['library/delta:1']);
    assert.deepEqual(decision.withheld, ['library/beta:1']);
    assert.deepEqual(decision.stale, ['library/gamma:1']);
    assert.deepEqual(decision.unverified, ['library/epsilon:1']);
  });

  test('a tag gone upstream leaves the index even when the last index held it', () => {
    const decision = decideSaves([tagged], ['gone'], [tagged]);
    assert.deepEqual([decision.images, decision.stale], [[], ['library/alpha:1']]);
  });
});
