// Thirty jobs over a rotating set of images (each job one new image, one dropped) with a small budget:
// the cache restores no more than the budget, uploads little more than the new layers, and every image
// still in use is served from the cache.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeLayer, pushImage, type Layer } from '../helpers/images.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const CYCLES = Number(process.env.GROWTH_CYCLES ?? 30);
const WINDOW = 3;
const BUDGET = 8 * MiB; // the base and about four images' own layers

let world: World;
const uniqueLayers: Layer[] = [];

before(async () => {
  world = await startWorld('pull-cache-growth');
  const base = makeLayer('growth-base', [{ path: 'usr/lib/base.bin', bytes: 1.25 * MiB }]);
  for (let i = 0; i < CYCLES + WINDOW; i++) {
    uniqueLayers.push(makeLayer(`growth-${i}`, [{ path: `opt/app${i}.bin`, bytes: 1.25 * MiB }]));
    await pushImage(world.upstream.url, `library/app${i}`, '1', [base, uniqueLayers[i]]);
  }
});
after(() => world?.stop());

test(
  `${CYCLES} jobs over a rotating set of images stay within budget, upload only what is new, and hit what is reused`,
  { timeout: 600_000 },
  async (t) => {
    const figures: { restored: number; uploaded: number; newLayer: number }[] = [];
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const window = Array.from({ length: WINDOW }, (_, k) => cycle + k);
      const runner = await world.runner(`cycle-${cycle}`);
      const entriesBefore = new Set(world.cache.entries().map((e) => e.key));
      let post!: { summary: string };
      const fetched = await upstreamBlobFetches(world.upstream, async () => {
        ({ post } = await runner.job(runner.inputs({ 'max-size': `${BUDGET}B` }), async () => {
          for (const i of window) await runner.pull(`app${i}:1`);
        }));
      });
      await runner.stop();
      const restored = Number(/Restored: `[^`]+`, \d+ blobs?, ([\d.]+) MiB/.exec(post.summary)?.[1] ?? 0) * MiB;
      const uploaded = world.cache
        .entries()
        .filter((e) => !entriesBefore.has(e.key))
        .reduce((s, e) => s + e.sizeBytes, 0);
      const newest = window[WINDOW - 1];
      figures.push({ restored, uploaded, newLayer: uniqueLayers[newest].size });

      assert.ok(restored <= BUDGET * 1.001, `cycle ${cycle}: restored ${restored} bytes, over the budget of ${BUDGET}`);
      if (cycle > 0) {
        // Images pulled by the previous job too are served from the cache; only the new one's layer is fetched.
        for (const i of window.slice(0, -1))
          assert.match(post.summary, new RegExp(`\\| app${i}:1 \\| \\d+ blobs?, [\\d.]+ MiB \\| – \\|`), `cycle ${cycle}: app${i} hit`);
        const fetchedLayers = new Set(fetched.map((l) => l.path.split('/blobs/')[1]));
        assert.ok(
          !uniqueLayers.slice(0, newest).some((l) => fetchedLayers.has(l.digest)),
          `cycle ${cycle}: no reused layer came from upstream`,
        );
        // The new layer, its config and manifest, and the index: a few kB over the layer.
        assert.ok(
          uploaded <= uniqueLayers[newest].size + 64 * 1024,
          `cycle ${cycle}: uploaded ${uploaded} bytes for a ${uniqueLayers[newest].size}-byte new layer`,
        );
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const steady = figures.slice(1);
    t.diagnostic(
      `budget ${(BUDGET / MiB).toFixed(1)} MiB; median restored per job ${(median(steady.map((f) => f.restored)) / MiB).toFixed(2)} MiB (max ${(Math.max(...steady.map((f) => f.restored)) / MiB).toFixed(2)})`,
    );
    t.diagnostic(
      `median uploaded per job ${(median(steady.map((f) => f.uploaded)) / MiB).toFixed(3)} MiB for a median new layer of ${(median(steady.map((f) => f.newLayer)) / MiB).toFixed(3)} MiB`,
    );
    t.diagnostic(`cache entries stored after ${CYCLES} jobs: ${world.cache.entries().length}`);
  },
);
