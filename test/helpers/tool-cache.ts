// What an earlier job on a persistent self-hosted runner can do to the tool cache it shares with the next job:
// replace the registry there, in whatever form it is kept, with a program of its own.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REGISTRY_UNDER_TEST } from './registry-under-test.js';

/**
 * A registry that records that it ran (in `marker`), then runs the real one under test, so that a job running it
 * still works and only the marker tells.
 */
export function markingRegistry(marker: string): string {
  return `#!/bin/sh\necho "$$" >> '${marker}'\nexec ${REGISTRY_UNDER_TEST.binary()} "$@"\n`;
}

/**
 * Replaces every registry binary under toolCache/distribution-registry with `script`, and every release tarball
 * there with one holding `script` as its registry. Returns the files replaced.
 */
export function replaceCachedRegistry(toolCache: string, script: string): string[] {
  const dir = join(toolCache, 'distribution-registry');
  const files = readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
  const replaced: string[] = [];
  for (const file of files) {
    if (file.endsWith('/registry')) {
      writeFileSync(file, script);
      chmodSync(file, 0o755);
      replaced.push(file);
    } else if (file.endsWith('.tar.gz')) {
      const content = mkdtempSync(join(toolCache, 'forged-'));
      writeFileSync(join(content, 'registry'), script, { mode: 0o755 });
      execFileSync('tar', ['-czf', file, '-C', content, 'registry']);
      rmSync(content, { recursive: true });
      replaced.push(file);
    }
  }
  return replaced;
}
