// The registry's filesystem storage, read and laid out by digest. Blobs are content; links say which
// repository has which blob, manifest and tag (the proxy serves a blob as a hit only under a repository
// that links it).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const V2 = 'docker/registry/v2';

export interface RepositoryLinks {
  tags: Record<string, string>;
  manifests: string[];
  layers: string[];
}

export interface StorageState {
  /** digest -> size in bytes */
  blobs: Record<string, number>;
  repositories: Record<string, RepositoryLinks>;
}

/** Where a blob's bytes live, relative to the storage root. */
export function blobPath(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return `${V2}/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

export function isDigest(value: string): boolean {
  return /^sha256:[0-9a-f]{64}$/.test(value);
}

/** Everything the storage holds: its blobs with their sizes and each repository's links. */
export async function scanStorage(root: string): Promise<StorageState> {
  const blobs: Record<string, number> = {};
  for (const prefix of await list(join(root, V2, 'blobs/sha256'))) {
    for (const hex of await list(join(root, V2, 'blobs/sha256', prefix))) {
      const info = await stat(join(root, V2, 'blobs/sha256', prefix, hex, 'data')).catch(() => undefined);
      if (info?.isFile()) blobs[`sha256:${hex}`] = info.size;
    }
  }
  const repositories: Record<string, RepositoryLinks> = {};
  await walkRepositories(join(root, V2, 'repositories'), '', repositories);
  return { blobs, repositories };
}

async function walkRepositories(dir: string, name: string, out: Record<string, RepositoryLinks>): Promise<void> {
  const entries = await list(dir);
  if (entries.includes('_manifests') || entries.includes('_layers')) {
    out[name] = {
      tags: Object.fromEntries(
        (await Promise.all((await list(join(dir, '_manifests/tags'))).map(async (tag) => [tag, await readLink(join(dir, '_manifests/tags', tag, 'current/link'))]))).filter(
          ([, digest]) => digest !== undefined,
        ),
      ),
      manifests: (await list(join(dir, '_manifests/revisions/sha256'))).map((hex) => `sha256:${hex}`),
      layers: (await list(join(dir, '_layers/sha256'))).map((hex) => `sha256:${hex}`),
    };
  }
  for (const entry of entries) {
    if (!entry.startsWith('_')) await walkRepositories(join(dir, entry), name ? `${name}/${entry}` : entry, out);
  }
}

/** Writes the link files that make `repositories` serve, for the blobs present in `blobs` only. */
export async function writeLinks(root: string, repositories: Record<string, RepositoryLinks>, blobs: Record<string, number>): Promise<void> {
  const writes: Promise<void>[] = [];
  const link = (path: string, digest: string) =>
    writes.push(mkdir(join(root, V2, 'repositories', path), { recursive: true }).then(() => writeFile(join(root, V2, 'repositories', path, 'link'), digest)));
  for (const [name, repo] of Object.entries(repositories)) {
    for (const d of repo.layers) if (d in blobs) link(`${name}/_layers/sha256/${hex(d)}`, d);
    for (const d of repo.manifests) if (d in blobs) link(`${name}/_manifests/revisions/sha256/${hex(d)}`, d);
    for (const [tag, d] of Object.entries(repo.tags)) {
      if (!(d in blobs)) continue;
      link(`${name}/_manifests/tags/${tag}/current`, d);
      link(`${name}/_manifests/tags/${tag}/index/sha256/${hex(d)}`, d);
    }
  }
  await Promise.all(writes);
}

/** Checks a blob's bytes against its digest; a blob that does not match is removed. */
export async function verifyBlob(root: string, digest: string): Promise<boolean> {
  const path = join(root, blobPath(digest));
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch {
    return false;
  }
  if (`sha256:${hash.digest('hex')}` === digest) return true;
  await rm(join(path, '..'), { recursive: true, force: true });
  return false;
}

export async function readBlobJson(root: string, digest: string): Promise<unknown> {
  return JSON.parse(await readFile(join(root, blobPath(digest)), 'utf8'));
}

function hex(digest: string): string {
  return digest.slice('sha256:'.length);
}

async function list(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

async function readLink(path: string): Promise<string | undefined> {
  const text = (await readFile(path, 'utf8').catch(() => '')).trim();
  return isDigest(text) ? text : undefined;
}
