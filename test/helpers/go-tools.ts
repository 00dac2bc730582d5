// Real parts written in Go, built from their modules at pinned versions by test/prerequisites.sh
// (go_build_pinned), which keeps them under one directory between runs. This finds them there.
import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';

/** Where go_build_pinned puts its builds: the same rule as in test/prerequisites.sh. */
export const GO_TOOLS_DIR =
  process.env.PULL_CACHE_GO_TOOLS ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'pull-cache-action', 'go-tools');

/**
 * The binary `go_build_pinned MODULE VERSION PACKAGE_DIR` built. Throws, naming the command that builds it, when it
 * is not there: a missing prerequisite fails loudly, it never skips a test.
 */
export function goTool(module: string, version: string, packageDir: string): string {
  const binary = join(GO_TOOLS_DIR, `${module}@${version}`, basename(packageDir));
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new Error(`${binary} is missing: run bash test/prerequisites.sh (it builds ${module}/${packageDir}@${version})`);
  }
  return binary;
}
