// What the action's child processes inherit: only what each needs of the runner's environment, never its secrets;
// and where their commands come from: the system's directories, never the job's PATH.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnvironment, commandOutput, commandPath, SYSTEM_PATH, type ChildKind } from '../../src/processes.js';

describe('child environments', () => {
  const runner = {
    PATH: '/home/runner/.evil-bin:/usr/bin:/bin',
    HOME: '/home/runner',
    LANG: 'de_DE.UTF-8',
    RUNNER_TRACKING_ID: 'github_3f1c2d',
    'INPUT_DOCKERHUB-TOKEN': 'dckr_pat_secret',
    'INPUT_REGISTRY-CREDENTIALS': 'ghcr.io=octocat:ghp_secret',
    ACTIONS_RUNTIME_TOKEN: 'runtime-secret',
    ACTIONS_RESULTS_URL: 'https://results.example/',
    ACTIONS_CACHE_SERVICE_V2: 'true',
    GITHUB_TOKEN: 'ghs_secret',
    STATE_mirrors: '[]',
    DOCKER_HOST: 'unix:///run/user/1001/docker.sock',
    DOCKER_CONFIG: '/home/runner/.docker',
    HTTPS_PROXY: 'http://proxy.corp:3128',
    no_proxy: 'localhost,127.0.0.1',
    SSL_CERT_FILE: '/etc/corp/ca.pem',
  };
  const base = { PATH: SYSTEM_PATH.join(':'), LANG: 'C.UTF-8', RUNNER_TRACKING_ID: 'github_3f1c2d' };
  const network = { HTTPS_PROXY: 'http://proxy.corp:3128', no_proxy: 'localhost,127.0.0.1', SSL_CERT_FILE: '/etc/corp/ca.pem' };

  test('every kind gets the system PATH, the C locale and RUNNER_TRACKING_ID, and no token of the job', () => {
    const kinds: ChildKind[] = ['command', 'docker', 'registry', 'restore worker', 'front', 'prefetch worker'];
    for (const kind of kinds) {
      const env = childEnvironment(kind, runner);
      assert.deepEqual({ PATH: env.PATH, LANG: env.LANG, RUNNER_TRACKING_ID: env.RUNNER_TRACKING_ID }, base, kind);
      const text = JSON.stringify(env);
      for (const secret of ['dckr_pat_secret', 'ghp_secret', 'runtime-secret', 'ghs_secret', '.evil-bin'])
        assert.ok(!text.includes(secret), `${kind} gets ${secret}`);
    }
  });

  test('short commands (tar, zstd, ip, sudo, flock) and the front get nothing more', () => {
    assert.deepEqual(childEnvironment('command', runner), base);
    assert.deepEqual(childEnvironment('front', runner), base);
  });

  test("the registry gets the runner's proxy and CA settings and OpenTelemetry off", () => {
    assert.deepEqual(childEnvironment('registry', runner), { ...base, ...network, OTEL_TRACES_EXPORTER: 'none' });
  });

  test("the restore worker gets the network settings: the cache service's address and token come on its stdin", () => {
    assert.deepEqual(childEnvironment('restore worker', runner), { ...base, ...network });
  });

  test("the prefetch worker gets the daemon's address; the docker CLI its address and its own config", () => {
    assert.deepEqual(childEnvironment('prefetch worker', runner), { ...base, DOCKER_HOST: 'unix:///run/user/1001/docker.sock' });
    assert.deepEqual(childEnvironment('docker', runner), {
      ...base,
      DOCKER_HOST: 'unix:///run/user/1001/docker.sock',
      DOCKER_CONFIG: '/home/runner/.docker',
      HOME: '/home/runner',
    });
  });

  test('without RUNNER_TRACKING_ID (a local run), none is made up', () => {
    assert.deepEqual(childEnvironment('command', { ...runner, RUNNER_TRACKING_ID: undefined }), { PATH: base.PATH, LANG: 'C.UTF-8' });
  });
});

describe('commands', () => {
  test('a command is found in the system directories, whatever PATH the job set', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'processes-'));
    const saved = process.env.PATH;
    try {
      // A step put its own tar first on PATH (GITHUB_PATH): it would see the cache token in its environment.
      await writeFile(join(dir, 'tar'), '#!/bin/sh\necho planted\n');
      await chmod(join(dir, 'tar'), 0o755);
      process.env.PATH = `${dir}:${saved}`;
      assert.ok(
        SYSTEM_PATH.some((d) => commandPath('tar') === `${d}/tar`),
        commandPath('tar'),
      );
      assert.match(await commandOutput('tar', ['--version']), /GNU tar/);
    } finally {
      process.env.PATH = saved;
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a missing command is an error naming it and where it was looked for', () => {
    assert.throws(() => commandPath('no-such-command-here'), /no-such-command-here is not installed in \/usr\/local\/sbin, /);
  });

  test("a command's environment is its kind's, not this process's", async () => {
    const saved = process.env.ACTIONS_RUNTIME_TOKEN;
    process.env.ACTIONS_RUNTIME_TOKEN = 'runtime-secret-in-parent';
    try {
      const env = await commandOutput('env', []);
      assert.ok(!env.includes('runtime-secret-in-parent'), env);
      assert.match(env, new RegExp(`^PATH=${SYSTEM_PATH.join(':')}$`, 'm'));
    } finally {
      if (saved === undefined) delete process.env.ACTIONS_RUNTIME_TOKEN;
      else process.env.ACTIONS_RUNTIME_TOKEN = saved;
    }
  });
});
