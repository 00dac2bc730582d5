// The runner executes dist/, not src/: the committed bundle must be exactly what src/ builds to. npm run test:e2e runs
// this first and stops on a stale bundle: the end-to-end tests run dist/index.js too, and nothing rebuilds it for them,
// so a commit whose dist/ lags its src/ fails here, in CI as on a laptop.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('dist/ is what src/ builds to (run npm run build and commit dist/ with its source)', { timeout: 120_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), 'dist-check-'));
  try {
    // The build script itself, sent to another directory (a later -o wins).
    execFileSync('npm', ['run', '-s', 'build', '--', '-o', out], { cwd: ROOT });
    assert.deepEqual(readdirSync(join(ROOT, 'dist')).sort(), readdirSync(out).sort());
    for (const file of readdirSync(out)) {
      assert.ok(readFileSync(join(ROOT, 'dist', file)).equals(readFileSync(join(out, file))), `dist/${file} is stale`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
