// Docker Hub under its real names with no internet (helpers/hub-namespace.ts): in a network namespace,
// registry-1.docker.io and auth.docker.io are the hub stand-in over TLS. Covers the two paths only the real names
// reach: dockerd's own Docker Hub endpoint (no mirror, or a mirror that fails: dockerd falls back to
// registry-1.docker.io) and the action's default `upstream`.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { AUTH_HOST, REGISTRY_HOST } from '../helpers/hub-namespace.js';
import { makeLayer, type PushedImage } from '../helpers/images.js';
import type { StepResult } from '../helpers/runner.js';
import { blobOf, type AccessLogLine } from '../helpers/upstream.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;

/** Blob GETs of the stand-in's registry after the first `from` lines, as repository@digest. */
async function blobGetsSince(world: World, from: number): Promise<string[]> {
  await new Promise((resolve) => setTimeout(resolve, 200)); // the access log line follows the response
  return (await world.upstream.blobRequests()).slice(from).map((l: AccessLogLine) => {
    const b = blobOf(l.path)!;
    return `${b.repository}@${b.digest}`;
  });
}

describe('Docker Hub under its real names, in a network namespace', { timeout: 120_000 }, () => {
  let world: World;
  let alpine: PushedImage;
  let busybox: PushedImage;
  let app: PushedImage;
  const daemons: Dockerd[] = [];

  before(async () => {
    world = await startWorld('hub-namespace', { hubNamespace: true });
    const hub = world.hub!;
    const base = makeLayer('hubns-base', [{ path: 'usr/lib/base.bin', bytes: 1 * MiB }]);
    [alpine, busybox, app] = await Promise.all([
      hub.pushImage('library/alpine', '1', [makeLayer('hubns-alpine', [{ path: 'bin/sh', bytes: 512 * 1024 }])]),
      hub.pushImage('library/busybox', '1', [makeLayer('hubns-busybox', [{ path: 'bin/busybox', bytes: 512 * 1024 }])]),
      hub.pushImage('someuser/app', '2', [base, makeLayer('hubns-app', [{ path: 'opt/app.bin', bytes: 1 * MiB }])]),
    ]);
  });
  after(async () => {
    await Promise.allSettled(daemons.map((d) => d.stop()));
    await world?.stop();
  });

  const daemon = async (name: string, config: unknown): Promise<Dockerd> => {
    const configFile = join(world.dir, `${name}.json`);
    await writeFile(configFile, `${JSON.stringify(config)}\n`);
    const d = await startDockerd(join(world.dir, name), { configFile, netns: world.hubNamespace });
    daemons.push(d);
    return d;
  };

  test('(a) a dockerd inside with no mirror pulls alpine:1 from registry-1.docker.io, the stand-in', async () => {
    const d = await daemon('no-mirror', {});
    const before = (await world.upstream.blobRequests()).length;
    const tokensBefore = world.hub!.tokenRequests().length;
    const pulled = await d.docker(['pull', 'alpine:1'], { timeoutMs: 60_000 });
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stdout, new RegExp(`Digest: ${alpine.manifestDigest}`));
    assert.match(pulled.stdout, /docker\.io\/library\/alpine:1/);
    assert.deepEqual((await blobGetsSince(world, before)).sort(), alpine.blobDigests.map((g) => `library/alpine@${g}`).sort());
    const tokens = world.hub!.tokenRequests().slice(tokensBefore);
    assert.ok(
      tokens.some((t) => t.status === 200 && t.scopes.includes('repository:library/alpine:pull')),
      JSON.stringify(tokens),
    );
    const hosts = new Set(world.hubNamespace!.tlsRequests().map((r) => r.host));
    assert.ok(hosts.has(REGISTRY_HOST) && hosts.has(AUTH_HOST), [...hosts].join(', '));
    await d.stop();
  });

  test('(b) a dockerd whose mirror is dead falls back to Docker Hub, the stand-in', async () => {
    const deadMirror = 'http://127.0.0.1:9'; // inside the namespace nothing listens there
    const d = await daemon('dead-mirror', { 'registry-mirrors': [deadMirror] });
    assert.deepEqual((await d.info()).RegistryConfig.Mirrors, [`${deadMirror}/`]);
    const before = (await world.upstream.blobRequests()).length;
    const frontBefore = world.hub!.requests().length;
    const pulled = await d.docker(['pull', 'busybox:1'], { timeoutMs: 60_000 });
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stdout, new RegExp(`Digest: ${busybox.manifestDigest}`));
    assert.deepEqual((await blobGetsSince(world, before)).sort(), busybox.blobDigests.map((g) => `library/busybox@${g}`).sort());
    const manifests = world
      .hub!.requests()
      .slice(frontBefore)
      .filter((r) => r.path.startsWith('/v2/library/busybox/manifests/'));
    assert.ok(
      manifests.some((r) => r.status === 200 && r.identity === 'anonymous'),
      JSON.stringify(manifests),
    );
    const log = await readFile(d.logFile, 'utf8');
    assert.match(
      log,
      /Attempting next endpoint for pull after error: Get \\"http:\/\/127\.0\.0\.1:9\/v2\/\\"/,
      'dockerd tried the mirror first',
    );
    await d.stop();
  });

  test('(c) the action with the default upstream: a cold job, then a warm job served from the cache', async () => {
    const ns = world.hubNamespace!;
    const blobsViaTls = (from: number) =>
      ns
        .tlsRequests()
        .slice(from)
        .filter((r) => r.host === REGISTRY_HOST && r.method === 'GET' && blobOf(r.path)?.repository === 'someuser/app');
    const tlsBefore = ns.tlsRequests().length;
    const cold = await world.runner('cold');
    const coldInputs = cold.inputs();
    assert.ok(!('upstream' in coldInputs), 'upstream is left at its default');
    const first = await cold.job(coldInputs, async (main) => {
      assert.equal(main.exitCode, 0, main.stdout + main.stderr);
      assert.deepEqual(main.warnings, [], main.stdout);
      await cold.pull('someuser/app:2');
    });
    assert.match(first.main.stdout, /proxying https:\/\/registry-1\.docker\.io/);
    // The action's registry fetched the layers from registry-1.docker.io:443 with tokens from auth.docker.io:443.
    assert.deepEqual([...new Set(blobsViaTls(tlsBefore).map((r) => blobOf(r.path)!.digest))].sort(), [...app.blobDigests].sort());
    assert.ok(
      ns
        .tlsRequests()
        .slice(tlsBefore)
        .some((r) => r.host === AUTH_HOST && r.path === '/token' && r.status === 200),
    );
    assert.equal(first.post.exitCode, 0, first.post.stdout);
    assert.deepEqual(first.post.warnings, []);
    assert.match(first.post.summary, /\| someuser\/app:2 \| – \| 3 blobs, 2\.0 MiB \|/);
    assert.match(first.post.summary, /Hit rate: 0% of bytes served \(0 of 3 blobs\)/);
    assert.match(first.post.summary, /Docker Hub pull quota: \d+ of 100 pulls left/);
    assert.ok(
      world.cache.entries().some((e) => e.key.includes('-index-')),
      'the cold job saved an index',
    );
    await cold.stop();

    const warm = await world.runner('warm');
    let second!: { main: StepResult; post: StepResult };
    const tlsBeforeWarm = ns.tlsRequests().length;
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      second = await warm.job(warm.inputs(), async (main) => {
        assert.equal(main.exitCode, 0, main.stdout + main.stderr);
        await warm.pull('someuser/app:2');
      });
    });
    assert.match(second.main.outputs['restored-key'], /^pull-cache-index-linux-/);
    assert.deepEqual(fetched, [], 'the stand-in served no blob during the warm job');
    assert.deepEqual(blobsViaTls(tlsBeforeWarm), [], 'no blob GET reached registry-1.docker.io');
    assert.match(second.post.summary, /Hit rate: 100% of bytes served \(3 of 3 blobs\)/);
    assert.match(second.post.summary, /\| someuser\/app:2 \| 3 blobs, 2\.0 MiB \| – \|/);
    assert.deepEqual(second.post.warnings, []);
  });
});
