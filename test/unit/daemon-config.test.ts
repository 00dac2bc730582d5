// daemon.json merging: the user's daemon config is kept whole, the mirror goes first, and a config the
// action cannot read safely is left alone with a message naming the file.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsToml } from '../../src/client-config.js';
import { clearingMirrors, digestOf, mirrorIsLive, restoredConfig, usesContainerdStore, withMirror, withoutMirror, MIRRORS_KEY } from '../../src/daemon-config.js';
import { configFileOf, daemonConfigOf, restoreRegistryHosts, useRegistryHosts, writeAsRoot } from '../../src/daemon.js';

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

  test('only inserts: the user\'s formatting, order and spacing are kept around it', () => {
    assert.equal(withMirror('{\n\t"debug": true,\n\t"log-level": "warn"\n}\n', MIRROR, PATH), `{\n\t"registry-mirrors": ["${MIRROR}"],\n\t"debug": true,\n\t"log-level": "warn"\n}\n`);
    assert.equal(withMirror('{"registry-mirrors": [ "https://mirror.gcr.io" ], "debug": true}', MIRROR, PATH), `{"registry-mirrors": [ "${MIRROR}", "https://mirror.gcr.io" ], "debug": true}`);
    assert.equal(withMirror('{"debug":true}', MIRROR, PATH), `{"registry-mirrors": ["${MIRROR}"],"debug":true}`);
  });

  test('a registry-mirrors given twice: the one dockerd and JSON.parse read (the last) gets the mirror', () => {
    const merged = withMirror('{"registry-mirrors": ["https://a.example"], "registry-mirrors": ["https://b.example"]}', MIRROR, PATH);
    assert.deepEqual(parsed(merged)[MIRRORS_KEY], [MIRROR, 'https://b.example']);
  });

  test('registry-mirrors: null becomes the list of our mirror', () => {
    assert.deepEqual(parsed(withMirror(`{"${MIRRORS_KEY}": null, "debug": true}`, MIRROR, PATH)), { [MIRRORS_KEY]: [MIRROR], debug: true });
  });
});

describe('withoutMirror: only what the action added leaves', () => {
  test('undoes withMirror exactly, whatever the formatting', () => {
    for (const original of ['{"debug": true}\n', '{\n\t"debug": true,\n\t"log-level": "warn"\n}', '{}', '{\n  "registry-mirrors": [\n    "https://mirror.gcr.io"\n  ]\n}\n', '{"registry-mirrors": [], "x": 1}']) {
      const keepEmpty = original.includes('[]');
      assert.equal(withoutMirror(withMirror(original, MIRROR, PATH), MIRROR, PATH, keepEmpty), original, original);
    }
  });

  test('a job step\'s own edit (another tool\'s formatting) is kept; only our mirror and the key we added go', () => {
    const edited = `{\n    "registry-mirrors": [\n        "${MIRROR}"\n    ],\n    "debug": true,\n    "insecure-registries": [\n        "registry.internal:5000"\n    ]\n}\n`;
    assert.equal(withoutMirror(edited, MIRROR, PATH, false), '{\n    "debug": true,\n    "insecure-registries": [\n        "registry.internal:5000"\n    ]\n}\n');
  });

  test('other mirrors stay, in order; a trailing slash or a repeat of ours goes too', () => {
    const current = `{"registry-mirrors": ["https://a.example", "${MIRROR}/", "https://b.example", "${MIRROR}"]}`;
    assert.equal(withoutMirror(current, MIRROR, PATH, false), '{"registry-mirrors": ["https://a.example", "https://b.example"]}');
  });

  test('an emptied list goes with its key unless the file had an empty list before', () => {
    const current = `{"debug": true, "registry-mirrors": ["${MIRROR}"]}`;
    assert.equal(withoutMirror(current, MIRROR, PATH, false), '{"debug": true}');
    assert.equal(withoutMirror(current, MIRROR, PATH, true), '{"debug": true, "registry-mirrors": []}');
  });

  test('a list that did not hold our mirror is left alone, even empty', () => {
    for (const current of ['{"registry-mirrors": []}', '{"registry-mirrors": ["https://a.example"]}', '{"debug": true}', '', '{"registry-mirrors": null}']) {
      assert.equal(withoutMirror(current, MIRROR, PATH, false), current);
    }
  });

  test('JSON a job step broke is refused with the outcome given', () => {
    assert.throws(() => withoutMirror('{"debug": tru', MIRROR, '/x/daemon.json', false, 'left as it is'), /^Error: \/x\/daemon\.json is not valid JSON \(.*\); left as it is$/);
  });
});

describe('restoredConfig: what post leaves in daemon.json', () => {
  const ORIGINAL = '{\n\t"debug": true\n}\n';
  const saved = (original: string | null, written: string) => ({ original: original === null ? null : Buffer.from(original), written: digestOf(written), mirror: MIRROR });
  const text = (b: Buffer | null) => b?.toString('utf8') ?? null;

  test('unchanged since main: the original, byte for byte; or no file when there was none', () => {
    const merged = withMirror(ORIGINAL, MIRROR, PATH);
    assert.equal(text(restoredConfig(Buffer.from(merged), saved(ORIGINAL, merged), PATH)), ORIGINAL);
    const created = withMirror(null, MIRROR, PATH);
    assert.equal(restoredConfig(Buffer.from(created), saved(null, created), PATH), null);
    // Even an original post could not parse now is not its business: the bytes go back.
    assert.equal(text(restoredConfig(Buffer.from(merged), saved('  ', merged), PATH)), '  ');
  });

  test('changed since main: the change is kept, our mirror goes', () => {
    const merged = withMirror(ORIGINAL, MIRROR, PATH);
    const edited = merged.replace('"debug": true', '"debug": true,\n\t"insecure-registries": ["registry.internal:5000"]');
    assert.equal(text(restoredConfig(Buffer.from(edited), saved(ORIGINAL, merged), PATH)), '{\n\t"debug": true,\n\t"insecure-registries": ["registry.internal:5000"]\n}\n');
  });

  test('main stopped before it wrote (or a step took our mirror out itself): the file\'s own bytes stay', () => {
    const current = Buffer.concat([Buffer.from('{"labels": ["'), Buffer.from([0xff]), Buffer.from('"]}\n')]);
    assert.equal(restoredConfig(current, saved(ORIGINAL, withMirror(ORIGINAL, MIRROR, PATH)), PATH), current);
  });

  test('removed during the job: stays removed', () => {
    assert.equal(restoredConfig(null, saved(ORIGINAL, withMirror(ORIGINAL, MIRROR, PATH)), PATH), null);
  });

  test('changed into something that is not JSON: refused, saying the mirror may still be named', () => {
    assert.throws(() => restoredConfig(Buffer.from('{"debug": '), saved(ORIGINAL, withMirror(ORIGINAL, MIRROR, PATH)), '/x/daemon.json'), /\/x\/daemon\.json is not valid JSON .*changed during the job and left as it is.*http:\/\/127\.0\.0\.1:41234/);
  });

  test('two jobs on one daemon.json, posts in either order: the original comes back byte for byte', () => {
    const A = 'http://127.0.0.1:41001';
    const B = 'http://127.0.0.1:41002';
    const byA = withMirror(ORIGINAL, A, PATH);
    const byB = withMirror(byA, B, PATH);
    const jobA = { original: Buffer.from(ORIGINAL), written: digestOf(byA), mirror: A };
    const jobB = { original: Buffer.from(byA), written: digestOf(byB), mirror: B };
    const afterA = restoredConfig(Buffer.from(byB), jobA, PATH)!;
    assert.deepEqual(parsed(text(afterA))[MIRRORS_KEY], [B], 'B keeps its mirror while its job goes on');
    assert.equal(text(restoredConfig(afterA, jobB, PATH)), ORIGINAL);
    const afterB = restoredConfig(Buffer.from(byB), jobB, PATH)!;
    assert.equal(text(afterB), byA, 'A keeps its mirror while its job goes on');
    assert.equal(text(restoredConfig(afterB, jobA, PATH)), ORIGINAL);
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

  test('[] config when there is to be no file or an empty one', () => {
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

describe('daemonConfigOf (the file a dockerd reads)', () => {
  const rootless = ['ROOTLESSKIT_STATE_DIR=/run/user/1001/dockerd-rootless', 'HOME=/home/runner', 'PATH=/usr/bin'];
  test('--config-file wins, rootless or not', () => {
    assert.equal(daemonConfigOf(['dockerd', '--config-file', '/tmp/d.json'], rootless), '/tmp/d.json');
  });

  test('a rootful dockerd without the flag: /etc/docker/daemon.json', () => {
    assert.equal(daemonConfigOf(['/usr/bin/dockerd', '-H', 'fd://'], ['HOME=/root']), '/etc/docker/daemon.json');
    assert.equal(daemonConfigOf(['/usr/bin/dockerd'], []), '/etc/docker/daemon.json', 'an environment it cannot read (root\'s, to a runner user)');
  });

  test('a rootless dockerd (run by RootlessKit) without the flag: the user\'s config directory', () => {
    assert.equal(daemonConfigOf(['dockerd'], rootless), '/home/runner/.config/docker/daemon.json');
    assert.equal(daemonConfigOf(['dockerd'], [...rootless, 'XDG_CONFIG_HOME=/srv/cfg']), '/srv/cfg/docker/daemon.json');
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

describe('writeAsRoot: replaces a file in one step', () => {
  test('keeps the mode and owner of the file it replaces, leaves no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'write-as-root-'));
    try {
      const file = join(dir, 'daemon.json');
      await writeFile(file, '{}\n');
      await chmod(file, 0o640);
      await chown(file, 1234, 5678);
      const before = await stat(file);
      await writeAsRoot(file, '{"debug": true}\n');
      const after = await stat(file);
      assert.equal(await readFile(file, 'utf8'), '{"debug": true}\n');
      assert.deepEqual([after.mode & 0o7777, after.uid, after.gid], [0o640, 1234, 5678]);
      assert.notEqual(after.ino, before.ino, 'a new file renamed over the old, not the old one truncated');
      assert.deepEqual(await readdir(dir), ['daemon.json']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a new file is 0644 whatever the umask; a symlink stays a symlink to the file it names', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'write-as-root-'));
    const umask = process.umask(0o077);
    try {
      await writeAsRoot(join(dir, 'sub', 'new.json'), '{}\n');
      assert.equal((await stat(join(dir, 'sub', 'new.json'))).mode & 0o7777, 0o644);
      await writeFile(join(dir, 'real.json'), '{}\n');
      await symlink('real.json', join(dir, 'daemon.json'));
      await writeAsRoot(join(dir, 'daemon.json'), '{"debug": true}\n');
      assert.equal(await readFile(join(dir, 'real.json'), 'utf8'), '{"debug": true}\n');
      assert.deepEqual((await readdir(dir)).sort(), ['daemon.json', 'real.json', 'sub']);
    } finally {
      process.umask(umask);
      await rm(dir, { recursive: true, force: true });
    }
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

  test('one that cannot be removed does not keep the others; the error names each one left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'certs-d-'));
    try {
      const config = join(dir, 'daemon.json');
      const three = [...mirrors, { registry: 'registry.gitlab.com', url: 'http://127.0.0.1:40004' }];
      const written = await useRegistryHosts(config, three, () => {}, async () => true);
      assert.equal(written.length, 3);
      // A job step put a file of its own beside ours, and turned another of ours into a directory.
      await writeFile(join(dir, 'certs.d', 'ghcr.io', 'ca.crt'), 'the user\'s\n');
      await rm(written[1].file);
      await mkdir(join(written[1].file, 'inside'), { recursive: true });
      await assert.rejects(restoreRegistryHosts(written), (e: Error) => {
        assert.match(e.message, /^2 of 3 could not be removed: /);
        assert.match(e.message, new RegExp(`cannot remove ${join(dir, 'certs.d', 'ghcr.io')}: .*not empty`));
        assert.match(e.message, new RegExp(`cannot remove ${written[1].file}: `));
        return true;
      });
      assert.deepEqual((await readdir(join(dir, 'certs.d'))).sort(), ['ghcr.io', 'quay.io'], 'registry.gitlab.com, after both, was removed');
      assert.deepEqual(await readdir(join(dir, 'certs.d', 'ghcr.io')), ['ca.crt'], 'our hosts.toml gone, the user\'s file kept');
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
