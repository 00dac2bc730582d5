// What the mirrors tell clients other than dockerd, parsed back as they would parse it: containerd's
// hosts.toml (keys of containerd's docs/hosts.md) and buildkitd.toml (keys of buildkit's docs/buildkitd.toml.md).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { buildkitdToml, hostsToml, k3sRegistriesYaml, registriesConf, writeClientConfigs } from '../../src/client-config.js';
import { defaultRegistriesConfDir } from '../../src/registries-conf.js';

/** The TOML as plain objects (smol-toml gives tables a null prototype). */
function parse(text: string): Record<string, unknown> & { server?: string } {
  return JSON.parse(JSON.stringify(parseToml(text)));
}

const mirrors = [
  { registry: 'docker.io', url: 'http://127.0.0.1:40001' },
  { registry: 'ghcr.io', url: 'http://127.0.0.1:40002' },
  { registry: 'registry.k8s.io', url: 'http://127.0.0.1:40003' },
];

describe('hostsToml', () => {
  test('docker.io: pull and resolve through the mirror, then registry-1.docker.io', () => {
    assert.deepEqual(parse(hostsToml(mirrors[0])), {
      server: 'https://registry-1.docker.io',
      host: { 'http://127.0.0.1:40001': { capabilities: ['pull', 'resolve'] } },
    });
  });

  test('another registry falls back to its own host', () => {
    assert.equal(parse(hostsToml(mirrors[2])).server, 'https://registry.k8s.io');
  });
});

describe('buildkitdToml', () => {
  test('each registry names its mirror by host:port, and each mirror is plain HTTP', () => {
    assert.deepEqual(parse(buildkitdToml(mirrors)), {
      registry: {
        'docker.io': { mirrors: ['127.0.0.1:40001'] },
        'ghcr.io': { mirrors: ['127.0.0.1:40002'] },
        'registry.k8s.io': { mirrors: ['127.0.0.1:40003'] },
        '127.0.0.1:40001': { http: true },
        '127.0.0.1:40002': { http: true },
        '127.0.0.1:40003': { http: true },
      },
    });
  });
});

describe('registriesConf', () => {
  test('containers-registries.conf v2: each registry by its name, its mirror by host:port over plain HTTP', () => {
    assert.deepEqual(parse(registriesConf(mirrors)), {
      registry: mirrors.map((m) => ({
        prefix: m.registry,
        location: m.registry,
        mirror: [{ location: new URL(m.url).host, insecure: true }],
      })),
    });
  });

  test("the drop-in goes where podman reads it: system-wide for root, else under the user's home", () => {
    assert.equal(defaultRegistriesConfDir(0, '/root'), '/etc/containers/registries.conf.d');
    assert.equal(defaultRegistriesConfDir(1001, '/home/runner'), '/home/runner/.config/containers/registries.conf.d');
  });
});

describe('k3sRegistriesYaml', () => {
  test("k3s's registries.yaml: each registry's mirror as its one endpoint", () => {
    assert.deepEqual(parseYaml(k3sRegistriesYaml(mirrors)), {
      mirrors: {
        'docker.io': { endpoint: ['http://127.0.0.1:40001'] },
        'ghcr.io': { endpoint: ['http://127.0.0.1:40002'] },
        'registry.k8s.io': { endpoint: ['http://127.0.0.1:40003'] },
      },
    });
  });
});

test('writeClientConfigs: HOSTS_DIR/REGISTRY/hosts.toml per mirror, the buildkitd.toml and registries.yaml', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'client-config-'));
  try {
    await writeClientConfigs(
      { hostsDir: join(dir, 'hosts.d'), buildkitdConfig: join(dir, 'buildkitd.toml'), k3sRegistries: join(dir, 'registries.yaml') },
      mirrors,
    );
    for (const m of mirrors) assert.equal(await readFile(join(dir, 'hosts.d', m.registry, 'hosts.toml'), 'utf8'), hostsToml(m));
    assert.equal(await readFile(join(dir, 'buildkitd.toml'), 'utf8'), buildkitdToml(mirrors));
    assert.equal(await readFile(join(dir, 'registries.yaml'), 'utf8'), k3sRegistriesYaml(mirrors));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
