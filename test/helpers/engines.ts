// The Docker Engines users run, built from their Go modules by test/prerequisites.sh (build_dockerd 28.0.4,
// build_dockerd_v2 for 29): GitHub's ubuntu-24.04 image ships 28.0.4 on the classic image store, and Docker 29 uses
// the containerd image store on a fresh install. TEST_ENGINE=28 or 29 runs every test daemon on one of them
// (npm run test:engine-28, test:engine-29; the latter with TEST_IMAGE_STORE=containerd, see dockerd.ts).
import { goTool } from './go-tools.js';

/** Each engine's module and version, as test/prerequisites.sh builds them. */
export const ENGINES = {
  '28': { module: 'github.com/docker/docker', version: 'v28.0.4' },
  // Docker 29 lives in moby's v2 module; this beta is the newest the Go module proxy serves (its tree is 29.8).
  '29': { module: 'github.com/moby/moby/v2', version: 'v2.0.0-beta.24' },
} as const;

/** The dockerd of engine `name` (28 or 29); throws, naming the command that builds it, when it is not built. */
export function engineDockerd(name: string): string {
  if (!(name in ENGINES)) throw new Error(`TEST_ENGINE=${name}: not one of ${Object.keys(ENGINES).join(', ')}`);
  const { module, version } = ENGINES[name as keyof typeof ENGINES];
  return goTool(module, version, 'cmd/dockerd');
}
