// dockerd's own BuildKit and a mirror added by reload, by engine release (the rule in src/builtin-buildkit.ts, read
// from moby's source; test/e2e/buildkit.test.ts shows 20.10 going around the mirror for real).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { builtInBuildkitBypass, builtInBuildkitNotice, engineRelease } from '../../src/builtin-buildkit.js';

const LOOPBACK = 'http://127.0.0.1:40001';
const BRIDGE = 'http://172.17.0.1:40001';

describe("dockerd's own BuildKit and a reloaded mirror", () => {
  test("the release from docker info's ServerVersion, as distributions spell it", () => {
    assert.deepEqual(engineRelease('20.10.24+dfsg1'), [20, 10]);
    assert.deepEqual(engineRelease('24.0.7-0ubuntu4'), [24, 0]);
    assert.deepEqual(engineRelease('28.0.4'), [28, 0]);
    assert.deepEqual(engineRelease('v29.1.0'), [29, 1]);
    assert.deepEqual(engineRelease('25.0.3~ce'), [25, 0]);
    for (const unreadable of ['', 'dev', 'master-dockerproject-2026-11-01', '28'])
      assert.equal(engineRelease(unreadable), null, unreadable);
  });

  test('20.10 to 24.0: BuildKit keeps the mirrors the daemon started with, on any address', () => {
    for (const version of ['20.10.0', '20.10.24+dfsg1', '23.0.18', '24.0.9']) {
      assert.equal(builtInBuildkitBypass(version, LOOPBACK), 'mirrors-read-at-start', version);
      assert.equal(builtInBuildkitBypass(version, BRIDGE), 'mirrors-read-at-start', version);
    }
  });

  test('25.0 to 27.x: the reloaded mirror is read, but over plain HTTP only on loopback', () => {
    for (const version of ['25.0.0', '26.1.4', '27.5.1']) {
      assert.equal(builtInBuildkitBypass(version, LOOPBACK), null, version);
      assert.equal(builtInBuildkitBypass(version, 'http://localhost:40001'), null, version);
      assert.equal(builtInBuildkitBypass(version, BRIDGE), 'plain-http-on-loopback-only', version);
    }
  });

  test('28.0 and later: through the mirror on any address', () => {
    for (const version of ['28.0.0', '28.5.2', '29.7.2', '30.0.0']) {
      assert.equal(builtInBuildkitBypass(version, LOOPBACK), null, version);
      assert.equal(builtInBuildkitBypass(version, BRIDGE), null, version);
    }
  });

  test('releases before 20.10 and versions that cannot be read: no claim either way', () => {
    for (const version of ['19.03.15', '18.09.9', '', 'dev']) assert.equal(builtInBuildkitBypass(version, LOOPBACK), null, version);
  });

  test('the notice says what docker build does, why, and both ways through the cache', () => {
    const atStart = builtInBuildkitNotice('20.10.24+dfsg1', LOOPBACK)!;
    assert.match(
      atStart,
      /^`docker build` with BuildKit \(the default builder, also docker\/build-push-action without a builder of its own\) pulls its FROM images from Docker Hub directly, not through the cache: dockerd 20\.10\.24\+dfsg1 gives its BuildKit the registry mirrors it had when it started/,
    );
    assert.match(atStart, /Docker Engine 25 and later read the reloaded mirror/);
    const onBridge = builtInBuildkitNotice('26.1.4', BRIDGE)!;
    assert.match(
      onBridge,
      /dockerd 26\.1\.4's BuildKit speaks plain HTTP only to a mirror on loopback, and this one listens on the Docker bridge/,
    );
    for (const notice of [atStart, onBridge]) {
      assert.match(notice, /a buildx builder given the `buildkitd-config` output \(docker\/setup-buildx-action\)/);
      assert.match(notice, /the classic builder \(`DOCKER_BUILDKIT=0`\)/);
    }
    assert.equal(builtInBuildkitNotice('28.0.4', BRIDGE), null);
  });
});
