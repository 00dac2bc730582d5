// Several runners on one host: self-hosted machines often run a few runner processes, each a job at a time, all
// sharing the host's one dockerd. Two jobs start at once, pull at once and end at once, each with its own RUNNER_TEMP
// and state: each gets its own mirror and work directory, both are served from the cache, and daemon.json comes back
// byte for byte with no mirror live. Their edits of daemon.json are serialised by a lock file beside it. Each job's
// pulls may go through the other's mirror (dockerd tries every mirror it lists): the job that comes second finds the
// first one's mirror in the config, and says so, with the way out.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { assertLeftAsItWas } from '../helpers/assertions.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import { hubMirror } from '../helpers/runner.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const DAEMON_JSON = '{\n  "log-level": "info",\n  "max-concurrent-downloads": 4\n}\n';
const IMAGES = ['alpha:1', 'beta:1', 'gamma:1', 'delta:1'];

describe('several runners on one host, one dockerd', { timeout: 600_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('pull-cache-shared-host');
    for (const [i, image] of IMAGES.entries()) {
      const [name, tag] = image.split(':');
      await pushImage(world.upstream.url, `library/${name}`, tag, [
        makeLayer(`shared-${name}`, [{ path: `opt/${name}.bin`, bytes: (i + 1) * 256 * 1024 }]),
      ]);
    }
    // The cache as the last run left it: every image pulled and saved.
    const prime = await world.runner('prime');
    await prime.job(prime.inputs({ prefetch: 'false' }), async () => {
      for (const image of IMAGES) await prime.pull(image);
    });
  });
  after(async () => {
    await world?.stop();
  });

  for (let round = 1; round <= 2; round++) {
    test(`round ${round}: two jobs at once, each with its own mirror and work directory; both served from the cache; the daemon left as it was`, async () => {
      const runner = await world.runner(`shared-${round}`, DAEMON_JSON);
      const inputs = runner.inputs({ prefetch: 'false' });
      const [a, b] = await Promise.all([runner.startJob(inputs), runner.startJob(inputs)]);
      try {
        const mirrors = [hubMirror(a.main).url, hubMirror(b.main).url];
        const warned = [a, b].flatMap((job, i) => job.main.warnings.map((w) => ({ job: i, w })));
        assert.equal(warned.length, 1, `one warning, from the job that came second: ${JSON.stringify(warned)}`);
        const { job, w } = warned[0];
        assert.ok(w.includes(`already names ${mirrors[1 - job]}, the mirror of another job`), w);
        assert.match(w, /a dockerd of its own, or set daemon-config: none/);
        assert.notEqual(mirrors[0], mirrors[1]);
        assert.notEqual(a.runnerTemp, b.runnerTemp);
        const live = ((await runner.dockerd.info()).RegistryConfig.Mirrors as string[]).map((m) => m.replace(/\/$/, ''));
        assert.deepEqual([...live].sort(), [...mirrors].sort(), "both jobs' mirrors live");
        const config = JSON.parse(await readFile(runner.dockerd.configFile, 'utf8')) as { 'registry-mirrors': string[] };
        assert.deepEqual([...config['registry-mirrors']].sort(), [...mirrors].sort(), 'both in the file');

        const fetched = await upstreamBlobFetches(world.upstream, () =>
          Promise.all([runner.pull(IMAGES[0]), runner.pull(IMAGES[1]), runner.pull(IMAGES[2]), runner.pull(IMAGES[3])]),
        );
        assert.deepEqual(fetched, [], 'no blob from Docker Hub');
      } finally {
        const [postA, postB] = await Promise.all([a.post(), b.post()]);
        assert.deepEqual([...postA.warnings, ...postB.warnings], []);
        // dockerd tries its mirrors in order: either job's mirror may have served either pull. Together, every one.
        const served = [postA.summary, postB.summary].flatMap((s) =>
          IMAGES.filter((image) => new RegExp(`\\| ${image} \\| \\d+ blobs?, [\\d.]+ [KM]iB \\| – \\|`).test(s)),
        );
        assert.deepEqual(served.sort(), [...IMAGES].sort(), 'every image from the cache');
        await assertLeftAsItWas(runner, DAEMON_JSON, a.main, postA, a.runnerTemp);
        await assertLeftAsItWas(runner, DAEMON_JSON, b.main, postB, b.runnerTemp);
      }
    });
  }
});
