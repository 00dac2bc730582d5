// The registry's config.yml as Distribution reads it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { INSTANCE_HEADER, registryConfig, type RegistryConfigOptions } from '../../src/registry.js';

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
