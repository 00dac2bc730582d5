// Smoke test of the real parts the other tests stand on: a Distribution registry standing in for Docker Hub,
// images made in Node and pushed to it, and a real dockerd pulling them and reloading its config on SIGHUP.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { makeLayer, pushImage, type PushedImage } from '../helpers/images.js';
import { waitFor } from '../helpers/process.js';
import { blobOf, startUpstream, type Upstream } from '../helpers/upstream.js';

describe('real parts', { timeout: 90_000 }, () => {
  let dir: string;
  let upstream: Upstream | undefined;
  let dockerd: Dockerd | undefined;
  let alpha: PushedImage;
  let beta: PushedImage;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'real-parts-'));
    [upstream, dockerd] = await Promise.all([startUpstream(join(dir, 'upstream')), startDockerd(join(dir, 'dockerd'))]);
    const base = makeLayer('base', [
      { path: 'usr/lib/base.bin', bytes: 3 * 1024 * 1024 },
      { path: 'etc/base.conf', bytes: 700 },
    ]);
    const alphaApp = makeLayer('alpha', [{ path: 'opt/alpha/app.bin', bytes: 1024 * 1024 + 17 }]);
    const betaApp = makeLayer('beta', [{ path: 'opt/beta/app.bin', bytes: 512 * 1024 }]);
    assert.equal(
      makeLayer('base', [
        { path: 'usr/lib/base.bin', bytes: 3 * 1024 * 1024 },
        { path: 'etc/base.conf', bytes: 700 },
      ]).digest,
      base.digest,
      'layers are deterministic',
    );
    alpha = await pushImage(upstream.url, 'library/alpha', '1', [base, alphaApp]);
    beta = await pushImage(upstream.url, 'someuser/beta', '1', [base, betaApp]);
  });

  after(async () => {
    await dockerd?.stop();
    await upstream?.stop();
    if (dir && !process.env.KEEP_TEST_DIRS) await rm(dir, { recursive: true, force: true });
  });

  test('dockerd pulls both images from the upstream; the shared base layer is fetched once', async (t) => {
    const d = dockerd!;
    t.diagnostic(`dockerd answered docker info ${d.startMs} ms after spawn`);
    const up = upstream!;
    for (const image of [alpha, beta]) {
      const ref = `${up.host}/${image.repository}:${image.tag}`;
      const pulled = await d.docker(['pull', ref]);
      assert.equal(pulled.code, 0, `docker pull ${ref}: ${pulled.stdout}\n${pulled.stderr}`);
      const inspected = await d.docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', ref]);
      assert.equal(inspected.code, 0, inspected.stderr);
      assert.deepEqual(
        JSON.parse(inspected.stdout),
        image.layers.map((l) => l.diffId),
      );
      const digests = await d.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', ref]);
      assert.ok(digests.stdout.includes(image.manifestDigest), digests.stdout);
    }

    // Every blob of both images was downloaded: wait for the last access-log lines, then count.
    const expected = new Set([...alpha.blobDigests, ...beta.blobDigests]);
    const fetched = async () => (await up.blobRequests()).filter((l) => l.status === 200).map((l) => blobOf(l.path)!);
    await waitFor(
      'all blobs in the access log',
      async () => new Set((await fetched()).map((b) => b.digest)).size === expected.size,
      5_000,
      50,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const gets = await fetched();
    const base = alpha.layers[0].digest;
    assert.deepEqual(
      gets.filter((b) => b.digest === base),
      [{ repository: 'library/alpha', digest: base }],
      'the shared base layer is fetched once, for the first image',
    );
    for (const digest of expected) assert.equal(gets.filter((b) => b.digest === digest).length, 1, `${digest} fetched once`);
    const manifestGets = (await up.accessLog()).filter((l) => l.method === 'GET' && /\/manifests\//.test(l.path));
    assert.ok(manifestGets.length >= 2, 'manifests were fetched');
  });

  test('dockerd reloads registry-mirrors from its config file on SIGHUP', async () => {
    const d = dockerd!;
    const before = await d.info();
    assert.deepEqual(before.RegistryConfig.Mirrors ?? [], []);
    await writeFile(d.configFile, JSON.stringify({ 'registry-mirrors': ['http://127.0.0.1:1'] }));
    process.kill(d.pid, 'SIGHUP');
    let mirrors: string[] = [];
    await waitFor(
      'registry-mirrors after SIGHUP',
      async () => {
        mirrors = (await d.info()).RegistryConfig.Mirrors ?? [];
        return mirrors.some((m) => m.replace(/\/$/, '') === 'http://127.0.0.1:1');
      },
      10_000,
      100,
    );
    assert.equal(d.process.ended(), false, 'dockerd still runs');
  });
});
