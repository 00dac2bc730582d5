// Restores one Actions cache entry without trusting its archive. @actions/cache extracts with `tar -P`, which
// honours absolute and `..` member names, symlinks and hard links: an entry made by anyone who can save into this
// cache scope could write wherever the runner user can. So the action asks the cache service for the entry itself
// (the same Twirp call and signed URL the library uses), downloads it with a size bound, lists the archive, refuses
// it unless every member is a regular file or directory it expects, no larger than expected, and only then
// extracts it, without -P, into an empty directory of its own.
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReadableStream } from 'node:stream/web';
import { commandOutput } from './processes.js';
import { sha256Hex } from './sha256.js';

/** How @actions/cache compresses on this runner; part of every entry's version. */
export type Compression = 'zstd-without-long' | 'gzip';

/** The files an entry may hold, by path relative to the directory it is restored into, with their size bound. */
export type ExpectedFiles = Map<string, number>;

/** Why an archive was refused: the entry is hostile or damaged, and nothing of it was extracted. */
export class RefusedArchive extends Error {
  override name = 'RefusedArchive';
}

/** The version @actions/cache gives an entry saved with these paths (its getCacheVersion, salt 1.0, on Linux). */
export function cacheVersion(paths: string[], compression: Compression): string {
  return sha256Hex([...paths, compression, '1.0'].join('|'));
}

let compressionOnRunner: Promise<Compression> | undefined;

/** As @actions/cache decides: zstd when the zstd CLI answers, gzip otherwise. */
function runnerCompression(): Promise<Compression> {
  compressionOnRunner ??= commandOutput('zstd', ['--quiet', '--version'], { timeout: 10_000 }).then(
    (out) => (out.trim() ? 'zstd-without-long' : 'gzip'),
    () => 'gzip',
  );
  return compressionOnRunner;
}

export interface EntryRequest {
  /** The paths it was saved with (the version hashes them). */
  paths: string[];
  /** The key, or a key prefix (the cache service matches prefixes, newest first). */
  key: string;
  /** Every file the archive may hold, relative to `into`, with the most bytes it may have. */
  expected: ExpectedFiles;
  /** An empty directory that receives the files; the archive is downloaded beside it. */
  into: string;
  signal: AbortSignal;
}

/**
 * Restores the entry into `into`; returns the key that matched, or undefined when the cache holds no such entry.
 * Throws RefusedArchive when the archive holds anything not expected (nothing is extracted then).
 */
export async function restoreEntry(request: EntryRequest): Promise<string | undefined> {
  const compression = await runnerCompression();
  const found = await lookupEntry(request.paths, request.key, compression, request.signal);
  if (!found) return undefined;
  await mkdir(request.into, { recursive: true });
  const archive = `${request.into}.archive`;
  try {
    await download(found.url, archive, archiveBound(request.expected), request.signal);
    const listing = await tar(['-t', '-v', '--numeric-owner', '-f', archive, ...decompress(compression)], request.signal);
    const problem = archiveProblem(listing, request.expected);
    if (problem) throw new RefusedArchive(problem);
    await tar(
      ['-x', '-f', archive, '-C', request.into, '--no-same-owner', '--no-same-permissions', ...decompress(compression)],
      request.signal,
    );
    return found.key;
  } catch (e) {
    throw e instanceof RefusedArchive ? new RefusedArchive(`${found.key}: ${e.message}`) : e;
  } finally {
    await rm(archive, { force: true });
  }
}

/** The most bytes an archive of these files can take compressed: layers do not compress, tar adds headers. */
function archiveBound(expected: ExpectedFiles): number {
  const bytes = [...expected.values()].reduce((a, b) => a + b, 0);
  return Math.ceil(bytes * 1.01) + 1024 * 1024;
}

/** Attempts at a lookup the cache service fails with a 5xx or a dropped connection, as @actions/cache retries them. */
const LOOKUP_ATTEMPTS = 3;

/** GetCacheEntryDownloadURL, as @actions/cache calls it against the cache service v2. */
async function lookupEntry(
  paths: string[],
  key: string,
  compression: Compression,
  signal: AbortSignal,
): Promise<{ key: string; url: string } | undefined> {
  const base = process.env.ACTIONS_RESULTS_URL;
  if (!process.env.ACTIONS_CACHE_SERVICE_V2 || !base)
    throw new Error('the Actions cache service v2 is not available to this job (ACTIONS_CACHE_SERVICE_V2, ACTIONS_RESULTS_URL)');
  const url = new URL('twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL', base.endsWith('/') ? base : `${base}/`);
  for (let attempt = 1; ; attempt++) {
    let failure: string;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          authorization: `Bearer ${process.env.ACTIONS_RUNTIME_TOKEN ?? ''}`,
        },
        body: JSON.stringify({ key, restore_keys: [], version: cacheVersion(paths, compression) }),
        signal,
      });
      const body = (await res.json().catch(() => ({}))) as { ok?: boolean; signed_download_url?: string; matched_key?: string };
      if (res.ok)
        return body.ok && body.signed_download_url && body.matched_key
          ? { key: body.matched_key, url: body.signed_download_url }
          : undefined;
      failure = `the cache service answered ${res.status} looking up ${key}`;
      if (res.status < 500) throw new Error(failure);
    } catch (e) {
      if (signal.aborted || !(e instanceof TypeError)) throw e;
      failure = `the cache service could not be reached looking up ${key} (${(e.cause as Error | undefined)?.message ?? e.message})`;
    }
    if (attempt === LOOKUP_ATTEMPTS) throw new Error(failure);
    await sleep(500 * attempt);
  }
}

/** Streams the archive to a file, stopping at maxBytes: a hostile entry cannot fill the disk. */
async function download(url: string, file: string, maxBytes: number, signal: AbortSignal): Promise<void> {
  const res = await fetch(url, { signal });
  if (!res.ok || !res.body) throw new Error(`downloading the entry failed: HTTP ${res.status}`);
  let bytes = 0;
  const bounded = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done(bytes > maxBytes ? new RefusedArchive(`the archive is larger than its files can be (${maxBytes} bytes)`) : null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(res.body as ReadableStream<Uint8Array>), bounded, createWriteStream(file), { signal });
}

function decompress(compression: Compression): string[] {
  return compression === 'gzip' ? ['-z'] : ['--use-compress-program', 'zstd'];
}

/** GNU tar's verbose listing: type and mode, owner/group, size, date, time, name (names are escaped, one line each). */
const LISTING_LINE = /^([-d])[-rwxsStT]{9} \d+\/\d+ +(\d+) \d{4}-\d\d-\d\d \d\d:\d\d (.+)$/;

/**
 * Why an archive listing is not what was expected, or '' when it is: only regular files at the expected paths, each
 * once and within its size, and the directories above them. Links, devices, absolute or `..` names: refused.
 */
export function archiveProblem(listing: string, expected: ExpectedFiles): string {
  const directories = new Set([...expected.keys()].flatMap(ancestors));
  const seen = new Set<string>();
  for (const line of listing.split('\n').filter(Boolean)) {
    const m = LISTING_LINE.exec(line);
    if (!m) return `it holds a member that is not a plain file or directory: ${quote(line)}`;
    const [, type, size, name] = m;
    if (type === 'd') {
      if (!directories.has(name.replace(/\/$/, ''))) return `it holds an unexpected directory ${quote(name)}`;
      continue;
    }
    const bound = expected.get(name);
    if (bound === undefined) return `it holds an unexpected file ${quote(name)}`;
    if (seen.has(name)) return `it holds ${quote(name)} twice`;
    if (Number(size) > bound) return `${quote(name)} is ${size} bytes, more than the ${bound} it may have`;
    seen.add(name);
  }
  return '';
}

function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let dir = dirname(path); dir !== '.' && dir !== '/'; dir = dirname(dir)) out.push(dir);
  return out;
}

function quote(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(clean.length > 120 ? `${clean.slice(0, 117)}...` : clean);
}

function tar(args: string[], signal: AbortSignal): Promise<string> {
  return commandOutput('tar', args, { signal, maxBuffer: 16 * 1024 * 1024 });
}
