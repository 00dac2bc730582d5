// Before the post step saves, the upstream has its say on each image the storage holds. A tag is saved only while
// the upstream still names the same manifest by it: a tag planted in a restored cache, served from storage while
// the upstream erred, or deleted upstream must not live on. What was pulled with credentials is saved only while
// anyone may pull it (pull requests from forks read the cache), unless cache-private. One manifest HEAD per image,
// which Docker Hub does not count as a pull.
import { mapBounded } from './bounded.js';
import { imageKey, type CachedImage } from './cache-index.js';
import { manifestHead, type Credentials } from './docker-hub.js';
import { splitRepository } from './images.js';
import { isDigest } from './storage.js';

type StoredImage = Omit<CachedImage, 'lastUsed'>;

/**
 * current: the upstream names this manifest by this reference; moved, gone: it names another, or none;
 * private: anonymous users cannot pull it; unverified: the upstream could not say (offline, erring, limiting).
 */
export type Verdict = 'current' | 'moved' | 'gone' | 'private' | 'unverified';

/** The upstream's answer about one image, as a verdict. `anonymousCheck`: asked without the credentials it was pulled with. */
export function verdictOf(head: { status: number; digest: string } | null, image: StoredImage, anonymousCheck: boolean): Verdict {
  if (!head) return 'unverified';
  if (anonymousCheck && [401, 403, 404].includes(head.status)) return 'private';
  if (head.status === 404) return 'gone';
  if (head.status !== 200) return 'unverified';
  // A digest names its content for good; a tag is current only while it names the stored manifest.
  if (isDigest(image.reference)) return 'current';
  if (!head.digest) return 'unverified';
  return head.digest === image.manifests[0] ? 'current' : 'moved';
}

export interface SaveDecision {
  /** What the index may name. */
  images: StoredImage[];
  /** imageKey of images kept from the last index unverified: this job's use of them does not count. */
  unrefreshed: Set<string>;
  /** imageKey of images anonymous users cannot pull (cache-private: false). */
  withheld: string[];
  /** imageKey of tags the upstream no longer names this way. */
  stale: string[];
  /** imageKey of images the upstream could not vouch for and the last index did not hold: not saved. */
  unverified: string[];
}

/** What the index may name, given the upstream's verdicts and the images the last index held. */
export function decideSaves(images: StoredImage[], verdicts: Verdict[], previous: StoredImage[]): SaveDecision {
  const before = new Map(previous.map((i) => [imageKey(i), i.manifests[0]]));
  const decision: SaveDecision = { images: [], unrefreshed: new Set(), withheld: [], stale: [], unverified: [] };
  images.forEach((image, i) => {
    const key = imageKey(image);
    switch (verdicts[i]) {
      case 'current':
        decision.images.push(image);
        break;
      case 'private':
        decision.withheld.push(key);
        break;
      case 'moved':
      case 'gone':
        decision.stale.push(key);
        break;
      case 'unverified':
        // What the last index held may stay as it was, but does not look used, so it ages out unless verified.
        if (before.get(key) === image.manifests[0]) {
          decision.images.push(image);
          decision.unrefreshed.add(key);
        } else decision.unverified.push(key);
    }
  });
  return decision;
}

export interface UpstreamOf {
  upstream: string;
  /** The credentials the mirror pulled with; null for anonymous. */
  credentials: Credentials | null;
  /** The mirror ran without its upstream: nothing can be verified. */
  offline: boolean;
}

/** Asks each image's upstream about it, a few at a time. */
export async function askUpstreams(
  images: StoredImage[],
  upstreamOf: (registry: string) => UpstreamOf | undefined,
  cachePrivate: boolean,
): Promise<Verdict[]> {
  return mapBounded(images, 8, async (image) => {
    const { registry, repository } = splitRepository(image.repository);
    const source = upstreamOf(registry);
    if (!source || source.offline) return 'unverified';
    // Asked anonymously whenever the cache may only hold what anyone may pull: one request answers both questions.
    const anonymousCheck = source.credentials !== null && !cachePrivate;
    const head = await manifestHead(source.upstream, repository, image.reference, anonymousCheck ? null : source.credentials);
    return verdictOf(head, image, anonymousCheck);
  });
}
