// Which requests the mirrors' front holds while the cache restores: a manifest by the image's tag or digest, or a
// blob it names, under its repository on its registry; nothing else. And its bounds: which requests it refuses,
// and how many it takes at once.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { bodyOnRead, gatedImages, Slots, waitsFor } from '../../src/gate.js';

const digest = (name: string) => `sha256:${createHash('sha256').update(name).digest('hex')}`;
const [m, c, l, other] = ['m', 'c', 'l', 'other'].map(digest);
const lastUsed = '2026-12-01T00:00:00.000Z';
const pending = gatedImages([
  { repository: 'library/alpine', reference: '3', manifests: [m], blobs: [c, l], lastUsed },
  { repository: 'ghcr.io/org/app', reference: m, manifests: [m], blobs: [c], lastUsed },
]);

describe('waitsFor', () => {
  test('the image as its registry names it', () => {
    assert.deepEqual(
      pending.map((i) => [i.registry, i.name, i.key]),
      [
        ['docker.io', 'library/alpine', 'library/alpine:3'],
        ['ghcr.io', 'org/app', `ghcr.io/org/app@${m}`],
      ],
    );
  });

  test("a manifest by tag or digest, and each of the image's blobs, under its repository: held", () => {
    for (const path of [
      '/v2/library/alpine/manifests/3',
      `/v2/library/alpine/manifests/${m}`,
      `/v2/library/alpine/blobs/${l}`,
      `/v2/library/alpine/blobs/${c}?ns=docker.io`,
    ]) {
      assert.equal(waitsFor(pending, 'docker.io', path)?.key, 'library/alpine:3', path);
    }
    assert.equal(waitsFor(pending, 'ghcr.io', `/v2/org/app/blobs/${c}`)?.key, `ghcr.io/org/app@${m}`);
  });

  test('another tag, another blob, another repository or registry, the ping: passed on at once', () => {
    for (const [registry, path] of [
      ['docker.io', '/v2/library/alpine/manifests/latest'],
      ['docker.io', `/v2/library/alpine/blobs/${other}`],
      ['docker.io', `/v2/library/busybox/blobs/${l}`],
      ['ghcr.io', `/v2/library/alpine/blobs/${l}`],
      ['docker.io', '/v2/'],
      ['docker.io', '/v2/library/alpine/tags/list'],
    ]) {
      assert.equal(waitsFor(pending, registry, path), undefined, `${registry} ${path}`);
    }
  });
});

describe('bodyOnRead', () => {
  test('a GET or HEAD with a chunked body, or a length other than 0: refused', () => {
    for (const method of ['GET', 'HEAD']) {
      assert.equal(bodyOnRead(method, { 'transfer-encoding': 'chunked' }), true, method);
      assert.equal(bodyOnRead(method, { 'transfer-encoding': 'gzip, chunked' }), true, method);
      assert.equal(bodyOnRead(method, { 'content-length': '5' }), true, method);
    }
  });

  test('a GET or HEAD without a body, or with a length of 0; a body on another method: passed on', () => {
    assert.equal(bodyOnRead('GET', {}), false);
    assert.equal(bodyOnRead('HEAD', { 'content-length': '0' }), false);
    assert.equal(bodyOnRead('PUT', { 'content-length': '5' }), false);
    assert.equal(bodyOnRead('DELETE', { 'transfer-encoding': 'chunked' }), false);
    assert.equal(bodyOnRead(undefined, {}), false);
  });
});

describe('Slots', () => {
  test('up to its maximum at once; one given back can be taken again', () => {
    const slots = new Slots(2);
    assert.deepEqual([slots.take(), slots.take(), slots.take()], [true, true, false]);
    slots.give();
    assert.deepEqual([slots.take(), slots.take()], [true, false]);
  });

  test('more given back than taken does not raise the maximum', () => {
    const slots = new Slots(1);
    slots.give();
    slots.give();
    assert.deepEqual([slots.take(), slots.take()], [true, false]);
  });
});
