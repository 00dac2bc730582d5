// The local demo: the action end to end on this machine, as two jobs on two fresh runners. The first pulls
// through an empty cache and saves it; the second restores it and is served from it. Prints each job's
// report and how long its steps and pulls took. Upstream, cache service and dockerd are the tests' real parts.
import { makeLayer, pushImage } from './helpers/images.js';
import { startWorld, type Runner } from './helpers/world.js';

const MiB = 1024 * 1024;
const IMAGES = ['postgres:16', 'redis:7', 'someorg/api:1.4'];

const world = await startWorld('pull-cache-demo');
try {
  console.log(`Upstream standing in for Docker Hub: ${world.upstream.url}`);
  const base = makeLayer('debian-base', [
    { path: 'usr/lib/x86_64-linux-gnu/libbase.so', bytes: 48 * MiB },
    { path: 'etc/debian_version', bytes: 5 },
  ]);
  await pushImage(world.upstream.url, 'library/postgres', '16', [
    base,
    makeLayer('postgres', [{ path: 'usr/lib/postgresql/16/bin/postgres', bytes: 40 * MiB }]),
  ]);
  await pushImage(world.upstream.url, 'library/redis', '7', [
    base,
    makeLayer('redis', [{ path: 'usr/local/bin/redis-server', bytes: 12 * MiB }]),
  ]);
  await pushImage(world.upstream.url, 'someorg/api', '1.4', [
    base,
    makeLayer('api-deps', [{ path: 'app/node_modules.bin', bytes: 30 * MiB }]),
    makeLayer('api', [{ path: 'app/dist.bin', bytes: 2 * MiB }]),
  ]);

  const job = async (name: string, runner: Runner) => {
    const pulls: string[] = [];
    const { main, post } = await runner.job(runner.inputs(), async (main) => {
      if (main.exitCode !== 0 || main.warnings.length) throw new Error(`main step failed:\n${main.stdout}`);
      for (const image of IMAGES) {
        const started = Date.now();
        await runner.pull(image);
        pulls.push(`${image} ${((Date.now() - started) / 1000).toFixed(2)} s`);
      }
    });
    console.log(`\n===== ${name} =====`);
    console.log(
      `main step: ${(main.ms / 1000).toFixed(2)} s (mirror ${main.outputs.mirror}, restored key: ${main.outputs['restored-key'] || 'none'})`,
    );
    console.log(`docker pull: ${pulls.join(', ')}`);
    console.log(`post step: ${(post.ms / 1000).toFixed(2)} s`);
    console.log(`\n${post.summary}`);
    for (const w of [...main.warnings, ...post.warnings]) console.log(`warning: ${w}`);
  };
  await job('Job 1: cold cache', await world.runner('cold'));
  await job('Job 2: warm cache, fresh runner', await world.runner('warm'));
  console.log(
    `Cache entries stored: ${world.cache.entries().length}, ${(world.cache.entries().reduce((s, e) => s + e.sizeBytes, 0) / MiB).toFixed(1)} MiB`,
  );
} finally {
  await world.stop();
}
