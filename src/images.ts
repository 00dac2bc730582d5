// Images as the registry stores them: a manifest (or an index of per-platform manifests) naming a config
// and layers. Pure: the caller reads the manifests.

export interface ManifestJson {
  config?: { digest: string };
  layers?: { digest: string }[];
  manifests?: { digest: string }[];
}

export type Manifests = Record<string, ManifestJson | undefined>;

export interface ImageContent {
  /** The manifest and, for an index, the child manifests taken. */
  manifests: string[];
  /** Configs and layers. */
  blobs: string[];
}

/** What an image needs: for an index, only the child manifests `takeChild` accepts (the platforms pulled). */
export function imageContent(digest: string, manifests: Manifests, takeChild: (child: string) => boolean): ImageContent {
  const m = manifests[digest];
  const content: ImageContent = { manifests: [digest], blobs: [] };
  if (!m) return content;
  if (m.manifests) {
    for (const child of m.manifests.filter((c) => takeChild(c.digest))) {
      const part = imageContent(child.digest, manifests, () => false);
      content.manifests.push(...part.manifests);
      content.blobs.push(...part.blobs);
    }
  } else {
    content.blobs.push(...(m.config ? [m.config.digest] : []), ...(m.layers ?? []).map((l) => l.digest));
  }
  return content;
}

/** The display name docker uses: library/ is implied for official images. */
export function displayName(repository: string): string {
  return repository.startsWith('library/') ? repository.slice('library/'.length) : repository;
}

/** Docker Hub, as image names and containerd's hosts directory call it. */
export const DOCKER_HUB = 'docker.io';

/** Every host name an image name may give Docker Hub by. */
export const DOCKER_HUB_ALIASES: readonly string[] = [DOCKER_HUB, 'index.docker.io', 'registry-1.docker.io'];

/** Docker Hub's registry API, where docker.io's pulls go. */
export const DOCKER_HUB_API = 'https://registry-1.docker.io';

/** An image name without the Docker Hub host it may start with (docker.io/library/alpine:3 is library/alpine:3). */
export function withoutHubHost(image: string): string {
  const slash = image.indexOf('/');
  return slash > 0 && DOCKER_HUB_ALIASES.includes(image.slice(0, slash)) ? image.slice(slash + 1) : image;
}

/**
 * The name the cache gives a repository of a registry: as docker names its images, with Docker Hub's left
 * bare (library/alpine) and every other registry's host in front (ghcr.io/org/app).
 */
export function qualifiedRepository(registry: string, repository: string): string {
  return registry === DOCKER_HUB ? repository : `${registry}/${repository}`;
}

/** The registry host of a qualified repository name, and the repository's name on that registry. */
export function splitRepository(qualified: string): { registry: string; repository: string } {
  const slash = qualified.indexOf('/');
  const first = slash < 0 ? '' : qualified.slice(0, slash);
  // As docker reads a name: a first part with a dot or a port, or localhost, is a registry host.
  if (first && (first.includes('.') || first.includes(':') || first === 'localhost'))
    return { registry: first, repository: qualified.slice(slash + 1) };
  return { registry: DOCKER_HUB, repository: qualified };
}

const HOST = /^(?:localhost|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)(?::\d{1,5})?$/;

/** A registry host as image names spell it: a DNS name with a dot, or localhost, and an optional port. */
export function isRegistryHost(value: string): boolean {
  return HOST.test(value);
}
