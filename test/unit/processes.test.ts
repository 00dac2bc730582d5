// What the action's child processes inherit: only what each needs of the runner's environment, never its secrets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheWorkerEnvironment, prefetchEnvironment, registryEnvironment } from '../../src/processes.js';

describe('child environments', () => {
  const runner = {
    PATH: '/usr/bin:/bin',
    HOME: '/home/runner',
    'INPUT_DOCKERHUB-TOKEN': 'dckr_pat_secret',
    'INPUT_REGISTRY-CREDENTIALS': 'ghcr.io=octocat:ghp_secret',
    ACTIONS_RUNTIME_TOKEN: 'runtime-secret',
    ACTIONS_RESULTS_URL: 'https://results.example/',
    GITHUB_TOKEN: 'ghs_secret',
    STATE_mirrors: '[]',
    DOCKER_HOST: 'unix:///run/user/1001/docker.sock',
    HTTPS_PROXY: 'http://proxy.corp:3128',
    no_proxy: 'localhost,127.0.0.1',
    SSL_CERT_FILE: '/etc/corp/ca.pem',
  };

  test("the registry gets the runner's proxy and CA settings, OpenTelemetry off, and nothing else", () => {
    assert.deepEqual(registryEnvironment(runner), {
      HTTPS_PROXY: 'http://proxy.corp:3128',
      no_proxy: 'localhost,127.0.0.1',
      SSL_CERT_FILE: '/etc/corp/ca.pem',
      OTEL_TRACES_EXPORTER: 'none',
    });
  });

  test("a cache worker (restore, save) gets the cache service's address, the network settings and its work directory: no token", () => {
    assert.deepEqual(cacheWorkerEnvironment(runner, '/tmp/work'), {
      PATH: '/usr/bin:/bin',
      ACTIONS_RESULTS_URL: 'https://results.example/',
      HTTPS_PROXY: 'http://proxy.corp:3128',
      no_proxy: 'localhost,127.0.0.1',
      SSL_CERT_FILE: '/etc/corp/ca.pem',
      GITHUB_WORKSPACE: '/tmp/work',
      RUNNER_TEMP: '/tmp/work/tmp',
    });
  });

  test("the prefetch worker gets the daemon's address and nothing else", () => {
    assert.deepEqual(prefetchEnvironment(runner), { DOCKER_HOST: 'unix:///run/user/1001/docker.sock' });
    assert.deepEqual(prefetchEnvironment({ ...runner, DOCKER_HOST: undefined, DOCKER_TLS_VERIFY: '1' }), { DOCKER_TLS_VERIFY: '1' });
  });
});
