// What the job pulled, and from where. The registry's own counters are wrong in 2.8, so the figures are
// computed from its access log and storage: a blob served under a repository that linked it before the job is a
// hit; any other blob it served came from upstream during the job. The job's images are counted apart from what
// the prefetch pulled on speculation.
import { imageKey } from './cache-index.js';
import type { RegistryRequest } from './access-log.js';
import { PREFETCH_AGENT } from './prefetch.js';
import { displayName, imageContent, type Manifests } from './images.js';
import { isDigest, type StorageState } from './storage.js';

export interface Tally {
  blobs: number;
  bytes: number;
}

export interface ImageUsage {
  /** repository:tag or repository@digest, as the cache index names images. */
  key: string;
  /** As docker shows it (library/ left out). */
  image: string;
  fromCache: Tally;
  fromUpstream: Tally;
}

/** Images and their blobs' origins; the totals count each blob once, however many of the images name it. */
export interface UsageTable {
  images: ImageUsage[];
  fromCache: Tally;
  fromUpstream: Tally;
}

/** What the job used, and apart from it what the prefetch pulled on speculation and the job never used. */
export interface Usage extends UsageTable {
  prefetchOnly: UsageTable;
}

type Origin = 'cache' | 'upstream';

/** The blobs of one image, by where their bytes came from in this job. */
interface ImageBlobs {
  key: string;
  image: string;
  blobs: Map<string, Origin>;
}

/**
 * Per image used in the job: of the blobs its manifest names, those the restored cache served are hits and those
 * fetched from the upstream during the job are misses, whichever request (the job's or the prefetch's) carried them,
 * and even when the daemon had a blob from another image's pull and never asked for it again. A blob no one asked
 * the mirror for during the job was on the runner already: it is neither. An image is the job's when the job asked
 * the mirror for it (a pull that joins the prefetch's asks too) or ran a container of it (`ranByJob`, display names);
 * the rest the prefetch pulled alone.
 */
export function accountUsage(
  requests: RegistryRequest[],
  before: StorageState,
  after: StorageState,
  manifests: Manifests,
  ranByJob: ReadonlySet<string> = new Set(),
  restoredAt: ReadonlyMap<string, number> = new Map(),
): Usage {
  const served = requests.filter((r) => r.status === 200);
  const blobGets = served.filter((r) => r.kind === 'blobs' && r.method === 'GET');
  // The registry looks blobs up per repository: one held under another repository is fetched again. A link the
  // background restore wrote serves the requests of its second too (the log's times are whole seconds): the
  // mirrors' front holds a request for an image until its links are written, so none in that second came first.
  const linkedBefore = (r: RegistryRequest) =>
    (r.reference in before.blobs && (before.repositories[r.repository]?.layers.includes(r.reference) ?? false)) ||
    (restoredAt.get(`${r.repository}@${r.reference}`) ?? Infinity) < r.at + 1000;
  const originOfRequest = (r: RegistryRequest): Origin => (linkedBefore(r) ? 'cache' : 'upstream');
  // The first request for a blob under a repository is the one that moved its bytes.
  const servedUnder = new Map<string, Origin>();
  for (const r of blobGets)
    if (!servedUnder.has(`${r.repository}@${r.reference}`)) servedUnder.set(`${r.repository}@${r.reference}`, originOfRequest(r));
  // A blob the daemon did not ask for under this image's repository came with the first pull that did ask for it.
  const firstServed = new Map<string, Origin>();
  for (const r of blobGets) if (!firstServed.has(r.reference)) firstServed.set(r.reference, originOfRequest(r));
  const originOf = (repository: string, digest: string) => servedUnder.get(`${repository}@${digest}`) ?? firstServed.get(digest);

  const manifestsByDigest = new Set(
    served
      .filter((r) => r.kind === 'manifests' && r.method === 'GET' && isDigest(r.reference))
      .map((r) => `${r.repository}@${r.reference}`),
  );
  const askedByJob = new Set(
    served.filter((r) => r.kind === 'manifests' && !r.agent.includes(PREFETCH_AGENT)).map((r) => `${r.repository}@${r.reference}`),
  );
  /** Manifests reached through a tag (or an index): not listed again as pulls by digest. */
  const reached = new Set<string>();
  const images = new Map<string, ImageBlobs & { byJob: boolean }>();
  const addImage = (repository: string, reference: string, manifest: string) => {
    const content = imageContent(manifest, manifests, (child) => manifestsByDigest.has(`${repository}@${child}`));
    content.manifests.forEach((d) => reached.add(`${repository}@${d}`));
    const key = imageKey({ repository, reference });
    const blobs = new Map(content.blobs.flatMap((d) => (originOf(repository, d) ? [[d, originOf(repository, d)!] as const] : [])));
    const image = `${displayName(repository)}${isDigest(reference) ? `@${reference.slice(0, 19)}` : `:${reference}`}`;
    const byJob = (images.get(key)?.byJob ?? false) || askedByJob.has(`${repository}@${reference}`) || ranByJob.has(displayName(key));
    images.set(key, { key, image, blobs, byJob });
  };
  // dockerd resolves a tag with a HEAD (or a GET), then GETs the manifest by digest.
  for (const r of served.filter((r) => r.kind === 'manifests' && !isDigest(r.reference))) {
    const digest = after.repositories[r.repository]?.tags[r.reference];
    if (digest) addImage(r.repository, r.reference, digest);
  }
  for (const key of manifestsByDigest) {
    const [repository, digest] = key.split('@');
    if (!reached.has(key)) addImage(repository, digest, digest);
  }

  // Blobs served that no image names (a manifest the report could not read): a row of their own, by who asked.
  const named = new Set([...images.values()].flatMap((i) => [...i.blobs.keys()]));
  const strays = (byPrefetch: boolean): ImageBlobs[] => {
    const blobs = new Map(
      blobGets
        .filter((r) => !named.has(r.reference) && r.agent.includes(PREFETCH_AGENT) === byPrefetch)
        .map((r) => [r.reference, originOfRequest(r)]),
    );
    return blobs.size ? [{ key: '', image: '(blobs of no image pulled by tag)', blobs }] : [];
  };
  const all = [...images.values()];
  const job = tabulate([...all.filter((i) => i.byJob), ...strays(false)], new Set(), after, before);
  const jobBlobs = new Set(all.filter((i) => i.byJob).flatMap((i) => [...i.blobs.keys()]));
  return { ...job, prefetchOnly: tabulate([...all.filter((i) => !i.byJob), ...strays(true)], jobBlobs, after, before) };
}

/**
 * Rows per image, and totals with each blob once per origin (one served from the cache for an image and fetched for
 * another was moved twice); blobs in `counted` are left out of the totals.
 */
function tabulate(rows: ImageBlobs[], counted: ReadonlySet<string>, after: StorageState, before: StorageState): UsageTable {
  const sizeOf = (digest: string) => after.blobs[digest] ?? before.blobs[digest] ?? 0;
  const tally = (blobs: Iterable<readonly [string, Origin]>) => {
    const usage = { fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 0, bytes: 0 } };
    for (const [digest, origin] of blobs) {
      const t = origin === 'cache' ? usage.fromCache : usage.fromUpstream;
      t.blobs += 1;
      t.bytes += sizeOf(digest);
    }
    return usage;
  };
  const once = new Map(
    rows.flatMap((r) =>
      [...r.blobs].filter(([digest]) => !counted.has(digest)).map(([digest, origin]) => [`${origin} ${digest}`, [digest, origin] as const]),
    ),
  );
  return { images: rows.map((r) => ({ key: r.key, image: r.image, ...tally(r.blobs) })), ...tally(once.values()) };
}

/** Adds up the usage of each registry's mirror. */
export function mergeUsage(usages: Usage[]): Usage {
  return { ...mergeTables(usages), prefetchOnly: mergeTables(usages.map((u) => u.prefetchOnly)) };
}

function mergeTables(tables: UsageTable[]): UsageTable {
  const add = (a: Tally, b: Tally): Tally => ({ blobs: a.blobs + b.blobs, bytes: a.bytes + b.bytes });
  const none = { blobs: 0, bytes: 0 };
  return {
    images: tables.flatMap((t) => t.images),
    fromCache: tables.reduce((sum, t) => add(sum, t.fromCache), none),
    fromUpstream: tables.reduce((sum, t) => add(sum, t.fromUpstream), none),
  };
}
