// What the tests' cache service holds, read as the action lays it out: which entry holds a blob, and an entry's
// archive with one blob's bytes changed (what a damaged upload leaves).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CacheService } from './cache-service.js';

/** Where the action's archives put a blob, relative to the work directory. */
export function blobMember(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return `storage/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

/** The entry's archive as a plain tar. */
async function entryTar(cache: CacheService, key: string): Promise<Buffer> {
  return execFileSync('zstd', ['-d', '--long=30', '-c'], { input: await cache.entryContent(key), maxBuffer: 1024 * 1024 * 1024 });
}

function tarMembers(tar: Buffer): string[] {
  return execFileSync('tar', ['-t'], { input: tar, maxBuffer: 64 * 1024 * 1024 })
    .toString()
    .split('\n')
    .filter(Boolean);
}

/** The paths an entry's archive holds. */
export async function entryMembers(cache: CacheService, key: string): Promise<string[]> {
  return tarMembers(await entryTar(cache, key));
}

/** The key of the newest finalized entry under `prefix` whose archive holds the blob. */
export async function entryHolding(cache: CacheService, prefix: string, digest: string): Promise<string> {
  const candidates = cache
    .entries()
    .filter((e) => e.finalized && e.key.startsWith(`${prefix}-`) && !e.key.startsWith(`${prefix}-index-`))
    .reverse();
  for (const e of candidates) if ((await entryMembers(cache, e.key)).includes(blobMember(digest))) return e.key;
  throw new Error(`no entry under ${prefix} holds ${digest}`);
}

/** Whether a finalized entry under `prefix` holds the blob. */
export async function cacheHolds(cache: CacheService, prefix: string, digest: string): Promise<boolean> {
  return entryHolding(cache, prefix, digest).then(
    () => true,
    () => false,
  );
}

/** The entry's archive with the blob's bytes replaced by `bytes`, every other member as it was. */
export async function withBlobReplaced(cache: CacheService, key: string, digest: string, bytes: Buffer, dir: string): Promise<Buffer> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    const tar = await entryTar(cache, key);
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    writeFileSync(join(dir, blobMember(digest)), bytes);
    const members = tarMembers(tar);
    execFileSync('tar', ['--posix', '-cf', join(dir, '.entry.tar'), '-C', dir, ...members]);
    execFileSync('zstd', ['-q', '-f', '--long=30', join(dir, '.entry.tar'), '-o', join(dir, '.entry.tzst')]);
    return readFileSync(join(dir, '.entry.tzst'));
  } finally {
    rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
  }
}
