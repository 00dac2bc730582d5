// Which daemon.json a dockerd reads (from its command line and environment), and the per-registry hosts.toml files
// written beside it for the containerd image store, removed again by post.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsToml } from '../../src/client-config.js';
import { configFileOf, daemonConfigOf, restoreRegistryHosts, runsAsDaemon, uidsOf, useRegistryHosts } from '../../src/daemon.js';

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
    assert.equal(
      daemonConfigOf(['/usr/bin/dockerd'], []),
      '/etc/docker/daemon.json',
      "an environment it cannot read (root's, to a runner user)",
    );
  });

  test("a rootless dockerd (run by RootlessKit) without the flag: the user's config directory", () => {
    assert.equal(daemonConfigOf(['dockerd'], rootless), '/home/runner/.config/docker/daemon.json');
    assert.equal(daemonConfigOf(['dockerd'], [...rootless, 'XDG_CONFIG_HOME=/srv/cfg']), '/srv/cfg/docker/daemon.json');
  });
});

describe('runsAsDaemon: which process named dockerd is the daemon', () => {
  const ROOT = [0, 0, 0, 0];
  const RUNNER = 1001;
  test("root's, from a dockerd binary (replaced on disk while it runs, too)", () => {
    assert.equal(runsAsDaemon(ROOT, '/usr/bin/dockerd', RUNNER), true);
    assert.equal(runsAsDaemon(ROOT, '/usr/bin/dockerd (deleted)', 0), true);
  });

  test("root's, whose binary a runner user may not read: taken on root's word", () => {
    assert.equal(runsAsDaemon(ROOT, null, RUNNER), true);
  });

  test("this user's own (rootless); another user's is not, whatever its binary", () => {
    assert.equal(runsAsDaemon([RUNNER, RUNNER, RUNNER, RUNNER], '/usr/bin/dockerd', RUNNER), true);
    assert.equal(runsAsDaemon([65534, 65534, 65534, 65534], '/tmp/x/dockerd', RUNNER), false);
    assert.equal(runsAsDaemon([65534, 65534, 65534, 65534], '/tmp/x/dockerd', 0), false);
    assert.equal(runsAsDaemon([RUNNER, RUNNER, RUNNER, RUNNER], '/usr/bin/dockerd', 0), false, "as root: another user's rootless daemon");
  });

  test('a set-user-id program another user ran is not root: every user id counts', () => {
    assert.equal(runsAsDaemon([65534, 0, 0, 0], null, RUNNER), false);
  });

  test('a program of another name given the name dockerd is not one', () => {
    assert.equal(runsAsDaemon(ROOT, '/usr/bin/dash', 0), false);
    assert.equal(runsAsDaemon(ROOT, '/usr/bin/dockerd-rootless.sh', 0), false);
    assert.equal(runsAsDaemon(ROOT, '', 0), false, 'no binary at all (a kernel thread, a process gone)');
  });

  test('no user ids read: not one', () => {
    assert.equal(runsAsDaemon([], '/usr/bin/dockerd', 0), false);
  });
});

describe('uidsOf (/proc/PID/status)', () => {
  test('the Uid line: real, effective, saved, file system', () => {
    const status = 'Name:\tdockerd\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t65534\t0\t0\t0\nGid:\t65534\t65534\t65534\t65534\n';
    assert.deepEqual(uidsOf(status), [65534, 0, 0, 0]);
  });

  test('none: empty', () => {
    assert.deepEqual(uidsOf(''), []);
    assert.deepEqual(uidsOf('Name:\tx\n'), []);
  });
});

describe('useRegistryHosts / restoreRegistryHosts: certs.d beside daemon.json', () => {
  const mirrors = [
    { registry: 'ghcr.io', url: 'http://127.0.0.1:40002' },
    { registry: 'quay.io', url: 'http://127.0.0.1:40003' },
  ];

  test("containerd image store: a hosts.toml per mirror, the user's own kept; post leaves certs.d as it was", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'certs-d-'));
    try {
      const config = join(dir, 'daemon.json');
      const users = '# the user\'s own\nserver = "https://quay.io"\n';
      await mkdir(join(dir, 'certs.d', 'quay.io'), { recursive: true });
      await writeFile(join(dir, 'certs.d', 'quay.io', 'hosts.toml'), users);
      const recorded: unknown[] = [];
      const written = await useRegistryHosts(
        config,
        mirrors,
        (files) => recorded.push([...files]),
        async () => ({ pulls: true, buildkit: true }),
      );
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
      const written = await useRegistryHosts(
        config,
        three,
        () => {},
        async () => ({ pulls: true, buildkit: false }),
      );
      assert.equal(written.length, 3);
      // A job step put a file of its own beside ours, and turned another of ours into a directory.
      await writeFile(join(dir, 'certs.d', 'ghcr.io', 'ca.crt'), "the user's\n");
      await rm(written[1].file);
      await mkdir(join(written[1].file, 'inside'), { recursive: true });
      await assert.rejects(restoreRegistryHosts(written), (e: Error) => {
        assert.match(e.message, /^2 of 3 could not be removed: /);
        assert.match(e.message, new RegExp(`cannot remove ${join(dir, 'certs.d', 'ghcr.io')}: .*not empty`));
        assert.match(e.message, new RegExp(`cannot remove ${written[1].file}: `));
        return true;
      });
      assert.deepEqual(
        (await readdir(join(dir, 'certs.d'))).sort(),
        ['ghcr.io', 'quay.io'],
        'registry.gitlab.com, after both, was removed',
      );
      assert.deepEqual(await readdir(join(dir, 'certs.d', 'ghcr.io')), ['ca.crt'], "our hosts.toml gone, the user's file kept");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('classic image store on Docker Engine 28 and later: written for the built-in BuildKit alone, so marked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'certs-d-'));
    try {
      const written = await useRegistryHosts(
        join(dir, 'daemon.json'),
        mirrors,
        () => {},
        async () => ({ pulls: false, buildkit: true }),
      );
      assert.deepEqual(
        written,
        mirrors.map((m) => ({
          registry: m.registry,
          file: join(dir, 'certs.d', m.registry, 'hosts.toml'),
          createdDir: true,
          buildkitOnly: true,
        })),
      );
      assert.equal(await readFile(written[1].file, 'utf8'), hostsToml(mirrors[1]));
      await restoreRegistryHosts(written);
      assert.deepEqual(await readdir(join(dir, 'certs.d')), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('classic image store before Docker Engine 28: nothing written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'certs-d-'));
    try {
      assert.deepEqual(
        await useRegistryHosts(
          join(dir, 'daemon.json'),
          mirrors,
          () => assert.fail('nothing to record'),
          async () => ({ pulls: false, buildkit: false }),
        ),
        [],
      );
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
