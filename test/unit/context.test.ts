// parseInputs: what a workflow author writes under `with:`, and what the action makes of it or refuses.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { credentialSecrets, DEFAULTS, parseInputs, runnerArch } from '../../src/context.js';
import { InputError } from '../../src/input-error.js';

/** parseInputs over a `with:` block; unset inputs read as empty, as @actions/core gives them. */
function parse(inputs: Record<string, string> = {}) {
  return parseInputs((name) => inputs[name] ?? '');
}

/** Asserts that the inputs are refused with an InputError whose message matches every pattern. */
function refuses(inputs: Record<string, string>, ...patterns: RegExp[]) {
  assert.throws(
    () => parse(inputs),
    (e: unknown) => {
      assert.ok(e instanceof InputError, `expected an InputError, got ${String(e)}`);
      assert.equal(e.name, 'InputError');
      for (const p of patterns) assert.match(e.message, p);
      return true;
    },
  );
}

describe('parseInputs: defaults', () => {
  test('an empty with: block gives the documented defaults', () => {
    assert.deepEqual(parse(), {
      dockerhubUsername: '',
      dockerhubToken: '',
      upstream: 'https://registry-1.docker.io',
      registries: ['docker.io'],
      registryCredentials: {},
      registryUpstreams: {},
      listen: 'loopback',
      cacheKey: 'pull-cache',
      save: true,
      cachePrivate: false,
      maxSize: 2 * 1024 ** 3,
      maxAgeDays: 7,
      cacheTimeoutSeconds: 300,
      prefetch: true,
      prefetchConcurrency: Math.max(2, availableParallelism()),
      registryVersion: '3.1.1',
      registrySha256: '',
      registryDownloadUrl: 'https://github.com/distribution/distribution/releases/download',
      registryPath: '',
      daemonConfig: '/etc/docker/daemon.json',
      registriesConfDir: '',
      port: 0,
      failOnError: false,
      githubToken: '',
    });
  });

  test('the defaults are those of DEFAULTS', () => {
    const i = parse();
    assert.equal(i.upstream, DEFAULTS.upstream);
    assert.equal(i.cacheKey, DEFAULTS.cacheKey);
    assert.equal(i.registryVersion, DEFAULTS.registryVersion);
    assert.equal(i.registryDownloadUrl, DEFAULTS.registryDownloadUrl);
    assert.equal(i.daemonConfig, DEFAULTS.daemonConfig);
    assert.equal(i.maxSize, parse({ 'max-size': DEFAULTS.maxSize }).maxSize);
    assert.equal(i.maxAgeDays, parse({ 'max-age': DEFAULTS.maxAge }).maxAgeDays);
    assert.equal(i.cacheTimeoutSeconds, parse({ 'cache-timeout': DEFAULTS.cacheTimeout }).cacheTimeoutSeconds);
  });

  test('whitespace-only values count as unset', () => {
    const i = parse({
      upstream: '   ',
      'cache-key': ' ',
      port: '  ',
      save: ' ',
      'fail-on-error': '\t',
      'registry-version': ' ',
      'max-size': ' ',
      'max-age': '\t',
    });
    assert.equal(i.upstream, DEFAULTS.upstream);
    assert.equal(i.cacheKey, 'pull-cache');
    assert.equal(i.port, 0);
    assert.equal(i.save, true);
    assert.equal(i.failOnError, false);
    assert.equal(i.registryVersion, '3.1.1');
    assert.equal(i.maxSize, 2 * 1024 ** 3);
    assert.equal(i.maxAgeDays, 7);
  });
});

describe('parseInputs: Docker Hub credentials', () => {
  test('username and token together are kept, trimmed', () => {
    const i = parse({ 'dockerhub-username': ' octocat ', 'dockerhub-token': ' dckr_pat_abc \n' });
    assert.equal(i.dockerhubUsername, 'octocat');
    assert.equal(i.dockerhubToken, 'dckr_pat_abc');
  });

  test('a username without a token is refused, naming both inputs', () => {
    refuses({ 'dockerhub-username': 'octocat' }, /dockerhub-username is set/, /dockerhub-token is empty/, /both, or neither/);
  });

  test('a token without a username is refused, naming both inputs', () => {
    refuses({ 'dockerhub-token': 'dckr_pat_abc' }, /dockerhub-token is set/, /dockerhub-username is empty/, /both, or neither/);
  });

  test('the refusal does not print the token', () => {
    assert.throws(
      () => parse({ 'dockerhub-token': 'dckr_pat_secret' }),
      (e: Error) => !e.message.includes('dckr_pat_secret'),
    );
  });

  test('github-token: a GitHub token is taken as it is; anything else is refused with a message that does not quote it', () => {
    assert.equal(
      parse({ 'github-token': 'ghs_16C7e42F292c6912E7710c838347Ae178B4a' }).githubToken,
      'ghs_16C7e42F292c6912E7710c838347Ae178B4a',
    );
    assert.equal(parse({ 'github-token': `github_pat_${'a1'.repeat(41)}` }).githubToken.length, 93);
    for (const bad of ['Bearer ghs_secretsecretsecretsecret', 'ghs_secret\nsecondlinesecret', 'short_secret'])
      assert.throws(
        () => parse({ 'github-token': bad }),
        (e: Error) => e instanceof InputError && /github-token must be a GitHub token/.test(e.message) && !e.message.includes('secret'),
      );
  });
});

describe('parseInputs: URLs', () => {
  test('http and https upstreams are accepted', () => {
    assert.equal(parse({ upstream: 'http://127.0.0.1:5001' }).upstream, 'http://127.0.0.1:5001');
    assert.equal(parse({ upstream: 'https://ghcr.io' }).upstream, 'https://ghcr.io');
  });

  test('trailing slashes are removed from upstream and registry-download-url', () => {
    assert.equal(parse({ upstream: 'https://registry-1.docker.io/' }).upstream, 'https://registry-1.docker.io');
    assert.equal(parse({ upstream: 'http://127.0.0.1:5001///' }).upstream, 'http://127.0.0.1:5001');
    assert.equal(
      parse({ 'registry-download-url': 'https://mirror.example/releases/' }).registryDownloadUrl,
      'https://mirror.example/releases',
    );
  });

  for (const bad of ['ftp://registry.example', 'file:///etc/passwd', 'registry-1.docker.io', 'not a url']) {
    test(`upstream "${bad}" is refused as not an http(s) URL`, () => {
      refuses(
        { upstream: bad },
        /^upstream must be an http:\/\/ or https:\/\/ URL/,
        new RegExp(`got "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
      );
    });
  }

  test('registry-download-url that is not http(s) is refused, naming it', () => {
    refuses({ 'registry-download-url': 'ftp://mirror.example/releases' }, /^registry-download-url must be an http:\/\/ or https:\/\/ URL/);
  });

  test('credentials in the upstream URL are refused without echoing them', () => {
    for (const upstream of ['https://user:s3cret@registry.example', 'https://user@registry.example']) {
      assert.throws(
        () => parse({ upstream }),
        (e: unknown) => e instanceof InputError && /^upstream must not carry credentials/.test(e.message) && !e.message.includes('s3cret'),
      );
    }
  });
});

describe('parseInputs: cache-key', () => {
  test('letters, digits, dot, underscore and dash are accepted', () => {
    assert.equal(parse({ 'cache-key': 'My_cache-v2.1' }).cacheKey, 'My_cache-v2.1');
  });

  test('100 characters are accepted, 101 are refused', () => {
    assert.equal(parse({ 'cache-key': 'k'.repeat(100) }).cacheKey, 'k'.repeat(100));
    refuses({ 'cache-key': 'k'.repeat(101) }, /^cache-key must be 1 to 100 characters/);
  });

  for (const bad of ['pull cache', 'pull/cache', 'cache,key', 'clé', 'a:b', 'a*']) {
    test(`cache-key "${bad}" is refused, saying what is allowed`, () => {
      refuses({ 'cache-key': bad }, /^cache-key must be 1 to 100 characters of letters, digits, '\.', '_' or '-'/, /got "/);
    });
  }
});

describe('parseInputs: max-size', () => {
  const sizeOf = (value: string) => parse({ 'max-size': value }).maxSize;

  test('decimal units are powers of 1000, binary units (KiB, MiB, GiB, TiB) powers of 1024', () => {
    assert.equal(sizeOf('500MB'), 500_000_000);
    assert.equal(sizeOf('2GB'), 2_000_000_000);
    assert.equal(sizeOf('1TB'), 1e12);
    assert.equal(sizeOf('64kB'), 64_000);
    assert.equal(sizeOf('1.5GiB'), 1.5 * 2 ** 30);
    assert.equal(sizeOf('512MiB'), 512 * 2 ** 20);
    assert.equal(sizeOf('4KiB'), 4096);
    assert.equal(sizeOf('1TiB'), 2 ** 40);
  });

  test('a bare number, or B, is bytes; 0 means no limit', () => {
    assert.equal(sizeOf('1048576'), 1_048_576);
    assert.equal(sizeOf('100B'), 100);
    assert.equal(sizeOf('0'), 0);
    assert.equal(sizeOf('0GB'), 0);
  });

  test('units in any case, with or without a space, and surrounding whitespace', () => {
    assert.equal(sizeOf('2gb'), 2e9);
    assert.equal(sizeOf('2 GB'), 2e9);
    assert.equal(sizeOf('1.5gib'), 1.5 * 2 ** 30);
    assert.equal(sizeOf('  750 MB \n'), 750e6);
  });

  test('fractions are rounded to whole bytes', () => {
    assert.equal(sizeOf('1.5KB'), 1500);
    assert.equal(sizeOf('0.001KiB'), 1);
    assert.equal(Number.isInteger(sizeOf('1.1MiB')), true);
  });

  for (const bad of ['2G', '500M', 'big', '-1GB', '1e9', '1,5GB', '.5GB', '5.GB', '2 GBs', '2PB', 'GB', '2GB 500MB', '0x10']) {
    test(`max-size "${bad}" is refused, naming the input and the allowed forms`, () => {
      refuses(
        { 'max-size': bad },
        /^max-size must be a size such as 500MiB, 2GiB or 1\.5GB \(0 for no limit\)/,
        new RegExp(`got "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
      );
    });
  }
});

describe('parseInputs: max-age', () => {
  const ageOf = (value: string) => parse({ 'max-age': value }).maxAgeDays;

  test('days, with or without d; 0 means no limit', () => {
    assert.equal(ageOf('7d'), 7);
    assert.equal(ageOf('7'), 7);
    assert.equal(ageOf('30D'), 30);
    assert.equal(ageOf('14 d'), 14);
    assert.equal(ageOf('0'), 0);
    assert.equal(ageOf('0d'), 0);
    assert.equal(ageOf(' 3d '), 3);
  });

  test('up to 4 digits', () => {
    assert.equal(ageOf('9999d'), 9999);
    refuses({ 'max-age': '10000d' }, /^max-age must be a number of days/);
  });

  for (const bad of ['1w', '7days', '-1', '1.5d', '7h', 'd', 'week', '7dd', '1e3']) {
    test(`max-age "${bad}" is refused, naming the input and the allowed form`, () => {
      refuses(
        { 'max-age': bad },
        /^max-age must be a number of days such as 7d \(0 for no limit\)/,
        new RegExp(`got "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
      );
    });
  }
});

describe('parseInputs: booleans', () => {
  test('save and fail-on-error take true/false in any case', () => {
    assert.equal(parse({ save: 'false' }).save, false);
    assert.equal(parse({ save: 'FALSE' }).save, false);
    assert.equal(parse({ save: 'True' }).save, true);
    assert.equal(parse({ 'fail-on-error': 'true' }).failOnError, true);
    assert.equal(parse({ 'fail-on-error': ' TRUE ' }).failOnError, true);
    assert.equal(parse({ 'fail-on-error': 'false' }).failOnError, false);
  });

  for (const bad of ['yes', 'no', '1', '0', 'on']) {
    test(`save "${bad}" is refused`, () => refuses({ save: bad }, /^save must be true or false/, new RegExp(`got "${bad}"`)));
    test(`fail-on-error "${bad}" is refused`, () =>
      refuses({ 'fail-on-error': bad }, /^fail-on-error must be true or false/, new RegExp(`got "${bad}"`)));
  }
});

describe('parseInputs: cache-timeout', () => {
  const timeoutOf = (value: string) => parse({ 'cache-timeout': value }).cacheTimeoutSeconds;

  test('whole seconds from 1 to 3600', () => {
    assert.equal(timeoutOf('1'), 1);
    assert.equal(timeoutOf('60'), 60);
    assert.equal(timeoutOf('300'), 300);
    assert.equal(timeoutOf('3600'), 3600);
    assert.equal(timeoutOf(' 90 '), 90);
  });

  test('empty or whitespace means the default, 300', () => {
    assert.equal(timeoutOf(''), 300);
    assert.equal(timeoutOf('  '), 300);
  });

  for (const bad of ['0', '3601', '10000', '99999', '-1', '1.5', '60s', '5m', 'abc', '1e3', '+60', '0x10', '123456']) {
    test(`cache-timeout "${bad}" is refused, naming the input and the range`, () => {
      refuses(
        { 'cache-timeout': bad },
        /^cache-timeout must be a whole number of seconds from 1 to 3600/,
        new RegExp(`got "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
      );
    });
  }
});

describe('parseInputs: prefetch and prefetch-concurrency', () => {
  test('prefetch takes true or false in any case; on by default', () => {
    assert.equal(parse({ prefetch: 'false' }).prefetch, false);
    assert.equal(parse({ prefetch: 'FALSE' }).prefetch, false);
    assert.equal(parse({ prefetch: 'true' }).prefetch, true);
    assert.equal(parse({ prefetch: ' True ' }).prefetch, true);
    assert.equal(parse({ prefetch: '' }).prefetch, true);
  });

  for (const bad of ['yes', 'no', '1', '0', 'off']) {
    test(`prefetch "${bad}" is refused`, () => refuses({ prefetch: bad }, /^prefetch must be true or false/, new RegExp(`got "${bad}"`)));
  }

  test('prefetch-concurrency from 1 to 32', () => {
    assert.equal(parse({ 'prefetch-concurrency': '1' }).prefetchConcurrency, 1);
    assert.equal(parse({ 'prefetch-concurrency': '4' }).prefetchConcurrency, 4);
    assert.equal(parse({ 'prefetch-concurrency': '32' }).prefetchConcurrency, 32);
    assert.equal(parse({ 'prefetch-concurrency': ' 8 ' }).prefetchConcurrency, 8);
  });

  test("empty prefetch-concurrency means the runner's core count, at least 2", () => {
    const expected = Math.max(2, availableParallelism());
    assert.equal(parse({ 'prefetch-concurrency': '' }).prefetchConcurrency, expected);
    assert.equal(parse({ 'prefetch-concurrency': '  ' }).prefetchConcurrency, expected);
    assert.ok(expected >= 2);
  });

  for (const bad of ['0', '33', '64', '100', '-1', '2.5', 'four', 'auto', '+4', '1e1']) {
    test(`prefetch-concurrency "${bad}" is refused, saying the range`, () => {
      refuses(
        { 'prefetch-concurrency': bad },
        /^prefetch-concurrency must be a whole number from 1 to 32, or empty for the runner's core count/,
        new RegExp(`got "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
      );
    });
  }
});

describe('parseInputs: cache-private', () => {
  test('cache-private takes true or false in any case; off by default', () => {
    assert.equal(parse({ 'cache-private': 'true' }).cachePrivate, true);
    assert.equal(parse({ 'cache-private': 'TRUE' }).cachePrivate, true);
    assert.equal(parse({ 'cache-private': 'false' }).cachePrivate, false);
    assert.equal(parse({ 'cache-private': ' False ' }).cachePrivate, false);
    assert.equal(parse({ 'cache-private': '' }).cachePrivate, false);
  });

  for (const bad of ['yes', 'no', '1', '0', 'on']) {
    test(`cache-private "${bad}" is refused`, () =>
      refuses({ 'cache-private': bad }, /^cache-private must be true or false/, new RegExp(`got "${bad}"`)));
  }
});

describe('parseInputs: registry version and checksum', () => {
  test('a leading v is stripped from registry-version', () => {
    assert.equal(parse({ 'registry-version': 'v3.0.0' }).registryVersion, '3.0.0');
    assert.equal(parse({ 'registry-version': 'v2.8.3' }).registryVersion, '2.8.3');
  });

  test('pre-release versions are accepted', () => {
    assert.equal(parse({ 'registry-version': '3.0.0-rc.1' }).registryVersion, '3.0.0-rc.1');
  });

  for (const bad of ['2.8', 'latest', '2.8.3.1', '3', 'vv2.8.3', '2.8.x', 'V2.8.3']) {
    test(`registry-version "${bad}" is refused with an example`, () => {
      refuses(
        { 'registry-version': bad },
        /^registry-version must be a release version such as 3\.1\.1 or 2\.8\.3/,
        new RegExp(`got "${bad}"`),
      );
    });
  }

  test('registry-sha256 of 64 hex characters is accepted and lower-cased', () => {
    const hash = 'B1F750ECBE09F38E2143E22C61A25E3DA2AFE1510D9522859230B480E642CEFF';
    assert.equal(parse({ 'registry-sha256': hash }).registrySha256, hash.toLowerCase());
  });

  for (const [what, bad] of [
    ['63 characters', 'a'.repeat(63)],
    ['65 characters', 'a'.repeat(65)],
    ['a non-hex character', `${'a'.repeat(63)}g`],
    ['an algorithm prefix', `sha256:${'a'.repeat(64)}`],
  ]) {
    test(`registry-sha256 with ${what} is refused`, () => {
      refuses({ 'registry-sha256': bad }, /^registry-sha256 must be 64 hexadecimal characters \(a SHA-256\)/);
    });
  }
});

describe('parseInputs: daemon-config, registry-path and port', () => {
  test('an absolute daemon-config is kept', () => {
    assert.equal(
      parse({ 'daemon-config': '/home/runner/.config/docker/daemon.json' }).daemonConfig,
      '/home/runner/.config/docker/daemon.json',
    );
  });

  test('daemon-config none: a daemon the action may not touch (null); None or a path named none are not it', () => {
    assert.equal(parse({ 'daemon-config': 'none' }).daemonConfig, null);
    refuses(
      { 'daemon-config': 'None' },
      /^daemon-config must be an absolute path, or none for a daemon the action may not touch, got "None"/,
    );
  });

  for (const bad of ['daemon.json', './daemon.json', '~/.config/docker/daemon.json', 'etc/docker/daemon.json']) {
    test(`relative daemon-config "${bad}" is refused`, () =>
      refuses({ 'daemon-config': bad }, /^daemon-config must be an absolute path/, /got "/));
  }

  test('registries-conf-d: empty for the default directory, none for no drop-in, else an absolute path', () => {
    assert.equal(parse({}).registriesConfDir, '');
    assert.equal(parse({ 'registries-conf-d': 'none' }).registriesConfDir, null);
    assert.equal(
      parse({ 'registries-conf-d': '/home/runner/.config/containers/registries.conf.d' }).registriesConfDir,
      '/home/runner/.config/containers/registries.conf.d',
    );
    refuses(
      { 'registries-conf-d': '.config/containers' },
      /^registries-conf-d must be an absolute path, empty for the directory your podman reads, or none, got "\.config\/containers"/,
    );
  });

  test('registry-path is passed through', () => {
    assert.equal(parse({ 'registry-path': '/usr/bin/docker-registry' }).registryPath, '/usr/bin/docker-registry');
  });

  test('ports 1 to 65535 are accepted; empty means pick one (0)', () => {
    assert.equal(parse({ port: '1' }).port, 1);
    assert.equal(parse({ port: '5000' }).port, 5000);
    assert.equal(parse({ port: '65535' }).port, 65535);
    assert.equal(parse({ port: '' }).port, 0);
  });

  for (const bad of ['0', '65536', '-1', '80.5', 'abc', '5000/tcp', '99999999', '0x1F90', '8e3', '+80', '80.0']) {
    test(`port "${bad}" is refused, saying the range`, () =>
      refuses(
        { port: bad },
        /^port must be a whole number from 1 to 65535, or empty for a free loopback port/,
        new RegExp(`got "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
      ));
  }
});

describe('runnerArch', () => {
  test('x64 is amd64 and arm64 is arm64', () => {
    assert.equal(runnerArch('x64'), 'amd64');
    assert.equal(runnerArch('arm64'), 'arm64');
  });

  test('other architectures are refused, naming the supported ones', () => {
    for (const arch of ['ia32', 'arm', 's390x', 'ppc64']) {
      assert.throws(
        () => runnerArch(arch as NodeJS.Architecture),
        new RegExp(`runner architecture ${arch} is not supported.*x64 \\(amd64\\) and arm64`),
      );
    }
  });

  test('defaults to this process', () => {
    if (process.arch === 'x64' || process.arch === 'arm64') assert.equal(runnerArch(), process.arch === 'x64' ? 'amd64' : 'arm64');
    else assert.throws(() => runnerArch());
  });
});

describe('parseInputs: registries, registry-credentials, listen', () => {
  test('hosts by commas, spaces or new lines, lower-cased; Docker Hub by any of its names is docker.io', () => {
    assert.deepEqual(parse({ registries: 'docker.io, GHCR.io\nquay.io registry.k8s.io' }).registries, [
      'docker.io',
      'ghcr.io',
      'quay.io',
      'registry.k8s.io',
    ]);
    assert.deepEqual(parse({ registries: 'registry-1.docker.io' }).registries, ['docker.io']);
    assert.deepEqual(parse({ registries: 'index.docker.io,localhost:5000' }).registries, ['docker.io', 'localhost:5000']);
  });

  test('a name that is no registry host, a host listed twice, or too many are refused, naming the input', () => {
    refuses({ registries: 'ghcr' }, /^registries: "ghcr" is not a registry host/, /docker\.io, ghcr\.io/);
    refuses({ registries: 'https://ghcr.io' }, /^registries: "https:\/\/ghcr\.io" is not a registry host/);
    refuses({ registries: 'docker.io registry-1.docker.io' }, /^registries: docker\.io is listed twice/);
    refuses(
      { registries: Array.from({ length: 11 }, (_, i) => `r${i}.example.com`).join(',') },
      /^registries: at most 10 registries, got 11/,
    );
  });

  test("HOST=URL: the upstream of that registry's mirror, an organisation mirror; refused for Docker Hub, or when not a plain http(s) URL", () => {
    const i = parse({ registries: 'docker.io\nGHCR.io=https://nexus.example:8444/ quay.io' });
    assert.deepEqual(i.registries, ['docker.io', 'ghcr.io', 'quay.io']);
    assert.deepEqual(i.registryUpstreams, { 'ghcr.io': 'https://nexus.example:8444' });
    refuses(
      { registries: 'docker.io=https://hub-mirror.example' },
      /^registries: give Docker Hub's upstream \(https:\/\/hub-mirror\.example\) as the upstream input, not as docker\.io=URL/,
    );
    refuses(
      { registries: 'ghcr.io=nexus.example:8444' },
      /^registries: the upstream of ghcr\.io must be an http:\/\/ or https:\/\/ URL, got "nexus\.example:8444"/,
    );
    refuses(
      { registries: 'ghcr.io=https://me:pw@nexus.example' },
      /^registries: the upstream of ghcr\.io must not carry credentials in the URL/,
    );
    refuses({ registries: '=https://nexus.example' }, /^registries: "" is not a registry host/);
  });

  test('registry-credentials: HOST=USERNAME:TOKEN per line for listed registries; a token may hold colons', () => {
    const i = parse({
      registries: 'docker.io ghcr.io quay.io',
      'registry-credentials': 'ghcr.io=octocat:ghp_abc\n\nquay.io = robot+ci:tok:en\n',
    });
    assert.deepEqual(i.registryCredentials, {
      'ghcr.io': { username: 'octocat', password: 'ghp_abc' },
      'quay.io': { username: 'robot+ci', password: 'tok:en' },
    });
  });

  test('registry-credentials that cannot be used are refused without quoting the token', () => {
    const secret = 'ghp_SECRETSECRET';
    for (const [value, pattern] of [
      [`ghcr.io=${secret}`, /^registry-credentials line 1 must be HOST=USERNAME:TOKEN/],
      [`quay.io=me:${secret}`, /^registry-credentials line 1 names quay\.io, which registries does not list \(docker\.io, ghcr\.io\)/],
      [`docker.io=me:${secret}`, /dockerhub-username and dockerhub-token/],
      [`ghcr.io=me:${secret}\nghcr.io=you:${secret}`, /^registry-credentials: ghcr\.io is given twice/],
    ] as const) {
      assert.throws(
        () => parse({ registries: 'docker.io,ghcr.io', 'registry-credentials': value }),
        (e: Error) => {
          assert.ok(e instanceof InputError);
          assert.match(e.message, pattern);
          assert.ok(!e.message.includes(secret), e.message);
          return true;
        },
      );
    }
  });

  test('credentialSecrets: the token of each line, or all after the host of a line of another shape', () => {
    assert.deepEqual(credentialSecrets('ghcr.io=octocat:ghp_abc\nquay.io=robot:tok:en\n\nbroken=onlytoken'), [
      'ghp_abc',
      'tok:en',
      'onlytoken',
    ]);
  });

  test('listen: loopback or docker-bridge', () => {
    assert.equal(parse({ listen: 'docker-bridge' }).listen, 'docker-bridge');
    refuses({ listen: '0.0.0.0' }, /^listen must be loopback \(127\.0\.0\.1: this runner's processes only\) or docker-bridge/);
  });
});
