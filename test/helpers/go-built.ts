// Where test/prerequisites.sh puts what it builds from Go modules at pinned versions: GO_TOOLS_DIR/MODULE@VERSION/.
import { homedir } from 'node:os';
import { join } from 'node:path';

export const GO_TOOLS_DIR = process.env.PULL_CACHE_GO_TOOLS ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'pull-cache-action', 'go-tools');

/** The binary `name` built from `module` at `version`. */
export function goBuilt(module: string, version: string, name: string): string {
  return join(GO_TOOLS_DIR, `${module}@${version}`, name);
}
