// daemon.json merging: the user's daemon config is kept whole, the mirror goes first, and a config the
// action cannot read safely is left alone with a message naming the file.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsToml } from '../src/client-config.js';
import { clearingMirrors, mirrorIsLive, usesContainerdStore, withMirror, MIRRORS_KEY } from '../src/daemon-config.js';
import { configFileOf, restoreRegistryHosts, useRegistryHosts } from '../src/daemon.js';

const PATH = '/etc/docker/daemon.json';
const MIRROR = 'http://127.0.0.1:41234';

const parsed = (text: string | null) => JSON.parse(text!) as Record<string, unknown>;

describe('withMirror', () => {
  test('keeps every other key and value of the user config', () => {
    const original = {
      'log-driver': 'json-file',
      'log-opts': { 'max-size': '10m', 'max-file': '3' },
      'insecure-registries': ['registry.internal:5000'],
      'cgroup-parent': '/actions_job',
      'max-concurrent-downloads': 10,
      debug: false,
      features: { buildkit: true },
      'default-address-pools': [{ base: '10.10.0.0/16', size: 24 }],
    };
    const merged = parsed(withMirror(JSON.stringify(original), MIRROR, PATH));
    assert.deepEqual(merged, { ...original, [MIRRORS_KEY]: [MIRROR] });
  });

  test('puts our mirror first and keeps the existing ones after it, in order', () => {
    const original = JSON.stringify({ [MIRRORS_KEY]: ['https://mirror.gcr.io', 'https://other.example'] });
    assert.deepEqual(parsed(withMirror(original, MIRROR, PATH))[MIRRORS_KEY], [MIRROR, 'https://mirror.gcr.io', 'https://other.example']);
  });

  test('no duplicate when our mirror is already listed, with or without a trailing slash', () => {
    for (const listed of [MIRROR, `${MIRROR}/`, `${MIRROR}//`]) {
      const original = JSON.stringify({ [MIRRORS_KEY]: ['https://mirror.gcr.io', listed] });
      assert.deepEqual(parsed(withMirror(original, MIRROR, PATH))[MIRRORS_KEY], [MIRROR, 'https://mirror.gcr.io']);
    }
  });

  test('applying it twice gives the same file', () => {
    const once = withMirror('{"debug": true}', MIRROR, PATH);
    assert.equal(withMirror(once, MIRROR, PATH), once);
  });

  test('a mirror on another port is a different mirror and is kept', () => {
    const original = JSON.stringify({ [MIRRORS_KEY]: ['http://127.0.0.1:5000'] });
    assert.deepEqual(parsed(withMirror(original, MIRROR, PATH))[MIRRORS_KEY], [MIRROR, 'http://127.0.0.1:5000']);
  });

  test('creates a config from no file, an empty file, whitespace or {}', () => {
    for (const original of [null, '', '  \n', '{}']) {
      assert.deepEqual(parsed(withMirror(original, MIRROR, PATH)), { [MIRRORS_KEY]: [MIRROR] }, `from ${JSON.stringify(original)}`);
    }
  });

  test('writes readable JSON ending in a newline', () => {
    const text = withMirror(null, MIRROR, PATH);
    assert.ok(text.endsWith('}\n'));
    assert.ok(text.includes('\n  "registry-mirrors"'));
  });

  test('invalid JSON is refused, naming the file, and saying it was left alone', () => {
    for (const original of ['{"debug": true,}', '{debug: true}', '{"a": 1', 'registry-mirrors = []']) {
      assert.throws(() => withMirror(original, MIRROR, '/custom/daemon.json'), (e: Error) => e.message.startsWith('/custom/daemon.json is not valid JSON') && /left as it is/.test(e.message), original);
    }
  });

  test('JSON that is not an object is refused, naming the file', () => {
    for (const original of ['[]', '["http://x"]', '"text"', '42', 'null', 'true']) {
      assert.throws(() => withMirror(original, MIRROR, '/custom/daemon.json'), /^Error: \/custom\/daemon\.json does not hold a JSON object/, original);
    }
  });

  test('a registry-mirrors that is not a list of strings is refused, naming the file and the key', () => {
    for (const mirrors of ['"https://mirror.gcr.io"', '{"a": "b"}', '[1, 2]', '["https://ok.example", 3]', '[["nested"]]']) {
      assert.throws(
        () => withMirror(`{"${MIRRORS_KEY}": ${mirrors}}`, MIRROR, '/custom/daemon.json'),
        (e: Error) => e.message.startsWith('/custom/daemon.json has a "registry-mirrors" that is not a list of URLs') && /left as it is/.test(e.message),
        mirrors,
      );
    }
  });

  test('an empty registry-mirrors list is fine', () => {
    assert.deepEqual(parsed(withMirror(`{"${MIRRORS_KEY}": []}`, MIRROR, PATH))[MIRRORS_KEY], [MIRROR]);
  });
});

describe('clearingMirrors', () => {
  test('null when the original names registry-mirrors: putting it back is enough', () => {
    assert.equal(clearingMirrors(JSON.stringify({ [MIRRORS_KEY]: ['https://mirror.gcr.io'] }), PATH), null);
    assert.equal(clearingMirrors(JSON.stringify({ [MIRRORS_KEY]: [] }), PATH), null);
  });

  test('the original with registry-mirrors: [] when it does not name them', () => {
    const original = { debug: true, 'log-opts': { 'max-size': '10m' } };
    assert.deepEqual(parsed(clearingMirrors(JSON.stringify(original), PATH)), { ...original, [MIRRORS_KEY]: [] });
  });

  test('[] config when there was no file or an empty one', () => {
    for (const original of [null, '', '{}']) assert.deepEqual(parsed(clearingMirrors(original, PATH)), { [MIRRORS_KEY]: [] });
  });

  test('refuses a broken original like withMirror does', () => {
    assert.throws(() => clearingMirrors('{oops', '/x/daemon.json'), /\/x\/daemon\.json is not valid JSON/);
  });
});

describe('mirrorIsLive', () => {
  test('matches docker info, which lists mirrors with a trailing slash', () => {
    assert.equal(mirrorIsLive([`${MIRROR}/`], MIRROR), true);
    assert.equal(mirrorIsLive(['https://mirror.gcr.io/', `${MIRROR}/`], MIRROR), true);
    assert.equal(mirrorIsLive([MIRROR], MIRROR), true);
  });

  test('false when absent, empty, or another port', () => {
    assert.equal(mirrorIsLive([], MIRROR), false);
    assert.equal(mirrorIsLive(['https://mirror.gcr.io/'], MIRROR), false);
    assert.equal(mirrorIsLive(['http://127.0.0.1:4123/'], MIRROR), false);
    assert.equal(mirrorIsLive(['http://127.0.0.1:412345/'], MIRROR), false);
  });
});

describe('configFileOf (dockerd command line)', () => {
  test('--config-file PATH', () => {
    assert.equal(configFileOf(['/usr/bin/dockerd', '-H', 'fd://', '--config-file', '/tmp/d.json', '--debug']), '/tmp/d.json');
  });

  test('--config-file=PATH', () => {
    assert.equal(configFileOf(['dockerd', '--data-root=/var/lib/docker', '--config-file=/tmp/d.json']), '/tmp/d.json');
  });

  test('absent: undefined (dockerd then reads the default path)', () => {
    assert.equal(configFileOf(['/usr/bin/dockerd', '-H', 'fd://', '--containerd=/run/containerd/containerd.sock']), undefined);
    assert.equal(configFileOf(['/usr/bin/dockerd']), undefined);
    assert.equal(configFileOf([]), undefined);
  });

  test('the program name itself is not read as a flag', () => {
    assert.equal(configFileOf(['--config-file=/not/this', '--debug']), undefined);
  });
});

describe('usesContainerdStore (docker info DriverStatus)', () => {
  test('the containerd image store names its snapshotter as driver-type', () => {
    assert.equal(usesContainerdStore([['driver-type', 'io.containerd.snapshotter.v1']]), true);
  });

  test('the classic store (overlay2, vfs) or no answer is not', () => {
    assert.equal(usesContainerdStore([['Backing Filesystem', 'extfs'], ['Supports d_type', 'true']]), false);
    assert.equal(usesContainerdStore(null), false);
    assert.equal(usesContainerdStore([]), false);
  });
});

describe('useRegistryHosts / restoreRegistryHosts: certs.d beside daemon.json', () => {
  const mirrors = [{ registry: 'ghcr.io', url: 'http://127.0.0.1:40002' }, { registry: 'quay.io', url: 'http://127.0.0.1:40003' }];

  test('containerd image store: a hosts.toml per mirror, the user\'s own kept; post leaves certs.d as it was', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'certs-d-'));
    try {
      const config = join(dir, 'daemon.json');
      const users = '# the user\'s own\nserver = "https://quay.io"\n';
      await mkdir(join(dir, 'certs.d', 'quay.io'), { recursive: true });
      await writeFile(join(dir, 'certs.d', 'quay.io', 'hosts.toml'), users);
      const recorded: unknown[] = [];
      const written = await useRegistryHosts(config, mirrors, (files) => recorded.push([...files]), async () => true);
      assert.deepEqual(written, [{ registry: 'ghcr.io', file: join(dir, 'certs.d', 'ghcr.io', 'hosts.toml'), createdDir: true }]);
      assert.deepEqual(recorded.at(-1), written, 'recorded for post as soon as written');
      assert.equal(await readFile(written[0].file, 'utf8'), hostsToml(mirrors[0]));
      assert.equal(await readFile(join(dir, 'certs.d', 'quay.io', 'hosts.toml'), 'utf8'), users);

      await restoreRegistryHosts(written);
      assert.deepEqual(await readdir(join(dir, 'certs.d')), ['quay.io']);
      assert.equal(await readFile(join(dir, 'certs.d', 'quay.io', 'hosts.toml'), 'utf8'), users);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('classic image store: nothing written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'certs-d-'));
    try {
      assert.deepEqual(await useRegistryHosts(join(dir, 'daemon.json'), mirrors, () => assert.fail('nothing to record'), async () => false), []);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
