// The job's report as Markdown, for the job summary and the log: what the job pulled and from where (usage.ts),
// what was restored, refused, dropped and saved, and what went around the cache.
import * as core from '@actions/core';
import type { AroundTheCache } from './around-the-cache.js';
import type { Budget, Dropped } from './cache-index.js';
import type { BackgroundRestoreFacts } from './background-restore.js';
import type { Quota } from './docker-hub.js';
import type { PrefetchUsage } from './prefetch.js';
import type { Pruned } from './prune.js';
import type { CallKind, HeldBackSummary } from './rate-limit.js';
import { displayName, DOCKER_HUB, DOCKER_HUB_API, splitRepository } from './images.js';
import type { ImageUsage, Tally, Usage, UsageTable } from './usage.js';

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
  /** Why the index was not restored, when the cache service rate-limited its look-up; empty otherwise. */
  indexLimited: string;
  /** Seconds after the main step started that the restore worker got the index main went on without; null: not late. */
  indexLateSeconds: number | null;
  restoredBlobs: number;
  restoredBytes: number;
  missingEntries: number;
  damagedBlobs: number;
  /** How the background restore went, and which of the job's images it asked for before they were in place. */
  background: BackgroundRestoreFacts | null;
  /** What was refused from the restored cache as invalid or hostile, one line each. */
  refused: string[];
  /** Images the index named that this run left out, and why. */
  dropped: Dropped[];
  budget: Budget;
  /** What the post step saved: null when saving was off or did not run. */
  saved: {
    entries: number;
    bytes: number;
    indexKey: string;
    deferred: number;
    stopped: string;
    /** Entries another job was still uploading: left to it. */
    leftToOthers?: number;
    heldBack?: HeldBackSummary;
    /** Blobs left out because their entries were evicted early in the last day. */
    withheld?: { blobs: number; bytes: number };
  } | null;
  /** Entries evicted early (the repository's cache over its size limit): null when none were, nor in the last day. */
  thrash?: {
    evicted: { entries: number; bytes: number; days: number } | null;
    survivedBytes: number;
    /** A max-size the repository's cache held (what of this cache survived), as the input takes it. */
    suggested: string;
    /** Until when their blobs are not saved again (ISO 8601). */
    until: string;
  } | null;
  /** What post deleted with the github-token: null without one. */
  pruned?: Pruned | null;
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

/** One line: a line break or another control character in a value could start a block (a heading, a table row) of its own. */
function oneLine(value: string): string {
  return String(value)
    .replace(/\p{Cc}+/gu, ' ')
    .trim();
}

// What would make a value markup: backslashes (to undo an escape), code spans, emphasis and strikethrough, links
// and images, HTML, entities, table cells, math; `_` only where it can start or end emphasis (names hold it inside
// words); and the start of an autolink (`scheme://`, `www.`).
const MARKUP = /[\\`*[\]<>|~&$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=\/\/)|(?<=(?<![A-Za-z0-9])www)\./gi;

/**
 * A value from outside the action (a name from the cache or a job, a message of the cache service, the daemon or the
 * upstream) as text the summary shows as it is: nothing in it is a link, an image, HTML or a table cell.
 */
export function mdText(value: string): string {
  return oneLine(value).replace(MARKUP, '\\$&');
}

/** A value from outside as a code span nothing in it can close: fenced by more backticks than it has in a row. */
export function mdCode(value: string): string {
  const text = oneLine(value);
  const fence = '`'.repeat(Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length)) + 1);
  // A space keeps a backtick at either end from joining the fence; CommonMark strips one each side.
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

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
function usageTable(
  table: UsageTable,
  source: string,
  extra?: { heading: string; cell: (u: ImageUsage) => string; totalNote: string },
): string[] {
  const lines = [
    `| Image | From cache | From ${source} |${extra ? ` ${extra.heading} |` : ''}`,
    `| --- | --- | --- |${extra ? ' --- |' : ''}`,
  ];
  for (const u of table.images)
    lines.push(`| ${mdText(u.image)} | ${tallyText(u.fromCache)} | ${tallyText(u.fromUpstream)} |${extra ? ` ${extra.cell(u)} |` : ''}`);
  lines.push(`| **Total** | **${tallyText(table.fromCache)}** | **${tallyText(table.fromUpstream)}** |${extra ? ' |' : ''}`, '');
  const rowBlobs = table.images.reduce((sum, u) => sum + u.fromCache.blobs + u.fromUpstream.blobs, 0);
  if (rowBlobs > table.fromCache.blobs + table.fromUpstream.blobs)
    lines.push(extra?.totalNote ?? 'The images share blobs: the total counts each once.', '');
  return lines;
}

/** What the prefetch pulled that the job never used: its own table, and what it cost from the upstream. */
function prefetchOnlyTable(table: UsageTable, prefetch: PrefetchUsage | null, source: string): string[] {
  const pulling = new Map(prefetch?.unused.map((u) => [u.ref, `${(u.ms / 1000).toFixed(1)} s`]));
  const lines = ['Prefetched and not used by the job (not in the figures above):', ''];
  lines.push(
    ...usageTable(table, source, {
      heading: 'Pulling',
      cell: (u) => pulling.get(displayName(u.key)) ?? '–',
      totalNote: "The total counts each blob once, and none of the job's images.",
    }),
  );
  if (table.fromUpstream.blobs) {
    lines.push(
      `The prefetch fetched ${tallyText(table.fromUpstream)} from ${source} for images this job did not use: \`prefetch: false\` turns it off.`,
    );
  }
  return lines.at(-1) === '' ? lines.slice(0, -1) : lines;
}

/** Where a registry's mirror pulled from: the registry's name, or the host of the organisation's mirror in front of it. */
function upstreamName(r: RegistryRow): string {
  return mdText(r.upstream === `https://${r.registry}` ? r.registry : r.upstream.replace(/^https?:\/\//, ''));
}

/** Image names, each as text. */
function names(images: string[]): string {
  return images.map((i) => mdText(displayName(i))).join(', ');
}

/** The report as Markdown: for the job summary, and readable as it is in the log. Every value from outside goes through mdText or mdCode. */
export function renderReport(f: ReportFacts): string {
  const hub = f.upstream === DOCKER_HUB_API ? 'Docker Hub' : mdText(f.upstream.replace(/^https?:\/\//, ''));
  const source =
    f.registries.length > 1 ? 'upstream' : f.registries[0] && f.registries[0].registry !== DOCKER_HUB ? upstreamName(f.registries[0]) : hub;
  const lines = ['## Pull cache', ''];
  if (f.registries.length > 1) {
    lines.push('| Registry | Mirror | Images | From cache | From upstream |', '| --- | --- | --- | --- | --- |');
    for (const r of f.registries)
      lines.push(
        `| ${mdText(r.registry)}${r.registry !== DOCKER_HUB && upstreamName(r) !== mdText(r.registry) ? ` via ${upstreamName(r)}` : ''} | ${r.mirror}${r.offline ? ' (offline)' : ''} | ${r.images} | ${tallyText(r.fromCache)} | ${tallyText(r.fromUpstream)} |`,
      );
    lines.push('');
  }
  if (f.usage && f.usage.images.length) {
    lines.push(...usageTable(f.usage, source));
    const total = f.usage.fromCache.bytes + f.usage.fromUpstream.bytes;
    lines.push(
      `Hit rate: ${total ? Math.round((100 * f.usage.fromCache.bytes) / total) : 0}% of bytes served (${f.usage.fromCache.blobs} of ${f.usage.fromCache.blobs + f.usage.fromUpstream.blobs} blobs).`,
    );
  } else if (f.usage) {
    lines.push('No image was pulled through the cache in this job.');
  }
  if (f.usage?.prefetchOnly.images.length) lines.push('', ...prefetchOnlyTable(f.usage.prefetchOnly, f.prefetch, source));
  lines.push('');
  if (f.restoredKey) {
    const damaged = [
      f.missingEntries && `${count(f.missingEntries, 'entry', 'entries')} gone from the cache`,
      f.damagedBlobs && `${count(f.damagedBlobs, 'blob')} failed the digest check and dropped`,
    ].filter(Boolean);
    lines.push(
      `- Restored: ${mdCode(f.restoredKey)}, ${count(f.restoredBlobs, 'blob')}, ${formatBytes(f.restoredBytes)}${damaged.length ? ` (${damaged.join('; ')}: fetched again on demand)` : ''}.`,
    );
    if (f.indexLateSeconds !== null)
      lines.push(
        `- The cache index came ${f.indexLateSeconds} s late: the cache service rate-limited its look-up. The main step went on at once; pulls before the restore had their images came from the upstream.`,
      );
  } else if (f.indexLimited) {
    lines.push(`- ⚠️ Restored: nothing (${f.indexLimited}); nothing was saved either, so the next run restores the cache as it is.`);
  } else {
    lines.push(
      f.refused.length
        ? '- Restored: nothing (the cache index was refused, see below).'
        : '- Restored: nothing (no cache yet for this key prefix and platform).',
    );
  }
  lines.push(...backgroundRestoreLines(f.background));
  if (f.refused.length) {
    lines.push(`- Refused from the cache as invalid (not restored, not served): ${count(f.refused.length, 'item')}:`);
    for (const problem of f.refused.slice(0, MAX_REFUSED_LINES)) lines.push(`  - ${mdText(problem)}`);
    if (f.refused.length > MAX_REFUSED_LINES) lines.push(`  - and ${f.refused.length - MAX_REFUSED_LINES} more (see the step's warnings)`);
  }
  const dropped = (reason: Dropped['reason'], why: string) => {
    const images = f.dropped.filter((d) => d.reason === reason);
    if (images.length)
      lines.push(
        `- Dropped: ${count(images.length, 'image')} ${why} (${images.map((d) => mdText(displayName(d.image))).join(', ')}; ${formatBytes(images.reduce((s, d) => s + d.bytes, 0))}).`,
      );
  };
  dropped('age', `unused for more than ${count(f.budget.maxAgeDays, 'day')} (max-age)`);
  dropped('size', `that did not fit in ${formatBytes(f.budget.maxBytes)} (max-size)`);
  lines.push(...thrashLines(f));
  if (f.saveDisabled) lines.push('- Saved: nothing (`save: false`).');
  else if (f.saved) {
    if (f.saved.entries || f.saved.indexKey) {
      lines.push(
        `- Saved: ${count(f.saved.entries, 'new entry', 'new entries')}, ${formatBytes(f.saved.bytes)}${f.saved.indexKey ? `, index ${mdCode(f.saved.indexKey)}` : ''}.`,
      );
    } else lines.push(f.saved.deferred ? '- Saved: nothing.' : '- Saved: nothing new.');
    if (f.saved.deferred)
      lines.push(
        `- Not saved this run: ${count(f.saved.deferred, 'blob')}${f.saved.stopped ? ` (${mdText(f.saved.stopped)})` : ' (per-run entry cap)'}; the next run saves them.`,
      );
    if (f.saved.leftToOthers)
      lines.push(`- Left to another job of the run that was saving the same blobs: ${count(f.saved.leftToOthers, 'entry', 'entries')}.`);
    if (f.saved.withheld?.blobs && f.thrash)
      lines.push(
        `- Not saved again until ${utcMinute(f.thrash.until)}: ${count(f.saved.withheld.blobs, 'blob')} (${formatBytes(f.saved.withheld.bytes)}) of entries evicted early; saved now, they would push out other entries (their images still work: what the cache lacks comes from the upstream).`,
      );
    if (f.saved.heldBack?.refused)
      lines.push(
        `- The cache service rate-limited saving (${kindsText(f.saved.heldBack.kinds)}): waited ${Math.round(f.saved.heldBack.ms / 1000)} s.`,
      );
  }
  lines.push(...prunedLines(f.pruned ?? null, f.budget.maxAgeDays));
  if (f.withheld.length)
    lines.push(
      `- Not saved: ${count(f.withheld.length, 'image')} anonymous users cannot pull (${names(f.withheld)}), since pull requests from forks can read the cache; \`cache-private: true\` saves them.`,
    );
  if (f.stale.length)
    lines.push(`- Not saved: ${count(f.stale.length, 'tag')} the upstream no longer names this way, moved or deleted (${names(f.stale)}).`);
  if (f.unverified.length)
    lines.push(
      `- Not saved: ${count(f.unverified.length, 'image')} the upstream could not vouch for when the job ended (${names(f.unverified)}); a tag is saved only once the upstream confirms it.`,
    );
  const who = f.pullsAs ? `for ${mdText(f.pullsAs)}` : 'for anonymous pulls from this runner';
  if (f.quota === 'unlimited') lines.push(`- ${hub} pull quota: no limit applies ${who}.`);
  else if (f.quota) {
    const window = f.quota.window % 3600 === 0 ? count(f.quota.window / 3600, 'hour') : count(f.quota.window, 'second');
    lines.push(
      `- ${hub} pull quota: ${f.quota.remaining} of ${f.quota.limit} pulls left ${who}${f.quota.window ? ` (per ${window})` : ''}.`,
    );
  }
  if (f.prefetch) {
    const { used, unused, failed } = f.prefetch;
    lines.push(
      `- Prefetched in the background: ${count(used.length + unused.length, 'image')}; used by the job: ${names(used) || 'none'}.`,
    );
    for (const x of failed) lines.push(`- ⚠️ Prefetching ${mdText(x.ref)} failed: ${mdText(x.error)}`);
  }
  for (const a of f.aroundTheCache) {
    const how = a.throughMirror
      ? `${mdCode(`docker pull ${a.throughMirror}`)} comes through the cache, as does a containerd client with hosts-dir`
      : `list ${mdText(splitRepository(a.image).registry)} in registries to cache it`;
    lines.push(
      `- Not through the cache: dockerd pulled ${mdText(a.image)} from its registry directly (dockerd's registry-mirrors cover Docker Hub only); ${how}.`,
    );
  }
  lines.push(...builtInBuildkitLines(f.builtInBuildkit));
  if (!f.unpigz) lines.push('- dockerd decompresses layers without unpigz: installing `pigz` makes pulls about 20% faster.');
  for (const p of f.problems) lines.push(`- ⚠️ ${mdText(p)}`);
  return `${lines.join('\n')}\n`;
}

/** Entries evicted within days of their last use: the repository's Actions cache is over its size limit. */
function thrashLines(f: ReportFacts): string[] {
  const evicted = f.thrash?.evicted;
  if (!f.thrash || !evicted) return [];
  const now = f.budget.maxBytes ? `it is ${formatBytes(f.budget.maxBytes)} now` : 'it is 0, no limit, now';
  return [
    `- ⚠️ Evicted early: ${count(evicted.entries, 'entry', 'entries')} (${formatBytes(evicted.bytes)}) this cache saved or restored in the last ${evicted.days === 1 ? 'day' : count(evicted.days, 'day')} ${evicted.entries === 1 ? 'was' : 'were'} gone: the repository's Actions cache is over its size limit, and GitHub evicts the least recently used entries first (unused ones only after 7 days). Their blobs are not saved again until ${utcMinute(f.thrash.until)}. Set \`max-size: ${f.thrash.suggested}\` or less (what of this cache survived, ${formatBytes(f.thrash.survivedBytes)}; ${now}), or make room in the repository's Actions cache.`,
  ];
}

/** An ISO 8601 time, to the minute, as the report shows it. */
function utcMinute(time: string): string {
  return `${time.slice(0, 16).replace('T', ' ')} UTC`;
}

/** When the background restore finished, and the job's pulls that came before their image was in place. */
function backgroundRestoreLines(b: BackgroundRestoreFacts | null): string[] {
  if (!b) return [];
  if (!b.finished) {
    return [
      '- ⚠️ The background restore did not finish within cache-timeout: nothing was saved, so the next run restores the cache as it was.',
    ];
  }
  const lines = [
    `- Restored in the background: ${count(b.images, 'image')} in ${b.seconds} s after the main step${b.early.length ? '.' : ', before the job asked for any of them.'}`,
    ...restoreHeldBackLines(b),
  ];
  if (b.early.length) {
    lines.push(
      `- Asked for before the restore had them in place (the pull waited for the image; what the restore did not bring came from the upstream): ${count(b.early.length, 'image')}:`,
    );
    for (const e of b.early) {
      const inPlace = e.inPlaceAt === null ? 'not restored whole' : `in place at ${e.inPlaceAt} s`;
      lines.push(
        `  - ${mdText(e.image)}: asked at ${e.askedAt} s, ${inPlace}; ${Math.round(e.restoredShare * 100)}% of the restore was done when asked.`,
      );
    }
  }
  return lines;
}

/** What the cache service's rate limits cost the restore. */
function restoreHeldBackLines(b: BackgroundRestoreFacts): string[] {
  const held = b.heldBack;
  if (!held) return [];
  const limited = `the cache service rate-limited ${kindsText(held.kinds)}`;
  const lines: string[] = [];
  if (held.late) lines.push(`- ${count(held.late, 'entry', 'entries')} restored ${held.seconds} s late: ${limited}.`);
  if (held.givenUp)
    lines.push(
      `- ⚠️ ${count(held.givenUp, 'entry', 'entries')} not restored: ${limited} past what cache-timeout left; their blobs came from the upstream, and the entries stay in the cache.`,
    );
  if (!lines.length) lines.push(`- The restore waited ${held.seconds} s: ${limited}.`);
  return lines;
}

function kindsText(kinds: CallKind[]): string {
  if (!kinds.length) return 'its calls';
  return kinds.length === 1 ? kinds[0] : `${kinds.slice(0, -1).join(', ')} and ${kinds.at(-1)}`;
}

/** What pruning freed, or why it deleted nothing: one line, never a warning (a read-only token is a choice). */
function prunedLines(p: Pruned | null, maxAgeDays: number): string[] {
  if (!p) return [];
  const lines: string[] = [];
  if (p.deleted) lines.push(`- Pruned ${count(p.deleted, 'entry', 'entries')} the index no longer names: ${formatBytes(p.bytes)} freed.`);
  // Each reason says itself whether anything was deleted ("…; nothing deleted", "…; the rest stays").
  if (p.reason) lines.push(`- ${mdText(p.reason.charAt(0).toUpperCase() + p.reason.slice(1))}.`);
  else if (!p.deleted)
    lines.push(
      `- Pruned nothing: every entry of this cache is named by an index${maxAgeDays ? ` of the last ${count(maxAgeDays, 'day')}` : ''} or less than an hour old.`,
    );
  return lines;
}

/** dockerd's own BuildKit, when this daemon's cannot pull through the mirror: a line saying so and the ways through. */
function builtInBuildkitLines(notice: string): string[] {
  return notice ? [`- Not through the cache: ${notice}`] : [];
}

export async function writeReport(markdown: string): Promise<void> {
  core.info(markdown);
  if (process.env.GITHUB_STEP_SUMMARY) await core.summary.addRaw(markdown).write();
}
