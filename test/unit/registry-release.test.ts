// Where the registry binary comes from: the official release tarball of each pinned version and arch, its hash.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PINNED_SHA256, releaseAsset } from '../../src/registry-release.js';
import { DEFAULTS } from '../../src/context.js';

describe('releaseAsset', () => {
  test('URL of the official tarball for each pinned version and arch', () => {
    assert.deepEqual(releaseAsset('2.8.3', 'amd64', DEFAULTS.registryDownloadUrl, ''), {
      url: 'https://github.com/distribution/distribution/releases/download/v2.8.3/registry_2.8.3_linux_amd64.tar.gz',
      sha256: 'b1f750ecbe09f38e2143e22c61a25e3da2afe1510d9522859230b480e642ceff',
    });
    assert.deepEqual(releaseAsset('3.0.0', 'arm64', DEFAULTS.registryDownloadUrl, ''), {
      url: 'https://github.com/distribution/distribution/releases/download/v3.0.0/registry_3.0.0_linux_arm64.tar.gz',
      sha256: '6c2ee1d135626fa42e0d6fb66a0e0f42e22439e5050087d04f4c5ff53655892e',
    });
    assert.deepEqual(releaseAsset('3.1.1', 'amd64', DEFAULTS.registryDownloadUrl, ''), {
      url: 'https://github.com/distribution/distribution/releases/download/v3.1.1/registry_3.1.1_linux_amd64.tar.gz',
      sha256: '6f330a3ba9ea1d23a6ee189f449d792595240585bb2f159123d76ac594f70dd8',
    });
  });

  test('the default version is pinned for both architectures', () => {
    assert.equal(DEFAULTS.registryVersion, '3.1.1');
    for (const arch of ['amd64', 'arm64'] as const)
      assert.match(releaseAsset(DEFAULTS.registryVersion, arch, DEFAULTS.registryDownloadUrl, '').sha256, /^[0-9a-f]{64}$/);
  });

  test('the pinned hashes are those published beside the releases', () => {
    assert.deepEqual(PINNED_SHA256, {
      '2.8.3/amd64': 'b1f750ecbe09f38e2143e22c61a25e3da2afe1510d9522859230b480e642ceff',
      '2.8.3/arm64': '7d2252eeeac97dd60fb9b36bebd15b95d7f947c4c82b8e0824cb55233ece9cd0',
      '3.0.0/amd64': '61c9a2c0d5981a78482025b6b69728521fbc78506d68b223d4a2eb825de5ca3d',
      '3.0.0/arm64': '6c2ee1d135626fa42e0d6fb66a0e0f42e22439e5050087d04f4c5ff53655892e',
      '3.1.1/amd64': '6f330a3ba9ea1d23a6ee189f449d792595240585bb2f159123d76ac594f70dd8',
      '3.1.1/arm64': '8167316d2b4a57e10d44f8c8a3c75fea5f3ec1c71872760bb903e5e8e52e9ad6',
    });
    for (const [key, sha] of Object.entries(PINNED_SHA256)) {
      const [version, arch] = key.split('/') as [string, 'amd64' | 'arm64'];
      assert.equal(releaseAsset(version, arch, DEFAULTS.registryDownloadUrl, '').sha256, sha);
    }
  });

  test('a custom download URL is used as the base', () => {
    assert.equal(
      releaseAsset('2.8.3', 'arm64', 'https://ghe.example/mirror', '').url,
      'https://ghe.example/mirror/v2.8.3/registry_2.8.3_linux_arm64.tar.gz',
    );
  });

  test('a hash given by the user overrides the pinned one', () => {
    const mine = 'f'.repeat(64);
    assert.equal(releaseAsset('2.8.3', 'amd64', DEFAULTS.registryDownloadUrl, mine).sha256, mine);
  });

  test('an unpinned version with a user hash is allowed', () => {
    const mine = 'a'.repeat(64);
    assert.deepEqual(releaseAsset('3.0.1', 'amd64', DEFAULTS.registryDownloadUrl, mine), {
      url: 'https://github.com/distribution/distribution/releases/download/v3.0.1/registry_3.0.1_linux_amd64.tar.gz',
      sha256: mine,
    });
  });

  test('an unpinned version without a hash is refused, naming registry-sha256 and the file to hash', () => {
    assert.throws(
      () => releaseAsset('3.0.1', 'arm64', DEFAULTS.registryDownloadUrl, ''),
      (e: Error) =>
        /registry-version 3\.0\.1 has no pinned checksum/.test(e.message) &&
        /known: 2\.8\.3, 3\.0\.0, 3\.1\.1/.test(e.message) &&
        /set registry-sha256/.test(e.message) &&
        /registry_3\.0\.1_linux_arm64\.tar\.gz/.test(e.message),
    );
  });
});
