// dockerd's own BuildKit (`docker build`, the default builder since Docker Engine 23) and a mirror the action adds
// by reload: whether BuildKit's FROM pulls reach it depends on the engine's release. From moby's source:
// - 20.10 to 24.0: dockerd hands BuildKit `RegistryHosts()`, a resolver config built once when the daemon starts
//   (cmd/dockerd/daemon.go): a mirror added later by SIGHUP never reaches BuildKit, which pulls from Docker Hub.
// - 25.0 (moby #43980, "Update BuildKit registry config on daemon reload"): BuildKit reads the live mirrors on each
//   resolve. The mirror's http:// is dropped on the way, and BuildKit's resolver speaks plain HTTP only to a mirror
//   on localhost: a mirror on the Docker bridge's address is tried over HTTPS, fails, and BuildKit goes around it.
// - 28.0 (moby #47380, daemon/hosts.go): the mirror keeps its scheme, so a mirror on any address works.
// Before 20.10 BuildKit was an opt-in with a resolver of its own; the action says nothing about those releases.

/** Why `docker build` with BuildKit goes around a mirror added by reload; null when it goes through it (or unknown). */
export type BuiltInBuildkitBypass = 'mirrors-read-at-start' | 'plain-http-on-loopback-only';

/** The first release whose BuildKit reads a reloaded mirror at all, and the first that reads it on any address. */
const LIVE_MIRRORS_SINCE = [25, 0] as const;
const ANY_ADDRESS_SINCE = [28, 0] as const;

/** major.minor of `docker info`'s ServerVersion (`20.10.24+dfsg1`, `28.0.4`, `24.0.7-0ubuntu4`); null when unreadable. */
export function engineRelease(serverVersion: string): [number, number] | null {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+~].*)?$/.exec(serverVersion.trim());
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function atLeast(release: [number, number], since: readonly [number, number]): boolean {
  return release[0] > since[0] || (release[0] === since[0] && release[1] >= since[1]);
}

/** Whether dockerd `serverVersion`'s BuildKit pulls Docker Hub images through `mirror` (http://ADDRESS:PORT) added by reload. */
export function builtInBuildkitBypass(serverVersion: string, mirror: string): BuiltInBuildkitBypass | null {
  const release = engineRelease(serverVersion);
  if (!release || !atLeast(release, [20, 10])) return null;
  if (!atLeast(release, LIVE_MIRRORS_SINCE)) return 'mirrors-read-at-start';
  if (!atLeast(release, ANY_ADDRESS_SINCE) && !isLoopback(new URL(mirror).hostname)) return 'plain-http-on-loopback-only';
  return null;
}

/** What BuildKit's resolver (containerd's MatchLocalhost) speaks plain HTTP to. */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]' || hostname === '::1';
}

/**
 * The sentence for the log and the report when dockerd `serverVersion`'s BuildKit goes around `mirror`: what
 * `docker build` does, why, and the ways through the cache; null when it pulls through the mirror (or unknown).
 */
export function builtInBuildkitNotice(serverVersion: string, mirror: string): string | null {
  const bypass = builtInBuildkitBypass(serverVersion, mirror);
  if (!bypass) return null;
  const why =
    bypass === 'mirrors-read-at-start'
      ? `dockerd ${serverVersion} gives its BuildKit the registry mirrors it had when it started, and the action adds its mirror by a reload (Docker Engine 25 and later read the reloaded mirror)`
      : `dockerd ${serverVersion}'s BuildKit speaks plain HTTP only to a mirror on loopback, and this one listens on the Docker bridge (Docker Engine 28 and later reach it; \`listen: loopback\` works from 25)`;
  return (
    `\`docker build\` with BuildKit (the default builder, also docker/build-push-action without a builder of its own) pulls its FROM images from Docker Hub directly, not through the cache: ${why}. ` +
    'To build through the cache, use a buildx builder given the `buildkitd-config` output (docker/setup-buildx-action), or the classic builder (`DOCKER_BUILDKIT=0`).'
  );
}
