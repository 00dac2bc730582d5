// The mirror plans and listen address each input gives.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseInputs } from '../../src/context.js';
import { firstIPv4, listenAddress, mirrorPlans } from '../../src/mirrors.js';

describe('mirrorPlans', () => {
  test('docker.io proxies the upstream input with the Docker Hub credentials; others their own host with theirs', () => {
    const inputs = parseInputs(
      (name) =>
        ({
          registries: 'docker.io ghcr.io quay.io',
          'dockerhub-username': 'hubuser',
          'dockerhub-token': 'hubtoken',
          'registry-credentials': 'ghcr.io=octocat:ghp_x',
        })[name] ?? '',
    );
    assert.deepEqual(mirrorPlans(inputs), [
      { registry: 'docker.io', upstream: 'https://registry-1.docker.io', credentials: { username: 'hubuser', password: 'hubtoken' } },
      { registry: 'ghcr.io', upstream: 'https://ghcr.io', credentials: { username: 'octocat', password: 'ghp_x' } },
      { registry: 'quay.io', upstream: 'https://quay.io', credentials: null },
    ]);
  });

  test("HOST=URL in registries: the mirror pulls from that organisation mirror, with the host's credentials", () => {
    const inputs = parseInputs(
      (name) =>
        ({
          registries: 'docker.io ghcr.io=https://nexus.example:8444 quay.io=http://quay-mirror.internal:5000/',
          'registry-credentials': 'ghcr.io=ci:nexus-token',
        })[name] ?? '',
    );
    assert.deepEqual(mirrorPlans(inputs).slice(1), [
      { registry: 'ghcr.io', upstream: 'https://nexus.example:8444', credentials: { username: 'ci', password: 'nexus-token' } },
      { registry: 'quay.io', upstream: 'http://quay-mirror.internal:5000', credentials: null },
    ]);
  });
});

describe('listenAddress', () => {
  test('loopback is 127.0.0.1', async () => {
    assert.equal(await listenAddress('loopback'), '127.0.0.1');
  });

  test("docker-bridge is docker0's address, as ip shows it with or without carrier", () => {
    assert.equal(
      firstIPv4(
        '3: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\       valid_lft forever preferred_lft forever\n',
      ),
      '172.17.0.1',
    );
    assert.equal(firstIPv4(''), '');
  });

  test('docker-bridge without a docker0 interface says so and what to use instead', async () => {
    await assert.rejects(
      listenAddress('docker-bridge', async () => ''),
      /listen is docker-bridge, but this runner has no docker0 interface .*use listen: loopback/,
    );
  });
});
