// Images dockerd pulled around the cache: its registry-mirrors cover Docker Hub only, so an image from another
// registry comes through the cache only by a hosts.toml of ours or by naming the mirror.
import { DOCKER_HUB, splitRepository } from './images.js';

/** An image dockerd pulled from a registry other than Docker Hub, which its registry-mirrors do not cover. */
export interface AroundTheCache {
  image: string;
  /** The same image through its registry's mirror (MIRROR_HOST/NAME:TAG); empty when the registry has no mirror. */
  throughMirror: string;
}

/**
 * Of what dockerd pulled, the images that went around the cache: from a registry dockerd has no mirror for
 * (Docker Hub it has; others only through a hosts.toml of ours, `viaHostsToml`), and not from a mirror itself.
 */
export function aroundTheCache(
  pulled: string[],
  mirrors: { registry: string; url: string }[],
  viaHostsToml: string[] = [],
): AroundTheCache[] {
  const mirrorHosts = new Set(mirrors.map((m) => new URL(m.url).host));
  const mirrored = new Set([DOCKER_HUB, ...viaHostsToml]);
  return pulled.flatMap((image) => {
    const { registry, repository } = splitRepository(image);
    if (mirrored.has(registry) || mirrorHosts.has(registry)) return [];
    const mirror = mirrors.find((m) => m.registry === registry);
    return [{ image, throughMirror: mirror ? `${new URL(mirror.url).host}/${repository}` : '' }];
  });
}
