// Every bad input is refused before anything starts, with a message that names the input and what it
// takes; the daemon and the runner are left exactly as they were, and the job goes on.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startWorld, type Runner, type World } from '../helpers/world.js';

const DAEMON_JSON = '{ "log-level": "warn" }\n';

describe('bad inputs', { timeout: 300_000 }, () => {
  let world: World;
  let runner: Runner;
  let directory: string;

  before(async () => {
    world = await startWorld('pull-cache-inputs');
    runner = await world.runner('inputs', DAEMON_JSON);
    directory = join(world.dir, 'a-directory');
    await mkdir(directory);
  });
  after(() => world?.stop());

  const cases: [string, () => Record<string, string>, RegExp][] = [
    ['port 0', () => ({ port: '0' }), /^port must be a whole number from 1 to 65535, or empty for a free loopback port; got "0"/],
    ['port out of range', () => ({ port: '70000' }), /^port must be a whole number from 1 to 65535/],
    ['port not a number', () => ({ port: 'http' }), /^port must be a whole number/],
    [
      'upstream without a scheme',
      () => ({ upstream: 'registry-1.docker.io' }),
      /^upstream must be an http:\/\/ or https:\/\/ URL, got "registry-1\.docker\.io"/,
    ],
    ['upstream not http', () => ({ upstream: 'ftp://registry.example' }), /^upstream must be an http:\/\/ or https:\/\/ URL/],
    [
      'credentials in the upstream URL',
      () => ({ upstream: 'https://me:pw@registry.example' }),
      /^upstream must not carry credentials in the URL/,
    ],
    ['save: maybe', () => ({ save: 'maybe' }), /^save must be true or false, got "maybe"/],
    ['fail-on-error: yes', () => ({ 'fail-on-error': 'yes' }), /^fail-on-error must be true or false, got "yes"/],
    ['cache-private: sometimes', () => ({ 'cache-private': 'sometimes' }), /^cache-private must be true or false/],
    [
      'cache-key with a space',
      () => ({ 'cache-key': 'my cache' }),
      /^cache-key must be 1 to 100 characters of letters, digits, '\.', '_' or '-', got "my cache"/,
    ],
    ['cache-key with a comma', () => ({ 'cache-key': 'a,b' }), /^cache-key must be 1 to 100 characters/],
    [
      'registry-version latest',
      () => ({ 'registry-version': 'latest' }),
      /^registry-version must be a release version such as 3\.1\.1 or 2\.8\.3, got "latest"/,
    ],
    [
      'an unknown registry-version without checksum',
      () => ({ 'registry-version': '2.8.9', 'registry-sha256': '' }),
      /^registry-version 2\.8\.9 has no pinned checksum \(known: 2\.8\.3, 3\.0\.0, 3\.1\.1\): set registry-sha256/,
    ],
    ['registry-sha256 too short', () => ({ 'registry-sha256': 'abc123' }), /^registry-sha256 must be 64 hexadecimal characters/],
    [
      'registry-download-url not a URL',
      () => ({ 'registry-download-url': 'releases' }),
      /^registry-download-url must be an http:\/\/ or https:\/\/ URL/,
    ],
    [
      'registry-path that does not exist',
      () => ({ 'registry-path': '/nonexistent/registry' }),
      /^registry-path \/nonexistent\/registry is not an executable file/,
    ],
    [
      'daemon-config relative',
      () => ({ 'daemon-config': 'daemon.json' }),
      /^daemon-config must be an absolute path, or none for a daemon the action may not touch, got "daemon\.json"/,
    ],
    [
      'daemon-config a directory',
      () => ({ 'daemon-config': directory }),
      /^daemon-config \/.+ is a directory: give the path of the daemon's JSON config file/,
    ],
    [
      'max-size in potatoes',
      () => ({ 'max-size': '2 potatoes' }),
      /^max-size must be a size such as 500MiB, 2GiB or 1\.5GB \(0 for no limit\), got "2 potatoes"/,
    ],
    ['max-age forever', () => ({ 'max-age': 'forever' }), /^max-age must be a number of days such as 7d \(0 for no limit\), got "forever"/],
    [
      'a username without a token',
      () => ({ 'dockerhub-username': 'ci-bot' }),
      /^dockerhub-username is set but dockerhub-token is empty: give both, or neither for anonymous pulls/,
    ],
    ['a token without a username', () => ({ 'dockerhub-token': 'dckr_pat_x' }), /^dockerhub-token is set but dockerhub-username is empty/],
  ];

  for (const [name, inputs, message] of cases) {
    test(`${name}: refused with a clear message, nothing touched`, async () => {
      const { main, post } = await runner.job(runner.inputs(inputs()));
      assert.equal(main.exitCode, 0, 'the job goes on');
      assert.equal(main.warnings.length, 1, main.stdout);
      const reason = main.warnings[0].replace(/^pull-cache-action: could not set up the cache: /, '');
      assert.match(reason, message);
      assert.match(reason, /The job goes on pulling directly\.$/);
      assert.equal(post.exitCode, 0);
      assert.deepEqual(post.warnings, [], 'post has nothing to undo');
      assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), DAEMON_JSON);
      assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors ?? [], []);
      assert.deepEqual(await readdir(runner.runnerTemp), []);
    });
  }
});
