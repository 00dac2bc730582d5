// Docker Hub's pure parts: the Bearer challenge of /v2/ (where to get a token) and the pull quota headers.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseChallenge, parseQuota } from '../../src/docker-hub.js';

describe('parseChallenge', () => {
  test("Docker Hub's real header", () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'), {
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
    });
  });

  test('a challenge with a scope (as a manifest request gets it), and spaces after the commas', () => {
    assert.deepEqual(
      parseChallenge('Bearer realm="https://auth.docker.io/token", service="registry.docker.io", scope="repository:library/alpine:pull"'),
      {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
      },
    );
  });

  test('the scheme in any case', () => {
    const expected = { realm: 'https://auth.docker.io/token', service: 'registry.docker.io' };
    assert.deepEqual(parseChallenge('bearer realm="https://auth.docker.io/token",service="registry.docker.io"'), expected);
    assert.deepEqual(parseChallenge('BEARER realm="https://auth.docker.io/token",service="registry.docker.io"'), expected);
  });

  test('parameter names in any case', () => {
    assert.deepEqual(parseChallenge('Bearer Realm="https://ghcr.io/token",Service="ghcr.io"'), {
      realm: 'https://ghcr.io/token',
      service: 'ghcr.io',
    });
  });

  test('no service: an empty one', () => {
    assert.deepEqual(parseChallenge('Bearer realm="http://127.0.0.1:5001/token"'), { realm: 'http://127.0.0.1:5001/token', service: '' });
  });

  test('Basic, and other schemes, are not a Bearer challenge', () => {
    assert.equal(parseChallenge('Basic realm="Registry Realm"'), null);
    assert.equal(parseChallenge('Digest realm="x",nonce="y"'), null);
    assert.equal(parseChallenge('Bearerish realm="https://auth.docker.io/token"'), null);
  });

  test('a Bearer challenge without a realm is no use', () => {
    assert.equal(parseChallenge('Bearer service="registry.docker.io"'), null);
    assert.equal(parseChallenge('Bearer realm="",service="registry.docker.io"'), null);
    assert.equal(parseChallenge('Bearer '), null);
    assert.equal(parseChallenge('Bearer'), null);
  });

  test('no header, or an empty one', () => {
    assert.equal(parseChallenge(null), null);
    assert.equal(parseChallenge(''), null);
  });
});

describe('parseQuota', () => {
  test("Docker Hub's ratelimit-limit and ratelimit-remaining", () => {
    assert.deepEqual(parseQuota('100;w=21600', '76;w=21600'), { limit: 100, remaining: 76, window: 21600 });
  });

  test('an authenticated user, and a quota used up', () => {
    assert.deepEqual(parseQuota('200;w=21600', '0;w=21600'), { limit: 200, remaining: 0, window: 21600 });
  });

  test('the window is read from the limit', () => {
    assert.deepEqual(parseQuota('100;w=3600', '99'), { limit: 100, remaining: 99, window: 3600 });
  });

  test('a limit without a window: window 0', () => {
    assert.deepEqual(parseQuota('100', '76'), { limit: 100, remaining: 76, window: 0 });
  });

  test('missing headers: null (no limit applies)', () => {
    assert.equal(parseQuota(null, null), null);
    assert.equal(parseQuota(null, '76;w=21600'), null);
    assert.equal(parseQuota('100;w=21600', null), null);
    assert.equal(parseQuota('', ''), null);
  });

  test('headers that are not numbers: null', () => {
    assert.equal(parseQuota('unlimited', '76'), null);
    assert.equal(parseQuota('100;w=21600', 'lots'), null);
  });
});
