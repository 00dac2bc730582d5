// A daemon the action may not touch, as on actions-runner-controller's dind runners: dockerd runs in a sidecar
// container of the runner pod, started by the pod spec with --registry-mirror=http://127.0.0.1:PORT (the pod shares
// one network namespace), and the runner can neither edit its config nor signal it. With daemon-config: none and
// that port, the action starts its mirror there and touches no daemon. While no job runs, nothing answers on the
// port and dockerd goes to Docker Hub itself. Docker Hub is the stand-in under its real names (hub-namespace.ts),
// so that fallback is dockerd's real one.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { makeLayer } from '../helpers/images.js';
import { freePort } from '../helpers/process.js';
import { hubMirror } from '../helpers/runner.js';
import { startWorld, upstreamBlobFetches, type Runner, type World } from '../helpers/world.js';

const DAEMON_JSON = '{\n\t"log-level": "info"\n}\n';

describe('daemon-config: none, a dind sidecar started with --registry-mirror', { timeout: 300_000 }, () => {
  let world: World;
  let port: number;
  let mirror: string;

  before(async () => {
    port = await freePort();
    mirror = `http://127.0.0.1:${port}`;
    world = await startWorld('pull-cache-dind', { hubNamespace: true, dockerdArgs: [`--registry-mirror=${mirror}`] });
    await world.hub!.pushImage('library/alpine', '1', [makeLayer('dind-alpine', [{ path: 'bin/sh', bytes: 512 * 1024 }])]);
    await world.hub!.pushImage('library/busybox', '1', [makeLayer('dind-busybox', [{ path: 'bin/busybox', bytes: 256 * 1024 }])]);
  });
  after(async () => {
    await world?.stop();
  });

  /** What must hold of the sidecar's daemon after the job: its file, its live mirror (the flag's) and no reload. */
  async function assertUntouched(runner: Runner, before: { ino: number; mtimeMs: number }): Promise<void> {
    const s = await stat(runner.dockerd.configFile);
    assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), DAEMON_JSON);
    assert.deepEqual({ ino: s.ino, mtimeMs: s.mtimeMs }, before, 'daemon.json was not written');
    assert.doesNotMatch(
      await readFile(runner.dockerd.logFile, 'utf8'),
      /Reloaded configuration|unable to configure the Docker daemon with file/,
      'dockerd was not signalled',
    );
    assert.deepEqual((await runner.dockerd.info()).RegistryConfig.Mirrors, [`${mirror}/`], "the flag's mirror, as the pod spec gave it");
  }

  async function sidecarJob(name: string, image: string) {
    const runner = await world.runner(name, DAEMON_JSON);
    const { ino, mtimeMs } = await stat(runner.dockerd.configFile);
    let fetched = -1;
    const { main, post } = await runner.job(runner.inputs({ 'daemon-config': 'none', port: String(port) }), async () => {
      fetched = (await upstreamBlobFetches(world.upstream, () => runner.pull(image))).length;
    });
    await assertUntouched(runner, { ino, mtimeMs });
    assert.equal(main.outputs.mirror, mirror);
    assert.equal(hubMirror(main).port, port);
    assert.deepEqual([...main.warnings, ...post.warnings], []);
    assert.match(
      main.stdout,
      new RegExp(`daemon-config is none: dockerd already pulls Docker Hub images through ${mirror.replace(/\./g, '\\.')}`),
    );
    return { runner, main, post, fetched };
  }

  test('no job running: nothing answers on the port, and dockerd pulls from Docker Hub itself', async () => {
    const runner = await world.runner('idle', DAEMON_JSON);
    assert.ok((await upstreamBlobFetches(world.upstream, () => runner.pull('alpine:1'))).length > 0, 'Docker Hub served the pull');
  });

  test('cold: the mirror comes up on the port the sidecar names; the pull goes through it to Docker Hub and is saved', async () => {
    const { post, fetched } = await sidecarJob('cold', 'alpine:1');
    assert.ok(fetched > 0);
    assert.match(post.summary, /\| alpine:1 \| – \| 2 blobs, /);
    assert.match(post.summary, /Saved: \d+ new entr/);
  });

  test('warm: a fresh sidecar gets every blob from the cache; after post, dockerd goes to Docker Hub itself again', async () => {
    const { runner, post, fetched } = await sidecarJob('warm', 'alpine:1');
    assert.equal(fetched, 0, 'no blob from Docker Hub');
    assert.match(post.summary, /Hit rate: 100% of bytes served/);
    assert.ok(
      (await upstreamBlobFetches(world.upstream, () => runner.pull('busybox:1'))).length > 0,
      'the mirror is gone, Docker Hub served the pull',
    );
  });

  test('a daemon that does not name the mirror: a warning with the flag to add, no prefetch, nothing touched', async () => {
    const runner = await world.runner('unnamed', DAEMON_JSON);
    const { ino, mtimeMs } = await stat(runner.dockerd.configFile);
    const { main, post } = await runner.job(runner.inputs({ 'daemon-config': 'none' }));
    await assertUntouched(runner, { ino, mtimeMs });
    const url = hubMirror(main).url;
    assert.notEqual(url, mirror, 'a free port, not the one the daemon names');
    assert.deepEqual(main.warnings, [
      `pull-cache-action: daemon-config is none, and the dockerd at ${runner.dockerd.host} does not name ${url} among its registry-mirrors: its pulls go around the cache. Start it with --registry-mirror=${url} (and set port).`,
    ]);
    assert.equal(main.state.prefetch ?? '', '', 'no prefetch through a daemon that would pull around the cache');
    assert.equal(post.exitCode, 0);
  });
});
