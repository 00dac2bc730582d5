// What the job pulled, and from where. The registry's own counters are wrong in 2.8, so the figures are
// computed: a blob served under a repository that linked it before the job is a hit; any other blob it
// served came from upstream during the job.
import * as core from '@actions/core';
import { isDigest, type StorageState } from './storage.js';

export interface RegistryRequest {
  method: string;
  repository: string;
  kind: 'manifests' | 'blobs';
  reference: string;
  status: number;
}

const REQUEST_LINE = /"(GET|HEAD) \/v2\/(.+)\/(manifests|blobs)\/([^ ?"]+)[^"]*" (\d{3}) /;

/** Parses the registry's access log (Apache combined format) into the requests for manifests and blobs. */
export function parseAccessLog(text: string): RegistryRequest[] {
  const requests: RegistryRequest[] = [];
  for (const line of text.split('\n')) {
    const m = REQUEST_LINE.exec(line);
    const reference = m && decodeSafely(m[4]);
    if (m && reference) requests.push({ method: m[1], repository: m[2], kind: m[3] as RegistryRequest['kind'], reference, status: Number(m[5]) });
  }
  return requests;
}

/** A stray request with a broken escape is not a pull: skip it rather than lose the report. */
function decodeSafely(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

export interface Tally {
  blobs: number;
  bytes: number;
}

export interface ImageUsage {
  image: string;
  fromCache: Tally;
  fromUpstream: Tally;
}

export interface Usage {
  images: ImageUsage[];
  fromCache: Tally;
  fromUpstream: Tally;
}

interface ManifestJson {
  config?: { digest: string };
  layers?: { digest: string }[];
  manifests?: { digest: string }[];
}

/** The manifests the report needs to read: every manifest the job was served. */
export function manifestsServed(requests: RegistryRequest[], after: StorageState): string[] {
  const digests = new Set<string>();
  for (const r of requests) {
    if (r.kind !== 'manifests' || r.status !== 200) continue;
    const digest = isDigest(r.reference) ? r.reference : after.repositories[r.repository]?.tags[r.reference];
    if (digest) digests.add(digest);
  }
  return [...digests];
}

/** Per image (repository:tag as the job asked for it): the config and layers served, from cache or upstream. */
export function accountUsage(requests: RegistryRequest[], before: StorageState, after: StorageState, manifests: Record<string, unknown>): Usage {
  const served = requests.filter((r) => r.method === 'GET' && r.status === 200);
  const blobsServed = new Set(served.filter((r) => r.kind === 'blobs').map((r) => `${r.repository}@${r.reference}`));
  const manifestsByDigest = new Set(served.filter((r) => r.kind === 'manifests' && isDigest(r.reference)).map((r) => `${r.repository}@${r.reference}`));
  /** Manifests reached through a tag: not listed again as pulls by digest. */
  const childrenOfTags = new Set<string>();
  const images = new Map<string, Set<string>>();

  const blobsOf = (repository: string, digest: string): string[] => {
    const m = manifests[digest] as ManifestJson | undefined;
    if (!m) return [];
    if (m.manifests) {
      // An index: only the platforms the job asked for.
      return m.manifests
        .filter((child) => manifestsByDigest.has(`${repository}@${child.digest}`))
        .flatMap((child) => (childrenOfTags.add(`${repository}@${child.digest}`), blobsOf(repository, child.digest)));
    }
    return [...(m.config ? [m.config.digest] : []), ...(m.layers ?? []).map((l) => l.digest)];
  };
  // dockerd resolves a tag with a HEAD (or a GET), then GETs the manifest by digest.
  const tagRequests = requests.filter((r) => r.kind === 'manifests' && r.status === 200 && !isDigest(r.reference));
  for (const r of tagRequests) {
    const digest = after.repositories[r.repository]?.tags[r.reference];
    if (!digest) continue;
    childrenOfTags.add(`${r.repository}@${digest}`);
    images.set(`${displayName(r.repository)}:${r.reference}`, new Set(blobsOf(r.repository, digest).map((d) => `${r.repository}@${d}`)));
  }
  for (const key of manifestsByDigest) {
    if (childrenOfTags.has(key)) continue;
    const [repository, digest] = key.split('@');
    images.set(`${displayName(repository)}@${digest.slice(0, 19)}`, new Set(blobsOf(repository, digest).map((d) => `${repository}@${d}`)));
  }

  const counted = new Set<string>();
  const tallyOf = (keys: Iterable<string>): Omit<ImageUsage, 'image'> => {
    const usage = { fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 0, bytes: 0 } };
    for (const key of keys) {
      if (!blobsServed.has(key) || counted.has(key)) continue;
      counted.add(key);
      const [repository, digest] = key.split('@');
      const hit = digest in before.blobs && (before.repositories[repository]?.layers.includes(digest) ?? false);
      const tally = hit ? usage.fromCache : usage.fromUpstream;
      tally.blobs += 1;
      tally.bytes += after.blobs[digest] ?? before.blobs[digest] ?? 0;
    }
    return usage;
  };
  const rows: ImageUsage[] = [...images].map(([image, keys]) => ({ image, ...tallyOf(keys) }));
  const rest = tallyOf(blobsServed);
  if (rest.fromCache.blobs || rest.fromUpstream.blobs) rows.push({ image: '(blobs of no image pulled by tag)', ...rest });
  const sum = (pick: (u: ImageUsage) => Tally): Tally => ({ blobs: rows.reduce((s, u) => s + pick(u).blobs, 0), bytes: rows.reduce((s, u) => s + pick(u).bytes, 0) });
  return { images: rows, fromCache: sum((u) => u.fromCache), fromUpstream: sum((u) => u.fromUpstream) };
}

function displayName(repository: string): string {
  return repository.startsWith('library/') ? repository.slice('library/'.length) : repository;
}

export interface ReportFacts {
  upstream: string;
  usage: Usage | null;
  restoredKey: string;
  restoredBlobs: number;
  restoredBytes: number;
  missingEntries: number;
  corruptBlobs: number;
  /** What the post step saved: null when saving was off or did not run. */
  saved: { entries: number; bytes: number; indexKey: string; deferred: number; stopped: string } | null;
  saveDisabled: boolean;
  problems: string[];
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

function count(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

function tallyText(t: Tally): string {
  return t.blobs ? `${count(t.blobs, 'blob')}, ${formatBytes(t.bytes)}` : '–';
}

/** The report as Markdown: for the job summary, and readable as it is in the log. */
export function renderReport(f: ReportFacts): string {
  const source = f.upstream === 'https://registry-1.docker.io' ? 'Docker Hub' : f.upstream.replace(/^https?:\/\//, '');
  const lines = ['## Pull cache', ''];
  if (f.usage && f.usage.images.length) {
    const total = f.usage.fromCache.bytes + f.usage.fromUpstream.bytes;
    lines.push(`| Image | From cache | From ${source} |`, '| --- | --- | --- |');
    for (const u of f.usage.images) lines.push(`| ${u.image} | ${tallyText(u.fromCache)} | ${tallyText(u.fromUpstream)} |`);
    lines.push(`| **Total** | **${tallyText(f.usage.fromCache)}** | **${tallyText(f.usage.fromUpstream)}** |`, '');
    lines.push(`Hit rate: ${total ? Math.round((100 * f.usage.fromCache.bytes) / total) : 0}% of bytes served (${f.usage.fromCache.blobs} of ${f.usage.fromCache.blobs + f.usage.fromUpstream.blobs} blobs).`);
  } else if (f.usage) {
    lines.push('No image was pulled through the cache in this job.');
  }
  lines.push('');
  if (f.restoredKey) {
    const damaged = [f.missingEntries && `${count(f.missingEntries, 'entry', 'entries')} gone from the cache`, f.corruptBlobs && `${count(f.corruptBlobs, 'blob')} failed the digest check and dropped`].filter(Boolean);
    lines.push(`- Restored: \`${f.restoredKey}\`, ${count(f.restoredBlobs, 'blob')}, ${formatBytes(f.restoredBytes)}${damaged.length ? ` (${damaged.join('; ')}: fetched again on demand)` : ''}.`);
  } else {
    lines.push('- Restored: nothing (no cache yet for this key prefix and platform).');
  }
  if (f.saveDisabled) lines.push('- Saved: nothing (`save: false`).');
  else if (f.saved) {
    if (f.saved.entries || f.saved.indexKey) {
      lines.push(`- Saved: ${count(f.saved.entries, 'new entry', 'new entries')}, ${formatBytes(f.saved.bytes)}${f.saved.indexKey ? `, index \`${f.saved.indexKey}\`` : ''}.`);
    } else lines.push(f.saved.deferred ? '- Saved: nothing.' : '- Saved: nothing new.');
    if (f.saved.deferred) lines.push(`- Not saved this run: ${count(f.saved.deferred, 'blob')}${f.saved.stopped ? ` (${f.saved.stopped})` : ' (per-run entry cap)'}; the next run saves them.`);
  }
  for (const p of f.problems) lines.push(`- ⚠️ ${p}`);
  return `${lines.join('\n')}\n`;
}

export async function writeReport(markdown: string): Promise<void> {
  core.info(markdown);
  if (process.env.GITHUB_STEP_SUMMARY) await core.summary.addRaw(markdown).write();
}
