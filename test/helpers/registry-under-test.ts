// The Distribution registry the action runs in the end-to-end tests. The release stand-in (release-server.ts) serves
// every release below as the action downloads it, and each runner's inputs ask for the one under test:
// TEST_REGISTRY_VERSION picks it (npm test runs the registry-sensitive files once more with 2.8.3), and by default it
// is the action's own default. The stand-ins for Docker Hub and other upstreams stay Debian's 2.8 (upstream.ts).
import { DEFAULTS } from '../../src/context.js';
import { goTool } from './go-tools.js';

export interface RegistryRelease {
  version: string;
  /** The binary served as that release's `registry`. */
  binary: () => string;
}

/** Releases the stand-in serves, by version: 2.8.3 is Debian's 2.8 package, 3.1.1 the build from its Go module. */
export const REGISTRY_RELEASES: Record<string, RegistryRelease> = {
  '2.8.3': { version: '2.8.3', binary: () => '/usr/bin/docker-registry' },
  '3.1.1': { version: '3.1.1', binary: () => goTool('github.com/distribution/distribution/v3', 'v3.1.1', 'cmd/registry') },
};

function underTest(): RegistryRelease {
  const version = process.env.TEST_REGISTRY_VERSION || DEFAULTS.registryVersion;
  const release = REGISTRY_RELEASES[version];
  if (!release) throw new Error(`TEST_REGISTRY_VERSION ${version}: the tests have ${Object.keys(REGISTRY_RELEASES).join(' and ')}`);
  return release;
}

/** The release the action runs in this test run. */
export const REGISTRY_UNDER_TEST = underTest();

/** True when the registry under test is 3.x (the behaviour some assertions differ by, e.g. one upstream fetch per blob). */
export const REGISTRY_3 = REGISTRY_UNDER_TEST.version.startsWith('3.');
