// Images as the registry stores them: what an image needs (an index only the platforms pulled), and the names the
// cache gives repositories of Docker Hub and of other registries, read as docker reads them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { displayName, imageContent, isRegistryHost, qualifiedRepository, splitRepository, type Manifests } from '../../src/images.js';
import { sha256 } from '../helpers/images.js';

const names = ['index', 'amd64', 'arm64', 'config-a', 'layer-a', 'config-b', 'layer-b', 'shared'];
const [index, amd64, arm64, configA, layerA, configB, layerB, shared] = names.map(sha256);
const manifests: Manifests = {
  [index]: { manifests: [{ digest: amd64 }, { digest: arm64 }] },
  [amd64]: { config: { digest: configA }, layers: [{ digest: shared }, { digest: layerA }] },
  [arm64]: { config: { digest: configB }, layers: [{ digest: shared }, { digest: layerB }] },
};

describe('imageContent', () => {
  test('a manifest: itself, then its config and layers in order', () => {
    assert.deepEqual(
      imageContent(amd64, manifests, () => true),
      { manifests: [amd64], blobs: [configA, shared, layerA] },
    );
  });

  test('an index: itself and the child manifests taken, with their blobs; the other platforms left out', () => {
    assert.deepEqual(
      imageContent(index, manifests, (child) => child === arm64),
      { manifests: [index, arm64], blobs: [configB, shared, layerB] },
    );
    assert.deepEqual(
      imageContent(index, manifests, () => false),
      { manifests: [index], blobs: [] },
    );
  });

  test('a manifest the storage does not hold: only its digest, nothing it would name', () => {
    assert.deepEqual(
      imageContent(sha256('absent'), manifests, () => true),
      { manifests: [sha256('absent')], blobs: [] },
    );
    const dangling = { [index]: manifests[index] };
    assert.deepEqual(
      imageContent(index, dangling, () => true),
      { manifests: [index, amd64, arm64], blobs: [] },
    );
  });
});

describe('repository names', () => {
  test("Docker Hub's are bare, every other registry's carry its host; split gives them back", () => {
    for (const [registry, repository, qualified] of [
      ['docker.io', 'library/alpine', 'library/alpine'],
      ['docker.io', 'org/app', 'org/app'],
      ['ghcr.io', 'org/app', 'ghcr.io/org/app'],
      ['registry.k8s.io', 'pause', 'registry.k8s.io/pause'],
      ['localhost:5000', 'team/app/api', 'localhost:5000/team/app/api'],
      ['localhost', 'app', 'localhost/app'],
    ]) {
      assert.equal(qualifiedRepository(registry, repository), qualified);
      assert.deepEqual(splitRepository(qualified), { registry, repository });
    }
  });

  test('as docker reads a name: a first part without a dot or a port, other than localhost, is a Docker Hub namespace', () => {
    assert.deepEqual(splitRepository('alpine'), { registry: 'docker.io', repository: 'alpine' });
    assert.deepEqual(splitRepository('myorg/app'), { registry: 'docker.io', repository: 'myorg/app' });
    assert.deepEqual(splitRepository('registry:5000/app'), { registry: 'registry:5000', repository: 'app' });
  });

  test('the display name drops the library/ of official images only', () => {
    assert.equal(displayName('library/alpine'), 'alpine');
    assert.equal(displayName('org/library/app'), 'org/library/app');
    assert.equal(displayName('ghcr.io/library/app'), 'ghcr.io/library/app');
  });
});

describe('isRegistryHost', () => {
  test('a DNS name with a dot, or localhost, with an optional port', () => {
    for (const host of [
      'ghcr.io',
      'registry.k8s.io',
      'nexus.example:8444',
      'localhost',
      'localhost:5000',
      '127.0.0.1:5000',
      'my-registry.corp',
    ]) {
      assert.equal(isRegistryHost(host), true, host);
    }
  });

  test('a bare name, capitals, a path, a scheme, a dangling port or label, or a port of six digits: not a host', () => {
    const refused = [
      'registry',
      'GHCR.io',
      'ghcr.io/org',
      'https://ghcr.io',
      'ghcr.io:',
      '-ghcr.io',
      'ghcr-.io',
      'ghcr..io',
      'ghcr.io:123456',
      '',
      'docker.io ',
    ];
    for (const value of refused) {
      assert.equal(isRegistryHost(value), false, JSON.stringify(value));
    }
  });
});
