// Real image content made in Node, without Docker Hub: layers are real gzipped tar files, the config and manifest
// are Docker schema 2, and pushImage() uploads them over the Distribution HTTP API. Everything is deterministic:
// the same seed and files give the same bytes, so a layer shared by two images has one digest.
import { createCipheriv, createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
export const IMAGE_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

export interface Layer {
  /** sha256:HEX of the gzipped tar (the blob). */
  digest: string;
  /** Bytes of the gzipped tar. */
  size: number;
  /** sha256:HEX of the uncompressed tar (rootfs.diff_ids). */
  diffId: string;
  /** The gzipped tar. */
  data: Buffer;
}

export interface PushedImage {
  repository: string;
  tag: string;
  manifestDigest: string;
  configDigest: string;
  layers: Layer[];
  /** Config digest first, then the layer digests, in manifest order. */
  blobDigests: string[];
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Deterministic, incompressible bytes: AES-128-CTR keystream keyed by the seed. */
export function pseudoRandomBytes(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

const TEXT_ALPHABET = Buffer.from('etaoinsr');

/**
 * Deterministic compressible bytes: each byte of the same keystream picks one of 8 letters, so 3 bits of entropy
 * a byte; makeLayer's gzip gets about 2.2:1 out of it, near what a Debian rootfs layer gets (about 2.5:1).
 */
export function pseudoTextBytes(seed: string, length: number): Buffer {
  const bytes = pseudoRandomBytes(seed, length);
  for (let i = 0; i < bytes.length; i++) bytes[i] = TEXT_ALPHABET[bytes[i] & 7];
  return bytes;
}

/** A regular file in a layer: `bytes` of incompressible content, or compressible text with content: 'text'. */
export interface TarFile {
  path: string;
  bytes: number;
  content?: 'random' | 'text';
}

/** Docker's platform names for process.arch. */
export function dockerArchitecture(arch: string = process.arch): { architecture: string; variant?: string } {
  switch (arch) {
    case 'x64':
      return { architecture: 'amd64' };
    case 'arm64':
      return { architecture: 'arm64', variant: 'v8' };
    case 'arm':
      return { architecture: 'arm', variant: 'v7' };
    case 'ia32':
      return { architecture: '386' };
    case 'ppc64':
      return { architecture: 'ppc64le' };
    default:
      return { architecture: arch }; // s390x, riscv64, mips64el, loong64 have the same names
  }
}

// ---- a small ustar writer ----

function octal(value: number, width: number): string {
  // width - 1 octal digits and a NUL
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function splitPath(path: string): { name: string; prefix: string } {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: '' };
  for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name !== '') return { name, prefix };
  }
  throw new Error(`path too long for ustar: ${path}`);
}

const TYPE_FLAGS = { file: '0', hardlink: '1', symlink: '2', fifo: '6', dir: '5' } as const;

function tarHeader(path: string, type: keyof typeof TYPE_FLAGS, size: number, linkName = ''): Buffer {
  const header = Buffer.alloc(512);
  const { name, prefix } = splitPath(path);
  header.write(name, 0, 100, 'utf8');
  header.write(octal(type === 'dir' ? 0o755 : 0o644, 8), 100, 'ascii'); // mode
  header.write(octal(0, 8), 108, 'ascii'); // uid
  header.write(octal(0, 8), 116, 'ascii'); // gid
  header.write(octal(size, 12), 124, 'ascii'); // size (11 octal digits: up to 8 GiB)
  header.write(octal(0, 12), 136, 'ascii'); // mtime: 0, for reproducible layers
  header.write('        ', 148, 'ascii'); // checksum field counts as spaces while summing
  header.write(TYPE_FLAGS[type], 156, 'ascii'); // typeflag
  header.write(linkName, 157, 100, 'utf8');
  header.write('ustar\0', 257, 'ascii'); // magic
  header.write('00', 263, 'ascii'); // version
  header.write('root', 265, 32, 'ascii'); // uname
  header.write('root', 297, 32, 'ascii'); // gname
  header.write(octal(0, 8), 329, 'ascii'); // devmajor
  header.write(octal(0, 8), 337, 'ascii'); // devminor
  header.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return header;
}

/** An uncompressed tar of regular files (with their parent directories) holding pseudo-random content (or pseudo-text). */
export function makeTar(seed: string, files: TarFile[]): Buffer {
  const parts: Buffer[] = [];
  const dirs = new Set<string>();
  for (const file of files) {
    const path = file.path.replace(/^\/+/, '');
    if (!path || path.endsWith('/') || path.split('/').some((p) => p === '..' || p === '.' || p === ''))
      throw new Error(`bad file path ${file.path}`);
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const dir = segments.slice(0, i).join('/') + '/';
      if (!dirs.has(dir)) {
        dirs.add(dir);
        parts.push(tarHeader(dir, 'dir', 0));
      }
    }
    parts.push(tarHeader(path, 'file', file.bytes));
    parts.push((file.content === 'text' ? pseudoTextBytes : pseudoRandomBytes)(`${seed}\0${path}`, file.bytes));
    const pad = (512 - (file.bytes % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024)); // end of archive
  return Buffer.concat(parts);
}

/** One member of a crafted archive: its name is written as given, unchecked. */
export type RawMember =
  | { type: 'file'; name: string; content: Buffer }
  | { type: 'dir' | 'fifo'; name: string }
  | { type: 'symlink' | 'hardlink'; name: string; target: string };

/** An uncompressed tar of exactly these members, in order: what an attacker who can save a cache entry writes. */
export function rawTar(members: RawMember[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const content = m.type === 'file' ? m.content : Buffer.alloc(0);
    parts.push(
      tarHeader(m.name, m.type, content.length, m.type === 'symlink' || m.type === 'hardlink' ? m.target : ''),
      content,
      Buffer.alloc((512 - (content.length % 512)) % 512),
    );
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/**
 * A gzipped tar layer. Same seed and files give the same bytes: tar mtimes are 0 and Node's gzip header has
 * no file name and mtime 0.
 */
export function makeLayer(seed: string, files: TarFile[]): Layer {
  const tar = makeTar(seed, files);
  const data = gzipSync(tar, { level: 1 });
  return { digest: sha256(data), size: data.length, diffId: sha256(tar), data };
}

/** The image config blob (deterministic JSON) for these layers. */
export function makeConfig(layers: Layer[], labels: Record<string, string> = {}): Buffer {
  const { architecture, variant } = dockerArchitecture();
  const config = {
    architecture,
    ...(variant ? { variant } : {}),
    os: 'linux',
    created: '1970-01-01T00:00:00Z',
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      Labels: labels,
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  };
  return Buffer.from(JSON.stringify(config));
}

async function expectStatus(res: Response, ok: number[], what: string): Promise<void> {
  if (ok.includes(res.status)) return;
  const body = await res.text().catch(() => '');
  throw new Error(`${what}: HTTP ${res.status} ${body.slice(0, 500)}`);
}

/** How to authenticate a push: `authorization` is sent as the Authorization header (e.g. `Bearer TOKEN`). */
export interface PushOptions {
  authorization?: string;
}

function authHeaders(options: PushOptions): Record<string, string> {
  return options.authorization ? { authorization: options.authorization } : {};
}

/** Uploads one blob (monolithic: POST an upload, PUT the bytes with ?digest=), unless the repository has it. */
export async function pushBlob(
  registryUrl: string,
  repository: string,
  digest: string,
  data: Buffer,
  options: PushOptions = {},
): Promise<void> {
  const base = registryUrl.replace(/\/+$/, '');
  const auth = authHeaders(options);
  const head = await fetch(`${base}/v2/${repository}/blobs/${digest}`, { method: 'HEAD', headers: auth });
  if (head.status === 200) return;
  const start = await fetch(`${base}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers: auth });
  await expectStatus(start, [202], `start upload of ${digest} to ${repository}`);
  await start.arrayBuffer();
  const location = start.headers.get('location');
  if (!location) throw new Error(`no Location for upload of ${digest} to ${repository}`);
  const uploadUrl = new URL(location, `${base}/`);
  uploadUrl.searchParams.set('digest', digest);
  const put = await fetch(uploadUrl, {
    method: 'PUT',
    headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    body: new Uint8Array(data), // a copy typed as Uint8Array<ArrayBuffer>, which fetch accepts
  });
  await expectStatus(put, [201], `upload of ${digest} to ${repository}`);
  await put.arrayBuffer();
}

/** Pushes the layers, a config blob and a schema 2 manifest as repository:tag. */
export async function pushImage(
  registryUrl: string,
  repository: string,
  tag: string,
  layers: Layer[],
  options: PushOptions = {},
): Promise<PushedImage> {
  const base = registryUrl.replace(/\/+$/, '');
  const config = makeConfig(layers);
  const configDigest = sha256(config);
  for (const layer of layers) await pushBlob(base, repository, layer.digest, layer.data, options);
  await pushBlob(base, repository, configDigest, config, options);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_V2,
      config: { mediaType: IMAGE_CONFIG, size: config.length, digest: configDigest },
      layers: layers.map((l) => ({ mediaType: LAYER_GZIP, size: l.size, digest: l.digest })),
    }),
  );
  const manifestDigest = sha256(manifest);
  const res = await fetch(`${base}/v2/${repository}/manifests/${tag}`, {
    method: 'PUT',
    headers: { ...authHeaders(options), 'content-type': MANIFEST_V2 },
    body: new Uint8Array(manifest),
  });
  await expectStatus(res, [201], `manifest ${repository}:${tag}`);
  await res.arrayBuffer();
  const echoed = res.headers.get('docker-content-digest');
  if (echoed && echoed !== manifestDigest) throw new Error(`registry says ${echoed}, we computed ${manifestDigest}`);
  return {
    repository,
    tag,
    manifestDigest,
    configDigest,
    layers,
    blobDigests: [configDigest, ...layers.map((l) => l.digest)],
  };
}
