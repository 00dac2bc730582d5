// What each extra registry in `registries` costs the main and post steps when the job pulls nothing from it:
// one more probe of its upstream, one more registry process started (all at once) and stopped. Jobs alternate
// between docker.io alone and docker.io with three more registries (stand-ins under their real names in a
// network namespace, as in test/e2e/registries.test.ts), with nothing restored and nothing saved, so the difference
// is the mirrors alone. Called by bench.ts; returns its section of the report.
import type { StepResult } from '../test/helpers/runner.js';
import { mirrorsOf } from '../test/helpers/runner.js';
import { isRunning } from '../test/helpers/process.js';
import { startWorld } from '../test/helpers/world.js';

const EXTRA = ['ghcr.io', 'quay.io', 'registry.k8s.io'];

interface StepTimes {
  main: number;
  post: number;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

export async function benchRegistries(reps: number, progress: (line: string) => void): Promise<string> {
  const world = await startWorld('bench-registries', { hubNamespace: true, registries: EXTRA });
  const samples: Record<'one' | 'four', StepTimes[]> = { one: [], four: [] };
  try {
    const runner = await world.runner('registries');
    let job = 0;
    const measure = async (registries: string[]): Promise<StepTimes> => {
      const { main, post } = await runner.job(
        runner.inputs({ registries: registries.join(' '), 'cache-key': `bench-registries-${++job}`, save: 'false', prefetch: 'false' }),
      );
      check(main, post, registries.length);
      return { main: main.ms, post: post.ms };
    };
    // One job first, unmeasured: the registry download into the tool cache.
    await measure(['docker.io']);
    for (let rep = 1; rep <= reps; rep++) {
      samples.one.push(await measure(['docker.io']));
      samples.four.push(await measure(['docker.io', ...EXTRA]));
      progress(
        `registries, rep ${rep}/${reps}: main ${samples.one.at(-1)!.main} / ${samples.four.at(-1)!.main} ms, post ${samples.one.at(-1)!.post} / ${samples.four.at(-1)!.post} ms (docker.io alone / ${EXTRA.length} more)`,
      );
    }
  } finally {
    await world.stop();
  }
  const m = (v: 'one' | 'four', f: (t: StepTimes) => number) => median(samples[v].map(f));
  const perExtra = (f: (t: StepTimes) => number) => (m('four', f) - m('one', f)) / EXTRA.length;
  const s = (ms: number) => (ms / 1000).toFixed(3);
  let out = `\n## Extra registries (listed, nothing pulled from them)\n\n`;
  out += `Main and post step of a job with \`registries: docker.io\` and with \`docker.io ${EXTRA.join(' ')}\`, nothing restored or saved, `;
  out += `alternating on one runner; medians of ${reps} job(s) each. Per extra registry: the difference over ${EXTRA.length}.\n\n`;
  out += '| Step | docker.io alone (s) | with 3 more (s) | added per extra registry (s) | ratio |\n| --- | ---: | ---: | ---: | ---: |\n';
  for (const [name, f] of [
    ['main', (t: StepTimes) => t.main],
    ['post', (t: StepTimes) => t.post],
  ] as const) {
    out += `| ${name} | ${s(m('one', f))} | ${s(m('four', f))} | ${s(perExtra(f))} | ${(m('four', f) / m('one', f)).toFixed(2)}× |\n`;
  }
  return out;
}

/** Each job set up a mirror per registry, without a warning, and left none running. */
function check(main: StepResult, post: StepResult, registries: number): void {
  const mirrors = mirrorsOf(main);
  const problems = [...main.warnings, ...post.warnings];
  if (mirrors.length !== registries || problems.length)
    throw new Error(`the job set up ${mirrors.length} of ${registries} mirrors: ${problems.join('; ')}`);
  const running = mirrors.filter((m) => isRunning(m.pid));
  if (running.length) throw new Error(`post left ${running.map((m) => m.registry).join(', ')} running`);
}
