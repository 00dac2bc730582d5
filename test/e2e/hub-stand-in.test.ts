// The Docker Hub stand-in (helpers/hub.ts) against real clients: Distribution 2.8.2 in proxy mode (what the
// action runs) with right, wrong and no upstream credentials, and a real dockerd pulling from it directly until
// the rate limit stops it. Also checks Docker's recipe for reading the quota (a HEAD of
// ratelimitpreview/test:latest with a pull token: docs.docker.com/docker-hub/usage/pulls/).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { MANIFEST_V2, makeLayer, type PushedImage } from '../helpers/images.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const ALICE = { username: 'alice', password: 'dckr_pat_alice' };
const KiB = 1024;

async function getManifest(base: string, repository: string, reference: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: MANIFEST_V2, ...headers },
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** Pulls an image through a registry (manifest, then every blob) as a client would; returns the statuses. */
async function pullThrough(base: string, image: PushedImage): Promise<{ manifest: number; blobs: number[]; body: string }> {
  const manifest = await getManifest(base, image.repository, image.tag);
  if (manifest.status !== 200) return { manifest: manifest.status, blobs: [], body: manifest.body };
  assert.equal(manifest.headers.get('docker-content-digest'), image.manifestDigest);
  const blobs: number[] = [];
  for (const digest of image.blobDigests) {
    const res = await fetch(`${base}/v2/${image.repository}/blobs/${digest}`, { signal: AbortSignal.timeout(30_000) });
    await res.arrayBuffer();
    blobs.push(res.status);
  }
  return { manifest: manifest.status, blobs, body: manifest.body };
}

function ratelimit(headers: Headers): { limit: string | null; remaining: string | null; source: string | null } {
  return {
    limit: headers.get('ratelimit-limit'),
    remaining: headers.get('ratelimit-remaining'),
    source: headers.get('docker-ratelimit-source'),
  };
}

describe('Docker Hub stand-in', { timeout: 90_000 }, () => {
  let dir: string;
  let hub: Hub | undefined;
  let dockerd: Dockerd | undefined;
  const proxies: Upstream[] = [];
  let x1: PushedImage;
  let x2: PushedImage;
  let x3: PushedImage;
  let secret: PushedImage;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hub-test-'));
    [hub, dockerd] = await Promise.all([
      startHub(join(dir, 'hub'), {
        users: { [ALICE.username]: ALICE.password },
        privateRepositories: ['alice/secret'],
        anonymousBudget: 4,
        authenticatedBudget: 6,
      }),
      startDockerd(join(dir, 'dockerd')),
    ]);
    const base = makeLayer('hub-base', [{ path: 'usr/lib/base.bin', bytes: 96 * KiB }]);
    x1 = await hub.pushImage('library/x', '1', [base, makeLayer('x1', [{ path: 'opt/x1', bytes: 16 * KiB }])]);
    x2 = await hub.pushImage('library/x', '2', [base, makeLayer('x2', [{ path: 'opt/x2', bytes: 16 * KiB }])]);
    x3 = await hub.pushImage('library/x', '3', [base, makeLayer('x3', [{ path: 'opt/x3', bytes: 16 * KiB }])]);
    secret = await hub.pushImage('alice/secret', '1', [base, makeLayer('secret', [{ path: 'opt/secret', bytes: 16 * KiB }])]);
  });

  after(async () => {
    await Promise.allSettled(proxies.map((p) => p.stop()));
    await dockerd?.stop();
    await hub?.stop();
    if (dir && !process.env.KEEP_TEST_DIRS) await rm(dir, { recursive: true, force: true });
  });

  test('the token server: anonymous pull on public only, users on private, wrong credentials 401', async () => {
    const h = hub!;
    const anonymous = await h.token(['repository:library/x:pull', 'repository:alice/secret:pull']);
    const anonymousStatus = (await getManifest(h.url, 'alice/secret', '1', { authorization: `Bearer ${anonymous}` })).status;
    assert.equal(anonymousStatus, 401, 'an anonymous token does not open a private repository');
    assert.deepEqual(h.tokenRequests().at(-1)!.access, [{ type: 'repository', name: 'library/x', actions: ['pull'] }]);
    const alice = await h.token('repository:alice/secret:pull,push', ALICE);
    assert.deepEqual(
      h.tokenRequests().at(-1)!.access,
      [{ type: 'repository', name: 'alice/secret', actions: ['pull'] }],
      'no push for users',
    );
    assert.equal((await getManifest(h.url, 'alice/secret', '1', { authorization: `Bearer ${alice}` })).status, 200);
    await assert.rejects(h.token('repository:alice/secret:pull', { ...ALICE, password: 'wrong' }), /HTTP 401/);
    await assert.rejects(h.token('repository:library/x:pull', { username: 'nobody', password: 'x' }), /HTTP 401/);
  });

  test('ratelimitpreview: HEAD reads the quota without spending it', async () => {
    const h = hub!;
    h.resetCounts();
    const anonymous = await h.token('repository:ratelimitpreview/test:pull');
    const alice = await h.token('repository:ratelimitpreview/test:pull', ALICE);
    const head = async (token: string) => {
      // No Accept, as in Docker's `curl --head` recipe.
      const res = await fetch(`${h.url}/v2/ratelimitpreview/test/manifests/latest`, {
        method: 'HEAD',
        headers: { authorization: `Bearer ${token}` },
      });
      return { status: res.status, ...ratelimit(res.headers) };
    };
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await head(anonymous), { status: 200, limit: '4;w=21600', remaining: '4;w=21600', source: '127.0.0.1' });
      assert.deepEqual(await head(alice), { status: 200, limit: '6;w=21600', remaining: '6;w=21600', source: 'alice' });
    }
    assert.equal(h.manifestGets(), 0);
    // A GET spends one, and the next HEAD shows it.
    const got = await getManifest(h.url, 'ratelimitpreview/test', 'latest', { authorization: `Bearer ${anonymous}` });
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('ratelimit-remaining'), '3;w=21600');
    assert.equal((await head(anonymous)).remaining, '3;w=21600');
    assert.equal(h.manifestGets('anonymous'), 1);
    h.resetCounts();
  });

  test('Distribution 2.8.2 as a pull-through proxy: credentials, wrong credentials, anonymous', async (t) => {
    const h = hub!;
    h.resetCounts();
    const proxy = async (name: string, credentials?: { username: string; password: string }) => {
      const p = await startUpstream(join(dir, name), {
        config: { proxy: { remoteurl: h.url, ...(credentials ?? {}) } },
      });
      proxies.push(p);
      return p;
    };
    const [good, bad, anon] = await Promise.all([
      proxy('proxy-alice', ALICE),
      proxy('proxy-wrong', { ...ALICE, password: 'not-her-token' }),
      proxy('proxy-anonymous'),
    ]);

    // Right credentials: the private image comes through, counted against alice. Cold, the proxy HEADs the tag,
    // then GETs the manifest by tag (not by digest).
    const coldStart = h.requests().length;
    const cold = await pullThrough(good.url, secret);
    assert.equal(cold.manifest, 200, cold.body);
    assert.deepEqual(
      cold.blobs,
      secret.blobDigests.map(() => 200),
    );
    assert.deepEqual(
      h
        .requests()
        .slice(coldStart)
        .filter((l) => /\/manifests\//.test(l.path))
        .map((l) => [l.method, l.path, l.identity]),
      [
        ['HEAD', '/v2/alice/secret/manifests/1', 'alice'],
        ['GET', '/v2/alice/secret/manifests/1', 'alice'],
      ],
    );
    assert.equal(h.manifestGets('alice'), 1, 'a cold pull through the proxy spends one manifest GET');
    // Warm: the proxy asks the hub about the tag again, with HEAD, and spends nothing.
    const before = h.requests().length;
    const warm = await pullThrough(good.url, secret);
    assert.equal(warm.manifest, 200);
    const warmManifestRequests = h
      .requests()
      .slice(before)
      .filter((l) => /\/manifests\//.test(l.path));
    t.diagnostic(
      `warm pull through the proxy sent the hub: ${JSON.stringify(warmManifestRequests.map((l) => `${l.method} ${l.path} ${l.status}`))}`,
    );
    assert.deepEqual(
      warmManifestRequests.map((l) => [l.method, l.path, l.identity]),
      [['HEAD', '/v2/alice/secret/manifests/1', 'alice']],
    );
    assert.equal(h.manifestGets('alice'), 1, 'a warm pull spends nothing');

    // Wrong credentials: the token server says 401; the proxy never sends the manifest request, swallows the
    // error and answers from its (empty) storage: 404 MANIFEST_UNKNOWN, as for a tag that does not exist.
    const frontBefore = h.requests().length;
    const tokensBefore = h.tokenRequests().length;
    const wrong = await pullThrough(bad.url, secret);
    t.diagnostic(`wrong credentials: proxy answered ${wrong.manifest} ${wrong.body.trim()}`);
    assert.equal(wrong.manifest, 404);
    assert.match(wrong.body, /MANIFEST_UNKNOWN/);
    assert.deepEqual(
      h
        .tokenRequests()
        .slice(tokensBefore)
        .map((l) => [l.username, l.status]),
      [[ALICE.username, 401]],
      'the proxy sent the wrong credentials to the token server once',
    );
    assert.deepEqual(
      h
        .requests()
        .slice(frontBefore)
        .filter((l) => l.path !== '/v2/'),
      [],
      'and nothing but its /v2/ challenge ping to the registry',
    );
    // A blob asked for by digest fails too, and there the proxy says why: 500 UNKNOWN with the upstream's error.
    const blob = await fetch(`${bad.url}/v2/${secret.repository}/blobs/${secret.layers[1].digest}`);
    const blobBody = await blob.text();
    t.diagnostic(`wrong credentials, blob: proxy answered ${blob.status} ${blobBody.trim()}`);
    assert.equal(blob.status, 500);
    assert.match(blobBody, /"code":"UNAUTHORIZED","message":"incorrect username or password"/);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const badLog = (await readFile(bad.registryLogFile, 'utf8')).split('\n').filter((l) => /level=error/.test(l));
    for (const l of badLog)
      t.diagnostic(
        `wrong credentials, proxy log: ${l.replace(/ go\.version=.*http\.request\.method=/, ' ... http.request.method=').slice(0, 400)}`,
      );
    assert.equal(badLog.length, 2);
    assert.match(badLog[0], /msg="response completed with error" err.code="manifest unknown" err.detail="unknown tag=1"/);
    assert.doesNotMatch(badLog[0], /unauthorized|incorrect/i, 'for the manifest the proxy logs nothing about credentials');
    assert.match(badLog[1], /err.detail="Head \\".*\\": unauthorized: incorrect username or password"/);
    assert.equal(h.manifestGets(), 1, 'nothing else was counted');

    // No credentials: public images come through anonymously; the private one does not.
    const pub = await pullThrough(anon.url, x1);
    assert.equal(pub.manifest, 200, pub.body);
    assert.deepEqual(
      pub.blobs,
      x1.blobDigests.map(() => 200),
    );
    assert.equal(h.manifestGets('anonymous'), 1);
    // The proxy HEADs the tag (401), tries GET (401), then answers from storage: 404, as for wrong credentials.
    const denied = await pullThrough(anon.url, secret);
    t.diagnostic(`anonymous proxy, private image: ${denied.manifest} ${denied.body.trim()}`);
    assert.equal(denied.manifest, 404);
    assert.equal(h.manifestGets('anonymous'), 1, 'a refused manifest GET costs nothing');

    // Rate limited: warm pulls still work (the proxy only HEADs the tag), a cold one fails.
    h.setBudget('anonymous', 1);
    try {
      const warmPublic = await pullThrough(anon.url, x1);
      assert.equal(warmPublic.manifest, 200, warmPublic.body);
      const limited = await pullThrough(anon.url, x2);
      t.diagnostic(`anonymous proxy over the limit, cold image: ${limited.manifest} ${limited.body.trim()}`);
      assert.equal(limited.manifest, 500);
      assert.match(limited.body, /"code":"UNKNOWN".*"code":"TOOMANYREQUESTS"/);
      assert.ok(h.requests().some((l) => l.method === 'GET' && l.path === '/v2/library/x/manifests/2' && l.status === 429));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const anonLog = (await readFile(anon.registryLogFile, 'utf8')).split('\n').filter((l) => /level=error.*toomanyrequests/.test(l));
      for (const l of anonLog) t.diagnostic(`anonymous proxy over the limit, log: ${l.slice(0, 300)}`);
      assert.equal(anonLog.length, 1);
    } finally {
      h.setBudget('anonymous', 4);
      h.resetCounts();
    }
  });

  test('dockerd pulling from the hub directly: manifest GETs spend the budget, then 429; HEAD is free', async (t) => {
    const h = hub!;
    const d = dockerd!;
    h.resetCounts();
    h.setBudget('anonymous', 2);
    try {
      const before = h.requests().length;
      for (const image of [x1, x2]) {
        const ref = `${h.host}/${image.repository}:${image.tag}`;
        const pulled = await d.docker(['pull', ref]);
        assert.equal(pulled.code, 0, `docker pull ${ref}: ${pulled.stdout}\n${pulled.stderr}`);
      }
      const sent = h
        .requests()
        .slice(before)
        .filter((l) => /\/manifests\//.test(l.path));
      t.diagnostic(`dockerd sent: ${JSON.stringify(sent.map((l) => `${l.method} ${l.path} ${l.status} ${l.identity}`))}`);
      assert.equal(h.manifestGets('anonymous'), 2);
      assert.equal(h.remaining('anonymous'), 0);

      // HEAD costs nothing, even with the budget spent.
      const token = await h.token('repository:library/x:pull');
      const head = await fetch(`${h.url}/v2/library/x/manifests/3`, {
        method: 'HEAD',
        headers: { authorization: `Bearer ${token}`, accept: MANIFEST_V2 },
      });
      assert.equal(head.status, 200);
      assert.deepEqual(ratelimit(head.headers), { limit: '2;w=21600', remaining: '0;w=21600', source: '127.0.0.1' });
      assert.equal(h.manifestGets('anonymous'), 2);

      // The third pull is refused.
      const refused = await d.docker(['pull', `${h.host}/${x3.repository}:${x3.tag}`]);
      t.diagnostic(`third pull: code ${refused.code}: ${refused.stderr.trim()}`);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /toomanyrequests: You have reached your pull rate limit/);
      assert.ok(
        h.requests().some((l) => l.method === 'GET' && l.path === `/v2/library/x/manifests/${x3.manifestDigest}` && l.status === 429),
      );
      assert.equal(h.manifestGets('anonymous'), 2);

      // A private image is refused without spending (the registry's 401 costs nothing).
      h.resetCounts();
      const privatePull = await d.docker(['pull', `${h.host}/${secret.repository}:${secret.tag}`]);
      t.diagnostic(`anonymous dockerd, private image: code ${privatePull.code}: ${privatePull.stderr.trim()}`);
      assert.notEqual(privatePull.code, 0);
      assert.match(privatePull.stderr, /pull access denied/);
      assert.equal(h.manifestGets(), 0);
    } finally {
      h.setBudget('anonymous', 4);
      h.resetCounts();
    }
  });
});
