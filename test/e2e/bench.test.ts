// The benchmark keeps working: `npm run bench -- --quick` (small images, one repetition) runs every variant
// against the real parts, and the other-work scenario (2 s of other work), and prints its tables.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { REGISTRY_3, REGISTRY_UNDER_TEST } from '../helpers/registry-under-test.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('the quick benchmark runs every variant and prints the results, ratios, the other-work scenario and the cost of extra registries', { timeout: 420_000 }, async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number | string | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/bench.ts', '--quick'], { cwd: ROOT, timeout: 360_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number | string }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  assert.equal(code, 0, `bench failed:\n${stderr.slice(-4000)}`);
  for (const heading of ['## Workload (quick)', '## Results', '## Ratios', "## The action's own overhead", '## Where the time goes']) {
    assert.ok(stdout.includes(heading), `prints ${heading}:\n${stdout}`);
  }
  const seconds = (label: string) => {
    const row = stdout.split('\n').find((l) => l.startsWith(`| ${label}`));
    assert.ok(row, `a row for ${label}:\n${stdout}`);
    return Number(row.split('|')[2]);
  };
  for (const variant of ['direct', 'floor', 'save/load, warm', 'save/load, changed', 'this action, cold job', 'this action, warm job', 'this action, changed job']) {
    const ready = seconds(variant);
    assert.ok(ready > 0 && ready < 120, `${variant}: images ready in ${ready} s`);
  }
  assert.match(stdout, /\| warm \/ floor \(images ready\) \| \d+\.\d\d× \|/);
  assert.match(stdout, /\| changed job upload bytes, ours \/ save-load \| \d+\.\d\d× /);
  // Bytes, not timings: 3.x fetches each missed blob from the upstream once, 2.8 twice.
  const ratio = (label: string) => Number(new RegExp(`\\| ${label.replace(/[.()/]/g, '\\$&')} \\| (\\d+\\.\\d\\d)× \\|`).exec(stdout)?.[1]);
  if (REGISTRY_3) assert.ok(ratio(`cold upstream bytes / direct upstream bytes, registry ${REGISTRY_UNDER_TEST.version}`) <= 1.05, stdout);
  assert.ok(ratio('cold upstream bytes / direct upstream bytes, registry 2.8.3') >= 1.5, stdout);
  // The other-work scenario (--quick: 2 s of other work, 1 repetition): its table, with both ratios.
  assert.ok(stdout.includes('## Docker after other work (warm cache)'), `prints the other-work scenario:\n${stdout}`);
  const work = stdout.split('\n').find((l) => l.startsWith('| 2 |'));
  assert.ok(work, `a row for 2 s of other work:\n${stdout}`);
  const cells = work.split('|').map((c) => c.trim());
  for (const blocks of cells.slice(3, 6)) assert.ok(Number(blocks) >= 0 && Number(blocks) < 120, `blocking times: ${work}`);
  assert.match(cells[6], /^\d+\.\d\d×$/, `prefetch / floor: ${work}`);
  assert.match(cells[7], /^\d+\.\d\d×$/, `prefetch / prefetch: false: ${work}`);
  // What extra registries cost: the main step with docker.io alone and with three more, and the difference.
  assert.ok(stdout.includes('## Extra registries (listed, nothing pulled from them)'), `prints the registries part:\n${stdout}`);
  assert.match(stdout, /\| main \| \d+\.\d{3} \| \d+\.\d{3} \| -?\d+\.\d{3} \| \d+\.\d\d× \|/);
});
