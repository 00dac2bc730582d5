// The post step takes the mirror out of the daemon's config, and has the daemon reload, before it stops the mirror:
// a port a config still names once nothing listens on it is any local process's to take, and to serve the shared
// dockerd whatever manifest it likes for a tag. Watched every ms or so through post, the mirror's port (the front's,
// while the cache restores behind it) answers as long as daemon.json names it. And another user locking the config's
// directory, as anyone who may read /etc/docker can, neither holds post up nor leaves the mirror in the file. When
// the mirror cannot be taken out, the warning names the file and the line to remove.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertLeftAsItWas } from '../helpers/assertions.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import { run, waitFor } from '../helpers/process.js';
import { NOBODY } from '../helpers/rootless.js';
import { hubMirror } from '../helpers/runner.js';
import { startWorld, type World } from '../helpers/world.js';

const DAEMON_JSON = '{\n  "max-concurrent-downloads": 2\n}\n';

/** Whether something accepts a connection on host:port. */
function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 500 });
    const done = (ok: boolean) => (socket.destroy(), resolve(ok));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

describe('post takes the mirror out of the clients before it stops it', { timeout: 600_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('pull-cache-post-order');
    await pushImage(world.upstream.url, 'library/alpha', '1', [makeLayer('post-order-alpha', [{ path: 'opt/a.bin', bytes: 512 * 1024 }])]);
    // The cache as the last run left it: the next job restores it behind the mirrors' front.
    const prime = await world.runner('prime');
    await prime.job(prime.inputs({ prefetch: 'false' }), () => prime.pull('alpha:1'));
  });
  after(async () => {
    await world?.stop();
  });

  test('watched through post: the port answers while daemon.json names it; once it does not, the daemon has let go too', async (t) => {
    const runner = await world.runner('watched', DAEMON_JSON);
    const job = await runner.startJob(runner.inputs({ prefetch: 'false' }));
    assert.deepEqual(job.main.warnings, []);
    const mirror = hubMirror(job.main);
    assert.ok(job.main.state.gate, 'the mirror is the front, the registry behind it');
    await runner.pull('alpha:1');

    const { hostname } = new URL(mirror.url);
    const seen = { samples: 0, named: 0, deadWhileNamed: 0 };
    let liveWhenFirstDead: Promise<string[]> | undefined;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        // The port first, then the file: a port found dead with the file read after still naming it is the window.
        const up = await answers(hostname, mirror.port);
        // Read at once (the thread pool's reads lag by ms on a busy machine): a look takes about 1 ms.
        const named = readFileSync(runner.dockerd.configFile, 'utf8').includes(mirror.url);
        seen.samples++;
        if (named) seen.named++;
        if (!up && named) seen.deadWhileNamed++;
        // Asked beside the watch, which goes on.
        if (!up) liveWhenFirstDead ??= runner.dockerd.info().then((info) => (info.RegistryConfig.Mirrors as string[] | null) ?? []);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const post = await job.post().finally(() => (watching = false));
    await watch;
    t.diagnostic(`${seen.samples} looks through post (${post.ms} ms), ${seen.named} with the file naming the mirror`);

    assert.equal(seen.deadWhileNamed, 0, `the port was dead while daemon.json named it in ${seen.deadWhileNamed} of ${seen.samples} looks`);
    assert.ok(seen.named > 0, 'the watch saw the file name the mirror during post');
    assert.ok(liveWhenFirstDead, 'the watch saw the port stop during post');
    assert.deepEqual(await liveWhenFirstDead, [], 'when the port stopped answering, the daemon had no mirror live');
    assert.deepEqual(post.warnings, []);
    await assertLeftAsItWas(runner, DAEMON_JSON, job.main, post, job.runnerTemp);
  });

  test("another user locks the config's directory through post: post does not wait, and takes the mirror out", async () => {
    const runner = await world.runner('locked-out', DAEMON_JSON);
    const configDir = dirname(runner.dockerd.configFile);
    // As /etc/docker: any user may read it, so any user may lock it.
    for (const dir of [world.dir, join(world.dir, 'runners'), configDir]) await chmod(dir, 0o755);
    const job = await runner.startJob(runner.inputs({ prefetch: 'false' }));
    const nobody = ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups'];
    const holder = spawn('setpriv', [...nobody, 'flock', '--exclusive', configDir, 'sleep', '300'], { stdio: 'ignore', detached: true });
    try {
      await waitFor(
        'nobody to hold the directory',
        async () => (await run('flock', ['--nonblock', configDir, 'true'])).code === 1,
        10_000,
        50,
      );
      const post = await job.post();
      assert.deepEqual(post.warnings, []);
      assert.ok(post.ms < 30_000, `post took ${post.ms} ms`);
      await assertLeftAsItWas(runner, DAEMON_JSON, job.main, post, job.runnerTemp);
    } finally {
      try {
        process.kill(-holder.pid!, 'SIGKILL');
      } catch {
        // ended already
      }
    }
  });

  test('a put-back that cannot be done (a lock never let go) is a warning naming the file and the line to remove', async () => {
    const runner = await world.runner('stuck-lock', DAEMON_JSON);
    const job = await runner.startJob(runner.inputs({ prefetch: 'false' }));
    const mirror = hubMirror(job.main);
    // Root's, as a job whose post hangs while it holds the lock: only root (or the daemon's user) can.
    const lockFile = join(dirname(runner.dockerd.configFile), '.pull-cache-action.lock');
    const holder = spawn('flock', ['--exclusive', lockFile, 'sleep', '300'], { stdio: 'ignore', detached: true });
    try {
      await waitFor('the lock to be held', async () => (await run('flock', ['--nonblock', lockFile, 'true'])).code === 1, 10_000, 50);
      const post = await job.post();
      assert.equal(post.exitCode, 0, post.stdout);
      const file = runner.dockerd.configFile;
      assert.equal(post.warnings.length, 1, post.warnings.join('\n'));
      assert.ok(
        post.warnings[0].includes(`${file} still names ${mirror.url}`) &&
          post.warnings[0].includes(
            `remove the line "${mirror.url}" from its "registry-mirrors" and reload dockerd (sudo kill -HUP ${runner.dockerd.pid})`,
          ),
        post.warnings[0],
      );
    } finally {
      try {
        process.kill(-holder.pid!, 'SIGKILL');
      } catch {
        // ended already
      }
    }
  });
});
