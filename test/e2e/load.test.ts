// Load: eight concurrent pulls of ten images (sharing base layers) through a cold cache, then a warm one.
// No pull fails, the warm job fetches nothing from upstream, and the registry's memory and open files stay bounded.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { hubMirror } from '../helpers/runner.js';
import { makeLayer, pushImage, type Layer } from '../helpers/images.js';
import { startWorld, upstreamBlobFetches, type Runner, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const CONCURRENCY = 8;
let world: World;
const images: string[] = [];
const repositoriesOf = new Map<string, number>();

before(async () => {
  world = await startWorld('pull-cache-load');
  const bases = [
    makeLayer('load-base-a', [{ path: 'usr/a.bin', bytes: 3 * MiB }]),
    makeLayer('load-base-b', [{ path: 'usr/b.bin', bytes: 2 * MiB }]),
  ];
  for (let i = 0; i < 10; i++) {
    const layers: Layer[] = [
      ...(i < 5 ? [bases[0]] : i < 8 ? [bases[1]] : []),
      makeLayer(`load-${i}`, [{ path: `opt/app${i}.bin`, bytes: MiB + i * 4096 }]),
    ];
    for (const l of layers) repositoriesOf.set(l.digest, (repositoriesOf.get(l.digest) ?? 0) + 1);
    await pushImage(world.upstream.url, `library/load${i}`, '1', layers);
    images.push(`load${i}:1`);
  }
});
after(() => world?.stop());

/** Pulls every image, CONCURRENCY at a time, sampling the registry's memory and open files meanwhile. */
async function pullAllConcurrently(runner: Runner, registryPid: number) {
  const samples: { rssKiB: number; fds: number }[] = [];
  let pulling = true;
  const sampler = (async () => {
    for (let i = 0; pulling && i < 3000; i++) {
      const status = await readFile(`/proc/${registryPid}/status`, 'utf8').catch(() => '');
      const fds = (await readdir(`/proc/${registryPid}/fd`).catch(() => [])).length;
      samples.push({ rssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0), fds });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const queue = [...images];
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let image = queue.shift(); image; image = queue.shift()) {
        const pulled = await runner.dockerd.docker(['pull', image], { timeoutMs: 120_000 });
        if (pulled.code !== 0) failures.push(`${image}: ${pulled.stderr}`);
      }
    }),
  );
  pulling = false;
  await sampler;
  return { failures, peakRssMiB: Math.max(...samples.map((s) => s.rssKiB)) / 1024, peakFds: Math.max(...samples.map((s) => s.fds)) };
}

test('eight concurrent pulls of ten images through a cold then a warm cache', { timeout: 300_000 }, async (t) => {
  for (const phase of ['cold', 'warm'] as const) {
    const runner = await world.runner(`load-${phase}`);
    let figures!: Awaited<ReturnType<typeof pullAllConcurrently>>;
    let summary = '';
    const fetched = await upstreamBlobFetches(world.upstream, async () => {
      const { post } = await runner.job(runner.inputs(), async (main) => {
        figures = await pullAllConcurrently(runner, hubMirror(main).pid);
      });
      summary = post.summary;
    });
    assert.deepEqual(figures.failures, [], `${phase}: no pull failed`);
    const perDigest = new Map<string, number>();
    for (const l of fetched) perDigest.set(l.path.split('/blobs/')[1], (perDigest.get(l.path.split('/blobs/')[1]) ?? 0) + 1);
    const layerFetches = [...perDigest].filter(([d]) => repositoriesOf.has(d));
    t.diagnostic(
      `${phase}: peak registry RSS ${figures.peakRssMiB.toFixed(1)} MiB, peak open files ${figures.peakFds}, upstream blob GETs ${fetched.length} for ${perDigest.size} blobs (layers: ${layerFetches.map(([, n]) => n).join(' ')})`,
    );
    assert.ok(figures.peakRssMiB < 512, `${phase}: registry RSS ${figures.peakRssMiB} MiB`);
    assert.ok(figures.peakFds < 512, `${phase}: registry open files ${figures.peakFds}`);
    if (phase === 'cold') {
      // Distribution 2.8 fetches a missed blob twice, and does not share an in-flight fetch between repositories.
      for (const [digest, n] of layerFetches) assert.ok(n <= 2 * repositoriesOf.get(digest)!, `${digest} fetched ${n} times`);
    } else {
      assert.deepEqual(fetched, [], 'warm: nothing from upstream');
      assert.match(summary, /Hit rate: 100%/);
    }
  }
});
