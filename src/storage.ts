// The registries' filesystem storage, read and laid out by digest. Blobs are content; links say which
// repository has which blob, manifest and tag (the proxy serves a blob from storage only under a
// repository that links it). Docker Hub's proxy has the storage root; every other registry's proxy has a
// root of its own under registries/HOST, whose blobs directory is a link to the shared one, so a layer
// two registries serve is stored, and cached, once.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, lstat, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { mapBounded } from './bounded.js';
import { DOCKER_HUB, splitRepository, type Manifests } from './images.js';
import { streamSha256Hex } from './sha256.js';

const V2 = 'docker/registry/v2';
const REGISTRIES = 'registries';

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

/** Whether a value is a sha256 digest: a string of that grammar (restored JSON may hold anything in its place). */
export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && /^sha256:[0-9a-f]{64}$/.test(value);
}

/**
 * `relative` under `root`, refused when it would leave it. Every path computed from restored names goes through
 * this before it is touched, whatever checked the names before.
 */
export function inside(root: string, relative: string): string {
  const base = resolve(root);
  const path = resolve(base, relative);
  if (!path.startsWith(`${base}/`)) throw new Error(`${JSON.stringify(relative.slice(0, 200))} leaves ${base}`);
  return path;
}

/** The storage root of one registry's proxy, relative to the shared storage root. */
function registryRoot(registry: string): string {
  return registry === DOCKER_HUB ? '' : `${REGISTRIES}/${registry}/`;
}

/** Makes a registry's root, its blobs a link to the shared blobs; returns its path. Idempotent. */
export async function prepareRegistryRoot(storage: string, registry: string): Promise<string> {
  await mkdir(join(storage, V2, 'blobs'), { recursive: true });
  const root = join(storage, registryRoot(registry));
  if (registry === DOCKER_HUB) return root;
  await mkdir(join(root, V2), { recursive: true });
  // From registries/HOST/docker/registry/v2 up to the storage root.
  await symlink(`../../../../../${V2}/blobs`, join(root, V2, 'blobs')).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  return root;
}

/** Everything the storage holds: its blobs with their sizes and each repository's links, named as docker names them. */
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
  for (const registry of await list(join(root, REGISTRIES))) {
    await walkRepositories(join(root, REGISTRIES, registry, V2, 'repositories'), registry, repositories);
  }
  return { blobs, repositories };
}

async function walkRepositories(dir: string, name: string, out: Record<string, RepositoryLinks>): Promise<void> {
  const entries = await list(dir);
  if (entries.includes('_manifests') || entries.includes('_layers')) {
    out[name] = {
      tags: Object.fromEntries(
        (
          await mapBounded(await list(join(dir, '_manifests/tags')), 32, async (tag) => [
            tag,
            await readLink(join(dir, '_manifests/tags', tag, 'current/link')),
          ])
        ).filter(([, digest]) => digest !== undefined),
      ),
      manifests: (await list(join(dir, '_manifests/revisions/sha256'))).map((hex) => `sha256:${hex}`),
      layers: (await list(join(dir, '_layers/sha256'))).map((hex) => `sha256:${hex}`),
    };
  }
  for (const entry of entries) {
    if (!entry.startsWith('_')) await walkRepositories(join(dir, entry), name ? `${name}/${entry}` : entry, out);
  }
}

/** What writeLinks lays down for one image. */
export interface ImageLinks {
  repository: string;
  /** A tag, or the manifest digest for an image pulled by digest. */
  reference: string;
  manifests: string[];
  blobs: string[];
}

/**
 * Writes the links that make the images serve, for the blobs present only. Every config and layer an image
 * needs is linked under the image's repository, so the proxy serves it from storage even when this
 * repository never asked for it (the daemon had the layer already from another image). The registry may be
 * serving while they are written: each link appears whole, and a tag it linked itself in the meantime (fresher
 * than the cache's) is left as it is.
 */
export async function writeLinks(root: string, images: ImageLinks[], present: ReadonlySet<string>): Promise<void> {
  const links = new Map<string, string>();
  const registries = new Set<string>();
  for (const image of images) {
    const [manifest] = image.manifests;
    const blobs = image.blobs.filter((b) => present.has(b));
    // Without its manifest (its entry evicted) an image gets no tag, but the layers it shares with another image
    // still serve: the proxy fetches the manifest and takes the rest from storage.
    if (!present.has(manifest) && blobs.length === 0) continue;
    const { registry, repository } = splitRepository(image.repository);
    registries.add(registry);
    const repo = `${registryRoot(registry)}${V2}/repositories/${repository}`;
    for (const d of blobs) links.set(`${repo}/_layers/sha256/${hex(d)}`, d);
    if (!present.has(manifest)) continue;
    if (!isDigest(image.reference)) {
      links.set(`${repo}/_manifests/tags/${image.reference}/current`, manifest);
      links.set(`${repo}/_manifests/tags/${image.reference}/index/sha256/${hex(manifest)}`, manifest);
    }
    for (const d of image.manifests.filter((m) => present.has(m))) links.set(`${repo}/_manifests/revisions/sha256/${hex(d)}`, d);
  }
  for (const registry of registries) await prepareRegistryRoot(root, registry);
  await mapBounded([...links], 32, async ([dir, digest]) => {
    const path = inside(root, `${dir}/link`);
    await mkdir(join(path, '..'), { recursive: true });
    const written = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
    await writeFile(written, digest);
    try {
      // A tag's current link is made only where there is none; every other link names its own digest.
      if (dir.endsWith('/current'))
        await link(written, path).catch((e: NodeJS.ErrnoException) => (e.code === 'EEXIST' ? undefined : Promise.reject(e)));
      else await rename(written, path);
    } finally {
      await rm(written, { force: true });
    }
  });
}

/**
 * Whether the file at path is a regular file (not a link) whose bytes have this digest. A file that is not is
 * never served: the caller moves only checked files into the storage.
 */
export async function holdsDigest(path: string, digest: string): Promise<boolean> {
  try {
    return (await lstat(path)).isFile() && `sha256:${await streamSha256Hex(createReadStream(path))}` === digest;
  } catch {
    return false;
  }
}

/** Every manifest a repository in storage names, parsed. */
export async function readManifests(root: string, storage: StorageState): Promise<Manifests> {
  const digests = new Set(
    Object.values(storage.repositories)
      .flatMap((r) => r.manifests)
      .filter((d) => d in storage.blobs),
  );
  const parsed = await mapBounded(
    [...digests],
    32,
    async (d) => [d, JSON.parse(await readFile(join(root, blobPath(d)), 'utf8').catch(() => '{}'))] as const,
  );
  return Object.fromEntries(parsed);
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
