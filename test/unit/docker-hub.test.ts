// Docker Hub's pure parts: the Bearer challenge of /v2/ (where to get a token) and the pull quota headers.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { manifestHead, parseChallenge, parseQuota, probeUpstream, readQuota, realmTakesCredentials } from '../../src/docker-hub.js';

describe('parseChallenge', () => {
  test("Docker Hub's real header", () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'), {
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
    });
  });

  test('a challenge with a scope (as a manifest request gets it), and spaces after the commas', () => {
    assert.deepEqual(
      parseChallenge('Bearer realm="https://auth.docker.io/token", service="registry.docker.io", scope="repository:library/alpine:pull"'),
      {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
      },
    );
  });

  test('the scheme in any case', () => {
    const expected = { realm: 'https://auth.docker.io/token', service: 'registry.docker.io' };
    assert.deepEqual(parseChallenge('bearer realm="https://auth.docker.io/token",service="registry.docker.io"'), expected);
    assert.deepEqual(parseChallenge('BEARER realm="https://auth.docker.io/token",service="registry.docker.io"'), expected);
  });

  test('parameter names in any case', () => {
    assert.deepEqual(parseChallenge('Bearer Realm="https://ghcr.io/token",Service="ghcr.io"'), {
      realm: 'https://ghcr.io/token',
      service: 'ghcr.io',
    });
  });

  test('no service: an empty one', () => {
    assert.deepEqual(parseChallenge('Bearer realm="http://127.0.0.1:5001/token"'), { realm: 'http://127.0.0.1:5001/token', service: '' });
  });

  test('Basic, and other schemes, are not a Bearer challenge', () => {
    assert.equal(parseChallenge('Basic realm="Registry Realm"'), null);
    assert.equal(parseChallenge('Digest realm="x",nonce="y"'), null);
    assert.equal(parseChallenge('Bearerish realm="https://auth.docker.io/token"'), null);
  });

  test('a Bearer challenge without a realm is no use', () => {
    assert.equal(parseChallenge('Bearer service="registry.docker.io"'), null);
    assert.equal(parseChallenge('Bearer realm="",service="registry.docker.io"'), null);
    assert.equal(parseChallenge('Bearer '), null);
    assert.equal(parseChallenge('Bearer'), null);
  });

  test('no header, or an empty one', () => {
    assert.equal(parseChallenge(null), null);
    assert.equal(parseChallenge(''), null);
  });
});

describe('parseQuota', () => {
  test("Docker Hub's ratelimit-limit and ratelimit-remaining", () => {
    assert.deepEqual(parseQuota('100;w=21600', '76;w=21600'), { limit: 100, remaining: 76, window: 21600 });
  });

  test('an authenticated user, and a quota used up', () => {
    assert.deepEqual(parseQuota('200;w=21600', '0;w=21600'), { limit: 200, remaining: 0, window: 21600 });
  });

  test('the window is read from the limit', () => {
    assert.deepEqual(parseQuota('100;w=3600', '99'), { limit: 100, remaining: 99, window: 3600 });
  });

  test('a limit without a window: window 0', () => {
    assert.deepEqual(parseQuota('100', '76'), { limit: 100, remaining: 76, window: 0 });
  });

  test('missing headers: null (no limit applies)', () => {
    assert.equal(parseQuota(null, null), null);
    assert.equal(parseQuota(null, '76;w=21600'), null);
    assert.equal(parseQuota('100;w=21600', null), null);
    assert.equal(parseQuota('', ''), null);
  });

  test('headers that are not numbers: null', () => {
    assert.equal(parseQuota('unlimited', '76'), null);
    assert.equal(parseQuota('100;w=21600', 'lots'), null);
  });
});

describe('realmTakesCredentials', () => {
  const cases: [string, string, string, boolean][] = [
    ["Docker Hub's realm, on another host over https", 'https://auth.docker.io/token', 'https://registry-1.docker.io', true],
    ['an https realm for a plain-http mirror', 'https://auth.example/token', 'http://mirror.example:5000', true],
    ["a plain-http mirror's own realm", 'http://mirror.example:5000/token', 'http://mirror.example:5000', true],
    ['http on another host', 'http://evil.example/token', 'http://mirror.example:5000', false],
    ['http on the same host, another port', 'http://mirror.example:5001/token', 'http://mirror.example:5000', false],
    ['http on the host of an https upstream', 'http://registry.example/token', 'https://registry.example', false],
    ['http for Docker Hub', 'http://auth.docker.io/token', 'https://registry-1.docker.io', false],
    ['not a URL', 'auth.docker.io/token', 'https://registry-1.docker.io', false],
    ['another scheme', 'ftp://auth.docker.io/token', 'https://registry-1.docker.io', false],
  ];
  for (const [what, realm, upstream, takes] of cases)
    test(`${what}: ${takes}`, () => assert.equal(realmTakesCredentials(realm, upstream), takes));
});

/** A real HTTP server on a loopback address: what it was asked, and with which Authorization. */
interface Recorder {
  url: string;
  seen: { path: string; authorization: string }[];
  server: Server;
}

async function startRecorder(host: string, answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<Recorder> {
  const seen: Recorder['seen'] = [];
  const server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization ?? '' });
    answer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { url: `http://${host}:${(server.address() as AddressInfo).port}`, seen, server };
}

describe('credentials and the token realm an upstream names', () => {
  const credentials = { username: 'ci-bot', password: 'the-secret-token' };
  const basic = `Basic ${Buffer.from('ci-bot:the-secret-token').toString('base64')}`;
  const token = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t"}');
  let elsewhere: Recorder;
  let otherPort: Recorder;
  /** An upstream whose challenge names `realm(self)`, and whose /token redirects to `redirect(self)` when that is set. */
  const upstreams: Recorder[] = [];
  const upstream = async (realm: (self: string) => string, redirect?: (self: string) => string) => {
    let self = '';
    const u = await startRecorder('127.0.0.1', (req, res) => {
      if (req.url === '/v2/') res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm(self)}",service="registry.example"` }).end();
      else if (req.url?.startsWith('/token') && redirect) res.writeHead(307, { location: `${redirect(self)}${req.url}` }).end();
      else if (req.url?.startsWith('/token')) token(res);
      else res.writeHead(200, { 'docker-content-digest': `sha256:${'1'.repeat(64)}` }).end();
    });
    self = u.url;
    upstreams.push(u);
    return u;
  };

  before(async () => {
    // Another host (127.0.0.2 is loopback too) and another port of the upstream's own host: both take anything.
    elsewhere = await startRecorder('127.0.0.2', (_, res) => token(res));
    otherPort = await startRecorder('127.0.0.1', (_, res) => token(res));
  });
  after(() => {
    for (const r of [elsewhere, otherPort, ...upstreams]) r?.server.close();
  });

  /** Everything the action asks an upstream with credentials: the probe in main, the quota and the tag check in post. */
  const askEverything = async (url: string) => {
    const probe = await probeUpstream(url, credentials);
    await readQuota(url, credentials);
    await manifestHead(url, 'library/alpha', '1', credentials);
    return probe;
  };

  for (const [what, to] of [
    ['on another host', () => elsewhere],
    ['on another port of its host', () => otherPort],
  ] as const) {
    test(`an http:// realm ${what}: the credentials never reach it`, async () => {
      const u = await upstream(() => `${to().url}/token`);
      const from = to().seen.length;
      const probe = await askEverything(u.url);
      assert.ok(
        !to()
          .seen.slice(from)
          .some((r) => r.authorization === basic),
        JSON.stringify(to().seen.slice(from)),
      );
      assert.ok(!u.seen.some((r) => r.authorization === basic), JSON.stringify(u.seen));
      assert.deepEqual(probe, { reachable: true, credentials: 'unchecked' });
    });

    test(`the upstream's own realm redirecting ${what}: the credentials never reach it`, async () => {
      const u = await upstream(
        (self) => `${self}/token`,
        () => to().url,
      );
      const from = to().seen.length;
      const probe = await askEverything(u.url);
      assert.ok(
        u.seen.some((r) => r.path.startsWith('/token') && r.authorization === basic),
        'its own realm was asked',
      );
      assert.ok(
        !to()
          .seen.slice(from)
          .some((r) => r.authorization === basic),
        JSON.stringify(to().seen.slice(from)),
      );
      // Not 'accepted': what the realm answered after such a redirect did not come with the credentials.
      assert.equal(probe.credentials, 'unchecked');
    });
  }

  test("a plain-http upstream's own realm gets them, also through a redirect on its own origin", async () => {
    const direct = await upstream((self) => `${self}/token`);
    assert.deepEqual(await probeUpstream(direct.url, credentials), { reachable: true, credentials: 'accepted' });
    assert.ok(direct.seen.some((r) => r.path.startsWith('/token?') && r.authorization === basic));
    let moved = '';
    const redirecting = await startRecorder('127.0.0.1', (req, res) => {
      if (req.url === '/v2/') res.writeHead(401, { 'www-authenticate': `Bearer realm="${moved}/old-token"` }).end();
      else if (req.url?.startsWith('/old-token')) res.writeHead(308, { location: req.url.replace('/old-token', '/token') }).end();
      else token(res);
    });
    moved = redirecting.url;
    upstreams.push(redirecting);
    assert.deepEqual(await probeUpstream(redirecting.url, credentials), { reachable: true, credentials: 'accepted' });
    assert.ok(redirecting.seen.some((r) => r.path.startsWith('/token?') && r.authorization === basic));
  });
});
