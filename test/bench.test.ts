// The benchmark keeps working: `npm run bench -- --quick` (small images, one repetition) runs every variant
// against the real parts and prints its tables.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('the quick benchmark runs every variant and prints the results and ratios', { timeout: 240_000 }, async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number | string | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/bench.ts', '--quick'], { cwd: ROOT, timeout: 200_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
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
});
