// What the job pulled, and from where. The registry's own counters are wrong in 2.8, so the figures are
// computed from its access log and storage: a blob served under a repository that linked it before the job is a
// hit; any other blob it served came from upstream during the job. The job's images are reported apart from what
// the prefetch pulled on speculation.
import * as core from '@actions/core';
import { imageKey, type Budget, type Dropped } from './cache-index.js';
import type { Quota } from './docker-hub.js';
import { PREFETCH_AGENT, type PrefetchUsage } from './prefetch.js';
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
export function accountUsage(requests: RegistryRequest[], before: StorageState, after: StorageState, manifests: Manifests, ranByJob: ReadonlySet<string> = new Set()): Usage {
  const served = requests.filter((r) => r.status === 200);
  const blobGets = served.filter((r) => r.kind === 'blobs' && r.method === 'GET');
  // The registry looks blobs up per repository: one held under another repository is fetched again.
  const linkedBefore = (repository: string, digest: string) => digest in before.blobs && (before.repositories[repository]?.layers.includes(digest) ?? false);
  const originOfRequest = (r: RegistryRequest): Origin => (linkedBefore(r.repository, r.reference) ? 'cache' : 'upstream');
  const servedUnder = new Map(blobGets.map((r) => [`${r.repository}@${r.reference}`, originOfRequest(r)]));
  // A blob the daemon did not ask for under this image's repository came with the first pull that did ask for it.
  const firstServed = new Map<string, Origin>();
  for (const r of blobGets) if (!firstServed.has(r.reference)) firstServed.set(r.reference, originOfRequest(r));
  const originOf = (repository: string, digest: string) => servedUnder.get(`${repository}@${digest}`) ?? firstServed.get(digest);

  const manifestsByDigest = new Set(served.filter((r) => r.kind === 'manifests' && r.method === 'GET' && isDigest(r.reference)).map((r) => `${r.repository}@${r.reference}`));
  const askedByJob = new Set(served.filter((r) => r.kind === 'manifests' && !r.agent.includes(PREFETCH_AGENT)).map((r) => `${r.repository}@${r.reference}`));
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
    const blobs = new Map(blobGets.filter((r) => !named.has(r.reference) && r.agent.includes(PREFETCH_AGENT) === byPrefetch).map((r) => [r.reference, originOfRequest(r)]));
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
  const once = new Map(rows.flatMap((r) => [...r.blobs].filter(([digest]) => !counted.has(digest)).map(([digest, origin]) => [`${origin} ${digest}`, [digest, origin] as const])));
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
  /** Why `docker build` with dockerd's own BuildKit went around the cache (builtInBuildkitNotice); empty when it did not. */
  builtInBuildkit: string;
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

/** The images' rows and the total; when images share blobs, a line says the total counts each once. */
function usageTable(table: UsageTable, source: string, extra?: { heading: string; cell: (u: ImageUsage) => string; totalNote: string }): string[] {
  const lines = [`| Image | From cache | From ${source} |${extra ? ` ${extra.heading} |` : ''}`, `| --- | --- | --- |${extra ? ' --- |' : ''}`];
  for (const u of table.images) lines.push(`| ${u.image} | ${tallyText(u.fromCache)} | ${tallyText(u.fromUpstream)} |${extra ? ` ${extra.cell(u)} |` : ''}`);
  lines.push(`| **Total** | **${tallyText(table.fromCache)}** | **${tallyText(table.fromUpstream)}** |${extra ? ' |' : ''}`, '');
  const rowBlobs = table.images.reduce((sum, u) => sum + u.fromCache.blobs + u.fromUpstream.blobs, 0);
  if (rowBlobs > table.fromCache.blobs + table.fromUpstream.blobs) lines.push(extra?.totalNote ?? 'The images share blobs: the total counts each once.', '');
  return lines;
}

/** What the prefetch pulled that the job never used: its own table, and what it cost from the upstream. */
function prefetchOnlyTable(table: UsageTable, prefetch: PrefetchUsage | null, source: string): string[] {
  const pulling = new Map(prefetch?.unused.map((u) => [u.ref, `${(u.ms / 1000).toFixed(1)} s`]));
  const lines = ['Prefetched and not used by the job (not in the figures above):', ''];
  lines.push(...usageTable(table, source, { heading: 'Pulling', cell: (u) => pulling.get(displayName(u.key)) ?? '–', totalNote: "The total counts each blob once, and none of the job's images." }));
  if (table.fromUpstream.blobs) {
    lines.push(`The prefetch fetched ${tallyText(table.fromUpstream)} from ${source} for images this job did not use: \`prefetch: false\` turns it off.`);
  }
  return lines.at(-1) === '' ? lines.slice(0, -1) : lines;
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
    lines.push(...usageTable(f.usage, source));
    const total = f.usage.fromCache.bytes + f.usage.fromUpstream.bytes;
    lines.push(`Hit rate: ${total ? Math.round((100 * f.usage.fromCache.bytes) / total) : 0}% of bytes served (${f.usage.fromCache.blobs} of ${f.usage.fromCache.blobs + f.usage.fromUpstream.blobs} blobs).`);
  } else if (f.usage) {
    lines.push('No image was pulled through the cache in this job.');
  }
  if (f.usage?.prefetchOnly.images.length) lines.push('', ...prefetchOnlyTable(f.usage.prefetchOnly, f.prefetch, source));
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
    for (const x of failed) lines.push(`- ⚠️ Prefetching ${x.ref} failed: ${x.error}`);
  }
  for (const a of f.aroundTheCache) {
    const how = a.throughMirror ? `\`docker pull ${a.throughMirror}\` comes through the cache, as does a containerd client with hosts-dir` : `list ${splitRepository(a.image).registry} in registries to cache it`;
    lines.push(`- Not through the cache: dockerd pulled ${a.image} from its registry directly (dockerd's registry-mirrors cover Docker Hub only); ${how}.`);
  }
  lines.push(...builtInBuildkitLines(f.builtInBuildkit));
  if (!f.unpigz) lines.push('- dockerd decompresses layers without unpigz: installing `pigz` makes pulls about 20% faster.');
  for (const p of f.problems) lines.push(`- ⚠️ ${p}`);
  return `${lines.join('\n')}\n`;
}

/** dockerd's own BuildKit, when this daemon's cannot pull through the mirror: a line saying so and the ways through. */
function builtInBuildkitLines(notice: string): string[] {
  return notice ? [`- Not through the cache: ${notice}`] : [];
}

export async function writeReport(markdown: string): Promise<void> {
  core.info(markdown);
  if (process.env.GITHUB_STEP_SUMMARY) await core.summary.addRaw(markdown).write();
}
