// The registry's config.yml as Distribution reads it, and where the registry binary comes from.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { INSTANCE_HEADER, registryConfig, type RegistryConfigOptions } from '../src/registry.js';
import { prefetchEnvironment, registryEnvironment } from '../src/processes.js';
import { PINNED_SHA256, releaseAsset } from '../src/registry-release.js';
import { DEFAULTS } from '../src/context.js';

interface ParsedConfig {
  version: unknown;
  log: { accesslog: { disabled: boolean } };
  storage: {
    filesystem: { rootdirectory: string };
    cache: { blobdescriptor: string };
    delete: { enabled: boolean };
    maintenance?: { uploadpurging?: { enabled: boolean }; readonly?: { enabled: boolean } };
  } & Record<string, unknown>;
  http: { addr: string; headers: Record<string, string[]> } & Record<string, unknown>;
  proxy: Record<string, unknown>;
}

const base: RegistryConfigOptions = {
  address: '127.0.0.1',
  port: 41234,
  storageDir: '/home/runner/work/_temp/pull-cache-action/storage',
  upstream: 'https://registry-1.docker.io',
  username: '',
  password: '',
};

const INSTANCE = '0123456789abcdef0123456789abcdef';

function config(o: Partial<RegistryConfigOptions> = {}): ParsedConfig {
  return parse(registryConfig({ ...base, ...o }, INSTANCE)) as ParsedConfig;
}

describe('registryConfig', () => {
  test('is a version 0.1 Distribution config', () => {
    assert.equal(String(config().version), '0.1');
  });

  test('listens on 127.0.0.1:PORT only, with no debug or TLS listener', () => {
    const c = config({ port: 5055 });
    assert.equal(c.http.addr, '127.0.0.1:5055');
    assert.equal(c.http.debug, undefined);
    assert.equal(c.http.tls, undefined);
    assert.equal(c.http.host, undefined);
  });

  test('proxies the upstream it is given', () => {
    assert.equal(config().proxy.remoteurl, 'https://registry-1.docker.io');
    assert.equal(config({ upstream: 'http://127.0.0.1:5001' }).proxy.remoteurl, 'http://127.0.0.1:5001');
  });

  test('anonymous: no username or password key at all', () => {
    const c = config();
    assert.deepEqual(Object.keys(c.proxy), ['remoteurl', 'ttl']);
    assert.ok(!/username|password/.test(registryConfig(base, INSTANCE)));
  });

  test('with credentials: both given, read back exactly even with YAML-special characters', () => {
    const password = `dckr_pat_a: #b "c" 'd' \\e\n{f}[g]&*!|>%@\``;
    const c = config({ username: 'octocat', password });
    assert.equal(c.proxy.username, 'octocat');
    assert.equal(c.proxy.password, password);
    assert.equal(c.proxy.remoteurl, base.upstream);
  });

  test('a numeric-looking or boolean-looking token is read back as a string', () => {
    for (const password of ['12345', 'true', 'null', '0x10', '1e3', '~']) {
      const c = config({ username: 'octocat', password });
      assert.equal(c.proxy.password, password);
    }
  });

  test('stores under the storage directory, on the filesystem driver only', () => {
    const c = config({ storageDir: '/tmp/a dir: with # odd chars/storage' });
    assert.equal(c.storage.filesystem.rootdirectory, '/tmp/a dir: with # odd chars/storage');
    const drivers = Object.keys(c.storage).filter((k) => !['cache', 'delete', 'maintenance', 'redirect'].includes(k));
    assert.deepEqual(drivers, ['filesystem']);
  });

  test('caches blob descriptors in memory (no redis)', () => {
    assert.equal(config().storage.cache.blobdescriptor, 'inmemory');
  });

  test('deletion is disabled, so expiry can never remove restored content', () => {
    assert.equal(config().storage.delete.enabled, false);
  });

  test("3.x's proxy expiry is off (ttl 0): the cache's budget decides what lives", () => {
    assert.equal(config().proxy.ttl, '0s');
  });

  test('upload purging is off', () => {
    assert.equal(config().storage.maintenance?.uploadpurging?.enabled, false);
  });

  test('sends X-Content-Type-Options: nosniff', () => {
    assert.deepEqual(config().http.headers['X-Content-Type-Options'], ['nosniff']);
  });

  test("sends this start's instance nonce in a header of every response, by which the action knows it is its own", () => {
    assert.deepEqual(config().http.headers[INSTANCE_HEADER], [INSTANCE]);
  });

  test('read-only to clients in every mode, proxy and offline: no push, no delete', () => {
    assert.equal(config().storage.maintenance?.readonly?.enabled, true);
    assert.equal(config({ upstream: null }).storage.maintenance?.readonly?.enabled, true);
    assert.equal(config({ upstream: null }).proxy, undefined);
  });

  test('keeps the access log on: the report is computed from it', () => {
    assert.equal(config().log.accesslog.disabled, false);
  });
});

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
    for (const arch of ['amd64', 'arm64'] as const) assert.match(releaseAsset(DEFAULTS.registryVersion, arch, DEFAULTS.registryDownloadUrl, '').sha256, /^[0-9a-f]{64}$/);
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
    assert.equal(releaseAsset('2.8.3', 'arm64', 'https://ghe.example/mirror', '').url, 'https://ghe.example/mirror/v2.8.3/registry_2.8.3_linux_arm64.tar.gz');
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
    assert.deepEqual(registryEnvironment(runner), { HTTPS_PROXY: 'http://proxy.corp:3128', no_proxy: 'localhost,127.0.0.1', SSL_CERT_FILE: '/etc/corp/ca.pem', OTEL_TRACES_EXPORTER: 'none' });
  });

  test("the prefetch worker gets the daemon's address and nothing else", () => {
    assert.deepEqual(prefetchEnvironment(runner), { DOCKER_HOST: 'unix:///run/user/1001/docker.sock' });
    assert.deepEqual(prefetchEnvironment({ ...runner, DOCKER_HOST: undefined, DOCKER_TLS_VERIFY: '1' }), { DOCKER_TLS_VERIFY: '1' });
  });
});
