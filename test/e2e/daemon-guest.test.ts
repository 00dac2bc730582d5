// The action is a guest in the Docker daemon's config: what the job does to daemon.json while the action is up
// stays, what the action added leaves, and jobs sharing one dockerd (a self-hosted host) each take back only
// their own mirror, from the file and from the live daemon.
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { makeLayer, pushImage } from '../helpers/images.js';
import { assertLeftAsItWas } from '../helpers/assertions.js';
import { hubMirror, type StepResult } from '../helpers/runner.js';
import { startWorld, type Runner, type StartedJob, type World } from '../helpers/world.js';

// Tabs, not the two spaces the action would write: what comes back must be the user's own bytes.
const DAEMON_JSON = '{\n\t"max-concurrent-downloads": 3,\n\t"debug": false\n}\n';

const liveMirrors = async (runner: Runner): Promise<string[]> => (await runner.dockerd.info()).RegistryConfig.Mirrors ?? [];
const live = (url: string) => `${url}/`; // docker info lists mirrors with a trailing slash

describe("daemon.json is the user's: the action takes out only what it put in", { timeout: 600_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('pull-cache-daemon-guest');
    await pushImage(world.upstream.url, 'library/alpha', '1', [makeLayer('g-alpha', [{ path: 'opt/alpha.bin', bytes: 256 * 1024 }])]);
  });
  after(async () => {
    await world?.stop();
  });

  test('a job step adds insecure-registries to daemon.json: after post the edit is kept, the mirror gone from file and daemon', async () => {
    const runner = await world.runner('step-edits', DAEMON_JSON);
    let edited = '';
    const { main, post } = await runner.job(runner.inputs(), async () => {
      // What a step like `jq '."insecure-registries" += [...]' | sudo tee; sudo kill -HUP dockerd` does.
      const config = JSON.parse(await readFile(runner.dockerd.configFile, 'utf8')) as Record<string, unknown>;
      edited = `${JSON.stringify({ ...config, 'insecure-registries': ['registry.internal:5000'] }, null, 4)}\n`;
      await writeFile(runner.dockerd.configFile, edited);
      process.kill(runner.dockerd.pid, 'SIGHUP');
      await runner.pull('alpha:1');
    });
    assert.ok(edited.includes(hubMirror(main).url), 'the step saw the mirror in the file');
    const expected = `${JSON.stringify({ 'max-concurrent-downloads': 3, debug: false, 'insecure-registries': ['registry.internal:5000'] }, null, 4)}\n`;
    assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), expected, "the step's file, byte for byte, without the mirror");
    const info = await runner.dockerd.info();
    assert.deepEqual(info.RegistryConfig.Mirrors ?? [], [], 'no mirror live');
    assert.equal(info.RegistryConfig.IndexConfigs['registry.internal:5000']?.Secure, false, "the step's insecure registry is live");
    assert.equal(post.exitCode, 0, post.stdout);
    assert.deepEqual(post.warnings, []);
    assert.deepEqual(await readdir(runner.runnerTemp), []);
  });

  test('dockerd refuses the reload: main puts daemon.json back itself, and post does not touch it or reload again', async () => {
    const conflicted = await startWorld('pull-cache-daemon-refused', { dockerdArgs: ['--registry-mirror=https://mirror.example.invalid'] });
    try {
      const runner = await conflicted.runner('reload-refused', DAEMON_JSON);
      // dockerd logs each reload it is asked for; refused ones as a conflict between flag and file.
      const reloads = async () =>
        (await readFile(runner.dockerd.logFile, 'utf8')).match(/unable to configure the Docker daemon with file|Reloaded configuration/g)
          ?.length ?? 0;
      let afterMain!: { bytes: string; ino: number; mtimeMs: number; reloads: number };
      const { main, post } = await runner.job(runner.inputs(), async () => {
        const s = await stat(runner.dockerd.configFile);
        afterMain = { bytes: await readFile(runner.dockerd.configFile, 'utf8'), ino: s.ino, mtimeMs: s.mtimeMs, reloads: await reloads() };
      });
      assert.match(
        main.warnings.join('\n'),
        /timed out after 15 s waiting for the mirror to be listed by docker info after reloading dockerd/,
      );
      assert.equal(afterMain.bytes, DAEMON_JSON, 'main put the file back');
      assert.equal(afterMain.reloads, 2, 'main reloaded twice: its mirror, then the original');
      const s = await stat(runner.dockerd.configFile);
      assert.equal(await readFile(runner.dockerd.configFile, 'utf8'), DAEMON_JSON);
      assert.deepEqual(
        { ino: s.ino, mtimeMs: s.mtimeMs },
        { ino: afterMain.ino, mtimeMs: afterMain.mtimeMs },
        'post did not write the file',
      );
      assert.equal(await reloads(), afterMain.reloads, 'post did not reload dockerd');
      assert.deepEqual(await liveMirrors(runner), ['https://mirror.example.invalid/']);
      assert.equal(post.exitCode, 0, post.stdout);
      assert.doesNotMatch(post.warnings.join('\n'), /restoring/);
    } finally {
      await conflicted.stop();
    }
  });

  for (const order of [
    ['A', 'B'],
    ['B', 'A'],
  ] as const) {
    test(`two jobs share one dockerd, post ${order.join(' then ')}: each takes out only its own mirror, and the file comes back byte for byte`, async () => {
      const runner = await world.runner(`shared-${order.join('')}`, DAEMON_JSON);
      const jobs: Partial<Record<'A' | 'B', StartedJob>> = {};
      const posts: Partial<Record<'A' | 'B', StepResult>> = {};
      const post = async (job: 'A' | 'B') => (posts[job] ??= await jobs[job]!.post());
      try {
        jobs.A = await runner.startJob(runner.inputs());
        jobs.B = await runner.startJob(runner.inputs());
        const mirror = { A: hubMirror(jobs.A.main).url, B: hubMirror(jobs.B.main).url };
        assert.notEqual(mirror.A, mirror.B);
        assert.deepEqual(await liveMirrors(runner), [live(mirror.B), live(mirror.A)], "both mirrors live, the later job's first");
        await runner.pull('alpha:1');

        const [first, second] = order;
        const firstPost = await post(first);
        assert.equal(firstPost.exitCode, 0, firstPost.stdout);
        assert.deepEqual(firstPost.warnings, []);
        const config = await readFile(runner.dockerd.configFile, 'utf8');
        assert.deepEqual(
          JSON.parse(config)['registry-mirrors'],
          [mirror[second]],
          `job ${second}'s mirror stays in the file while it runs`,
        );
        assert.deepEqual(
          await liveMirrors(runner),
          [live(mirror[second])],
          `job ${second}'s mirror stays live while it runs, ${first}'s is gone`,
        );

        const secondPost = await post(second);
        assert.deepEqual(secondPost.warnings, []);
        await assertLeftAsItWas(runner, DAEMON_JSON, jobs[second]!.main, secondPost, jobs[second]!.runnerTemp);
        await assertLeftAsItWas(runner, DAEMON_JSON, jobs[first]!.main, firstPost, jobs[first]!.runnerTemp);
      } finally {
        // As the runner does (post-if: always()): every job that started gets its post, whatever failed above.
        for (const job of order) if (jobs[job]) await post(job);
      }
    });
  }
});
