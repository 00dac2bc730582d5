// What the job pulled, and from where. The registry's own counters are wrong in 2.8, so the figures are
// computed: a blob served under a repository that linked it before the job is a hit; any other blob it
// served came from upstream during the job.
import * as core from '@actions/core';
import { imageKey, type Budget, type Dropped } from './cache-index.js';
import type { Quota } from './docker-hub.js';
import type { PrefetchUsage } from './prefetch.js';
import { displayName, DOCKER_HUB, imageContent, splitRepository, type Manifests } from './images.js';
import { isDigest, type StorageState } from './storage.js';

export interface RegistryRequest {
  /** Epoch milliseconds, to the second. */
  at: number;
  /** The client's User-Agent: dockerd's, naming the API client in UpstreamClient(...). */
  agent: string;
  method: string;
  repository: string;
  kind: 'manifests' | 'blobs';
  reference: string;
  status: number;
}

const REQUEST_LINE = /\[([^\]]+)\] "(GET|HEAD) \/v2\/(.+)\/(manifests|blobs)\/([^ ?"]+)[^"]*" (\d{3}) \S+(?: "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)")?/;
const MONTHS = 'JanFebMarAprMayJunJulAugSepOctNovDec';

/** `29/Nov/2026:19:14:15 +0000`, the access log's time, in epoch milliseconds. */
function logTime(text: string): number {
  const m = /^(\d\d)\/(\w{3})\/(\d{4}):(\d\d:\d\d:\d\d) ([+-]\d\d)(\d\d)$/.exec(text);
  if (!m) return NaN;
  const month = String(MONTHS.indexOf(m[2]) / 3 + 1).padStart(2, '0');
  return Date.parse(`${m[3]}-${month}-${m[1]}T${m[4]}${m[5]}:${m[6]}`);
}

/** Parses the registry's access log (Apache combined format) into the requests for manifests and blobs. */
export function parseAccessLog(text: string): RegistryRequest[] {
  const requests: RegistryRequest[] = [];
  for (const line of text.split('\n')) {
    const m = REQUEST_LINE.exec(line);
    const reference = m && decodeSafely(m[5]);
    if (m && reference) requests.push({ at: logTime(m[1]), agent: m[7] ?? '', method: m[2], repository: m[3], kind: m[4] as RegistryRequest['kind'], reference, status: Number(m[6]) });
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
  /** repository:tag or repository@digest, as the cache index names images. */
  key: string;
  /** As docker shows it (library/ left out). */
  image: string;
  fromCache: Tally;
  fromUpstream: Tally;
}

export interface Usage {
  images: ImageUsage[];
  fromCache: Tally;
  fromUpstream: Tally;
}

/** Per image the job pulled (by tag, or by digest): the configs and layers served, from cache or from upstream. */
export function accountUsage(requests: RegistryRequest[], before: StorageState, after: StorageState, manifests: Manifests): Usage {
  const served = requests.filter((r) => r.status === 200);
  const blobsServed = new Set(served.filter((r) => r.kind === 'blobs' && r.method === 'GET').map((r) => `${r.repository}@${r.reference}`));
  const manifestsByDigest = new Set(served.filter((r) => r.kind === 'manifests' && r.method === 'GET' && isDigest(r.reference)).map((r) => `${r.repository}@${r.reference}`));
  /** Manifests reached through a tag (or an index): not listed again as pulls by digest. */
  const reached = new Set<string>();
  const images = new Map<string, { repository: string; reference: string; blobs: string[] }>();
  const addImage = (repository: string, reference: string, manifest: string) => {
    const content = imageContent(manifest, manifests, (child) => manifestsByDigest.has(`${repository}@${child}`));
    content.manifests.forEach((d) => reached.add(`${repository}@${d}`));
    images.set(imageKey({ repository, reference }), { repository, reference, blobs: content.blobs });
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

  const counted = new Set<string>();
  const tallyOf = (keys: Iterable<string>): Pick<ImageUsage, 'fromCache' | 'fromUpstream'> => {
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
  const rows: ImageUsage[] = [...images].map(([key, i]) => ({
    key,
    image: `${displayName(i.repository)}${isDigest(i.reference) ? `@${i.reference.slice(0, 19)}` : `:${i.reference}`}`,
    ...tallyOf(i.blobs.map((d) => `${i.repository}@${d}`)),
  }));
  const rest = tallyOf(blobsServed);
  if (rest.fromCache.blobs || rest.fromUpstream.blobs) rows.push({ key: '', image: '(blobs of no image pulled by tag)', ...rest });
  const sum = (pick: (u: ImageUsage) => Tally): Tally => ({ blobs: rows.reduce((s, u) => s + pick(u).blobs, 0), bytes: rows.reduce((s, u) => s + pick(u).bytes, 0) });
  return { images: rows, fromCache: sum((u) => u.fromCache), fromUpstream: sum((u) => u.fromUpstream) };
}

/** Adds up the usage of each registry's mirror. */
export function mergeUsage(usages: Usage[]): Usage {
  const add = (a: Tally, b: Tally): Tally => ({ blobs: a.blobs + b.blobs, bytes: a.bytes + b.bytes });
  const none = { blobs: 0, bytes: 0 };
  return {
    images: usages.flatMap((u) => u.images),
    fromCache: usages.reduce((t, u) => add(t, u.fromCache), none),
    fromUpstream: usages.reduce((t, u) => add(t, u.fromUpstream), none),
  };
}

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
export function aroundTheCache(pulled: string[], mirrors: { registry: string; url: string }[], viaHostsToml: string[] = []): AroundTheCache[] {
  const mirrorHosts = new Set(mirrors.map((m) => new URL(m.url).host));
  const mirrored = new Set([DOCKER_HUB, ...viaHostsToml]);
  return pulled.flatMap((image) => {
    const { registry, repository } = splitRepository(image);
    if (mirrored.has(registry) || mirrorHosts.has(registry)) return [];
    const mirror = mirrors.find((m) => m.registry === registry);
    return [{ image, throughMirror: mirror ? `${new URL(mirror.url).host}/${repository}` : '' }];
  });
}

/** One registry's row: its mirror and what the job pulled through it. */
export interface RegistryRow {
  registry: string;
  /** What its mirror pulled from: the registry itself, or an organisation's mirror of it. */
  upstream: string;
  mirror: string;
  offline: boolean;
  images: number;
  fromCache: Tally;
  fromUpstream: Tally;
}

export interface ReportFacts {
  /** Docker Hub's upstream, for the quota line. */
  upstream: string;
  /** Per registry, when the job cached more than Docker Hub. */
  registries: RegistryRow[];
  usage: Usage | null;
  restoredKey: string;
  restoredBlobs: number;
  restoredBytes: number;
  missingEntries: number;
  damagedBlobs: number;
  /** What was refused from the restored cache as invalid or hostile, one line each. */
  refused: string[];
  /** Images the index named that this run left out, and why. */
  dropped: Dropped[];
  budget: Budget;
  /** What the post step saved: null when saving was off or did not run. */
  saved: { entries: number; bytes: number; indexKey: string; deferred: number; stopped: string } | null;
  saveDisabled: boolean;
  /** Images not saved because anonymous users cannot pull them (cache-private: false). */
  withheld: string[];
  /** Tags not saved because the upstream names another manifest by them, or none. */
  stale: string[];
  /** Images not saved because the upstream could not vouch for them. */
  unverified: string[];
  /** The upstream's pull quota after the job: null when it could not be read. */
  quota: Quota | 'unlimited' | null;
  /** The user the cache pulled as; empty for anonymous. */
  pullsAs: string;
  /** What the prefetch did and what of it the job used; null when nothing was prefetched. */
  prefetch: PrefetchUsage | null;
  /** Whether dockerd can decompress layers with unpigz. */
  unpigz: boolean;
  /** What dockerd pulled from other registries directly. */
  aroundTheCache: AroundTheCache[];
  problems: string[];
}

/** A hostile index can name thousands of bad items: the report lists the first few. */
const MAX_REFUSED_LINES = 10;

/** Sizes in binary units, named as such: the max-size input takes both. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function count(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

function tallyText(t: Tally): string {
  return t.blobs ? `${count(t.blobs, 'blob')}, ${formatBytes(t.bytes)}` : '–';
}

/** Where a registry's mirror pulled from: the registry's name, or the host of the organisation's mirror in front of it. */
function upstreamName(r: RegistryRow): string {
  return r.upstream === `https://${r.registry}` ? r.registry : r.upstream.replace(/^https?:\/\//, '');
}

/** The report as Markdown: for the job summary, and readable as it is in the log. */
export function renderReport(f: ReportFacts): string {
  const hub = f.upstream === 'https://registry-1.docker.io' ? 'Docker Hub' : f.upstream.replace(/^https?:\/\//, '');
  const source = f.registries.length > 1 ? 'upstream' : f.registries[0] && f.registries[0].registry !== DOCKER_HUB ? upstreamName(f.registries[0]) : hub;
  const lines = ['## Pull cache', ''];
  if (f.registries.length > 1) {
    lines.push('| Registry | Mirror | Images | From cache | From upstream |', '| --- | --- | --- | --- | --- |');
    for (const r of f.registries) lines.push(`| ${r.registry}${r.registry !== DOCKER_HUB && upstreamName(r) !== r.registry ? ` via ${upstreamName(r)}` : ''} | ${r.mirror}${r.offline ? ' (offline)' : ''} | ${r.images} | ${tallyText(r.fromCache)} | ${tallyText(r.fromUpstream)} |`);
    lines.push('');
  }
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
    const damaged = [f.missingEntries && `${count(f.missingEntries, 'entry', 'entries')} gone from the cache`, f.damagedBlobs && `${count(f.damagedBlobs, 'blob')} failed the digest check and dropped`].filter(Boolean);
    lines.push(`- Restored: \`${f.restoredKey}\`, ${count(f.restoredBlobs, 'blob')}, ${formatBytes(f.restoredBytes)}${damaged.length ? ` (${damaged.join('; ')}: fetched again on demand)` : ''}.`);
  } else {
    lines.push(f.refused.length ? '- Restored: nothing (the cache index was refused, see below).' : '- Restored: nothing (no cache yet for this key prefix and platform).');
  }
  if (f.refused.length) {
    lines.push(`- Refused from the cache as invalid (not restored, not served): ${count(f.refused.length, 'item')}:`);
    for (const problem of f.refused.slice(0, MAX_REFUSED_LINES)) lines.push(`  - ${problem}`);
    if (f.refused.length > MAX_REFUSED_LINES) lines.push(`  - and ${f.refused.length - MAX_REFUSED_LINES} more (see the step's warnings)`);
  }
  const dropped = (reason: Dropped['reason'], why: string) => {
    const images = f.dropped.filter((d) => d.reason === reason);
    if (images.length) lines.push(`- Dropped: ${count(images.length, 'image')} ${why} (${images.map((d) => displayName(d.image)).join(', ')}; ${formatBytes(images.reduce((s, d) => s + d.bytes, 0))}).`);
  };
  dropped('age', `unused for more than ${count(f.budget.maxAgeDays, 'day')} (max-age)`);
  dropped('size', `that did not fit in ${formatBytes(f.budget.maxBytes)} (max-size)`);
  if (f.saveDisabled) lines.push('- Saved: nothing (`save: false`).');
  else if (f.saved) {
    if (f.saved.entries || f.saved.indexKey) {
      lines.push(`- Saved: ${count(f.saved.entries, 'new entry', 'new entries')}, ${formatBytes(f.saved.bytes)}${f.saved.indexKey ? `, index \`${f.saved.indexKey}\`` : ''}.`);
    } else lines.push(f.saved.deferred ? '- Saved: nothing.' : '- Saved: nothing new.');
    if (f.saved.deferred) lines.push(`- Not saved this run: ${count(f.saved.deferred, 'blob')}${f.saved.stopped ? ` (${f.saved.stopped})` : ' (per-run entry cap)'}; the next run saves them.`);
  }
  if (f.withheld.length) lines.push(`- Not saved: ${count(f.withheld.length, 'image')} anonymous users cannot pull (${f.withheld.map(displayName).join(', ')}), since pull requests from forks can read the cache; \`cache-private: true\` saves them.`);
  if (f.stale.length) lines.push(`- Not saved: ${count(f.stale.length, 'tag')} the upstream no longer names this way, moved or deleted (${f.stale.map(displayName).join(', ')}).`);
  if (f.unverified.length) lines.push(`- Not saved: ${count(f.unverified.length, 'image')} the upstream could not vouch for when the job ended (${f.unverified.map(displayName).join(', ')}); a tag is saved only once the upstream confirms it.`);
  const who = f.pullsAs ? `for ${f.pullsAs}` : 'for anonymous pulls from this runner';
  if (f.quota === 'unlimited') lines.push(`- ${hub} pull quota: no limit applies ${who}.`);
  else if (f.quota) {
    const window = f.quota.window % 3600 === 0 ? count(f.quota.window / 3600, 'hour') : count(f.quota.window, 'second');
    lines.push(`- ${hub} pull quota: ${f.quota.remaining} of ${f.quota.limit} pulls left ${who}${f.quota.window ? ` (per ${window})` : ''}.`);
  }
  if (f.prefetch) {
    const { used, unused, failed } = f.prefetch;
    lines.push(`- Prefetched in the background: ${count(used.length + unused.length, 'image')}; used by the job: ${used.join(', ') || 'none'}.`);
    if (unused.length) lines.push(`- Prefetched and not used: ${unused.map((u) => `${u.ref} (${(u.ms / 1000).toFixed(1)} s of pulling)`).join(', ')}.`);
    for (const x of failed) lines.push(`- ⚠️ Prefetching ${x.ref} failed: ${x.error}`);
  }
  for (const a of f.aroundTheCache) {
    const how = a.throughMirror ? `\`docker pull ${a.throughMirror}\` comes through the cache, as does a containerd client with hosts-dir` : `list ${splitRepository(a.image).registry} in registries to cache it`;
    lines.push(`- Not through the cache: dockerd pulled ${a.image} from its registry directly (dockerd's registry-mirrors cover Docker Hub only); ${how}.`);
  }
  if (!f.unpigz) lines.push('- dockerd decompresses layers without unpigz: installing `pigz` makes pulls about 20% faster.');
  for (const p of f.problems) lines.push(`- ⚠️ ${p}`);
  return `${lines.join('\n')}\n`;
}

export async function writeReport(markdown: string): Promise<void> {
  core.info(markdown);
  if (process.env.GITHUB_STEP_SUMMARY) await core.summary.addRaw(markdown).write();
}
