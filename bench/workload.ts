// The images the bench pulls, built by the bench itself with the tests' image helpers: a Debian-like base, a
// language runtime on top of it, a web server on the same base, a small service on its own Alpine-like base, and an
// application on the runtime, sharing layers as real images do. Files are mostly compressible text (gzip about
// 2.2:1) with some incompressible ones, in a few hundred to a couple of thousand files a layer.
import { makeLayer, pushImage, type Layer, type TarFile } from '../test/helpers/images.js';

const MB = 1_000_000;

export interface LayerSpec {
  id: string;
  files: number;
  /** Uncompressed content bytes (tar headers come on top). */
  bytes: number;
  /** Share of the files holding incompressible bytes (already compressed data, binaries' packed sections). */
  randomShare?: number;
}

export interface ImageSpec {
  /** How a job names it on Docker Hub, e.g. debian:12 or someorg/api:latest. */
  ref: string;
  /** The repository on the registry, e.g. library/debian. */
  repository: string;
  tag: string;
  layers: string[];
}

export interface WorkloadSpec {
  name: string;
  layers: LayerSpec[];
  images: ImageSpec[];
  /** The changed job: this image gains this new top layer. */
  change: { ref: string; layer: LayerSpec };
}

function spec(name: string, scale: (mb: number) => number, files: (n: number) => number): WorkloadSpec {
  const L = (id: string, n: number, mb: number, randomShare?: number): LayerSpec => ({
    id,
    files: files(n),
    bytes: scale(mb),
    randomShare,
  });
  return {
    name,
    layers: [
      L('debian-rootfs', 1800, 120, 0.1),
      L('python-apt-deps', 600, 55, 0.15),
      L('python-runtime', 1500, 45, 0.1),
      L('python-pip', 300, 12, 0.05),
      L('python-entrypoint', 1, 0.002),
      L('nginx', 200, 40, 0.15),
      L('nginx-conf', 5, 0.008),
      L('alpine-rootfs', 500, 8, 0.1),
      L('redis', 20, 12, 0.2),
      L('redis-entrypoint', 1, 0.001),
      L('api-deps', 2000, 35, 0.05),
      L('api-app', 150, 4, 0),
    ],
    images: [
      { ref: 'debian:12', repository: 'library/debian', tag: '12', layers: ['debian-rootfs'] },
      {
        ref: 'python:3.12',
        repository: 'library/python',
        tag: '3.12',
        layers: ['debian-rootfs', 'python-apt-deps', 'python-runtime', 'python-pip', 'python-entrypoint'],
      },
      { ref: 'nginx:1.27', repository: 'library/nginx', tag: '1.27', layers: ['debian-rootfs', 'nginx', 'nginx-conf'] },
      { ref: 'redis:7-alpine', repository: 'library/redis', tag: '7-alpine', layers: ['alpine-rootfs', 'redis', 'redis-entrypoint'] },
      {
        ref: 'someorg/api:latest',
        repository: 'someorg/api',
        tag: 'latest',
        layers: ['debian-rootfs', 'python-apt-deps', 'python-runtime', 'python-pip', 'python-entrypoint', 'api-deps', 'api-app'],
      },
    ],
    change: { ref: 'someorg/api:latest', layer: L('api-hotfix', 150, 6, 0) },
  };
}

/** The default workload: about 330 MB of unique layers uncompressed, 150 MB as pulled. */
export const FULL = spec(
  'full',
  (mb) => Math.round(mb * MB),
  (n) => n,
);
/** --quick: the same shape at about a fifteenth of the size, for CI. */
export const QUICK = spec(
  'quick',
  (mb) => Math.max(512, Math.round((mb * MB) / 15)),
  (n) => Math.max(1, Math.round(n / 10)),
);

/**
 * The 1 GB variants' workload: about 1 GB as pulled, five images on two bases like the default one, every file
 * incompressible (so the cache holds about 1 GB: zstd gains nothing either) and few, large files (cheap to build
 * and to extract: the restore's time shows, not the daemon's file creation). Its changed layer is never pushed.
 */
export const LARGE: WorkloadSpec = (() => {
  const L = (id: string, files: number, mb: number): LayerSpec => ({ id, files, bytes: mb * MB, randomShare: 1 });
  const image = (name: string, layers: string[]): ImageSpec => ({ ref: `large/${name}:1`, repository: `large/${name}`, tag: '1', layers });
  return {
    name: 'large',
    layers: [
      L('large-base', 60, 250),
      L('large-runtime', 40, 200),
      L('large-web', 30, 150),
      L('large-tools-base', 20, 100),
      L('large-tools', 20, 100),
      L('large-app-deps', 40, 200),
      L('large-app', 10, 20),
    ],
    images: [
      image('base', ['large-base']),
      image('runtime', ['large-base', 'large-runtime']),
      image('web', ['large-base', 'large-web']),
      image('tools', ['large-tools-base', 'large-tools']),
      image('app', ['large-base', 'large-runtime', 'large-app-deps', 'large-app']),
    ],
    change: { ref: 'large/app:1', layer: L('large-app-hotfix', 1, 1) },
  };
})();

/** The image a partial-use job pulls: the median one by compressed size (nginx:1.27 in the default workloads). */
export function medianImage(workload: Workload): BuiltImage {
  const bySize = [...workload.images].sort((a, b) => a.compressed - b.compressed);
  return bySize[Math.floor(bySize.length / 2)];
}

/** A deterministic xorshift generator, so the same spec always gives the same bytes. */
function rng(seed: string): () => number {
  let x = 2166136261;
  for (const c of seed) x = Math.imul(x ^ c.charCodeAt(0), 16777619) >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

const DIRS = [
  'usr/lib/x86_64-linux-gnu',
  'usr/share/doc',
  'usr/bin',
  'usr/lib/python3/dist-packages',
  'etc',
  'usr/share/locale',
  'var/lib/dpkg/info',
  'opt/app',
];

/** The files of a layer: sizes drawn from a skewed distribution summing to spec.bytes. */
export function layerFiles(spec: LayerSpec): TarFile[] {
  const random = rng(spec.id);
  const weights = Array.from({ length: spec.files }, () => (-Math.log(1 - random())) ** 2 + 0.01);
  const total = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.floor((w / total) * spec.bytes));
  sizes[0] += spec.bytes - sizes.reduce((a, b) => a + b, 0);
  const every = spec.randomShare ? Math.max(1, Math.round(1 / spec.randomShare)) : 0;
  return sizes.map((bytes, i) => ({
    path: `${DIRS[i % DIRS.length]}/${spec.id}/${Math.floor(i / 64)}/file-${i}`,
    bytes,
    content: every && i % every === every - 1 ? 'random' : 'text',
  }));
}

export interface BuiltImage extends ImageSpec {
  layerData: Layer[];
  /** Bytes of its layers as pulled (gzip) and as extracted (tar). */
  compressed: number;
  uncompressed: number;
}

export interface Workload {
  spec: WorkloadSpec;
  layers: Map<string, Layer & { uncompressed: number }>;
  images: BuiltImage[];
  /** The changed image: its new manifest's layers. */
  changed: BuiltImage;
  /** Unique layers of all images (the changed layer excluded). */
  unique: { layers: number; compressed: number; uncompressed: number };
}

export function buildWorkload(spec: WorkloadSpec): Workload {
  const layers = new Map<string, Layer & { uncompressed: number }>();
  for (const l of [...spec.layers, spec.change.layer]) {
    const files = layerFiles(l);
    const layer = makeLayer(`bench-${l.id}`, files);
    const uncompressed = tarSize(files);
    layers.set(l.id, { ...layer, uncompressed });
  }
  const image = (s: ImageSpec): BuiltImage => {
    const layerData = s.layers.map((id) => layers.get(id)!);
    return {
      ...s,
      layerData,
      compressed: layerData.reduce((sum, l) => sum + l.size, 0),
      uncompressed: layerData.reduce((sum, l) => sum + l.uncompressed, 0),
    };
  };
  const images = spec.images.map(image);
  const base = spec.images.find((i) => i.ref === spec.change.ref)!;
  const changed = image({ ...base, layers: [...base.layers, spec.change.layer.id] });
  const used = [...new Set(spec.images.flatMap((i) => i.layers))].map((id) => layers.get(id)!);
  return {
    spec,
    layers,
    images,
    changed,
    unique: {
      layers: used.length,
      compressed: used.reduce((s, l) => s + l.size, 0),
      uncompressed: used.reduce((s, l) => s + l.uncompressed, 0),
    },
  };
}

/** Pushes every image (the original version of the changed one) to a registry. */
export async function pushWorkload(registryUrl: string, workload: Workload): Promise<void> {
  for (const image of workload.images) await pushImage(registryUrl, image.repository, image.tag, image.layerData);
}

/** Points the changed image's tag at its new manifest (changed = true) or back at the original one. */
export async function setChanged(registryUrl: string, workload: Workload, changed: boolean): Promise<void> {
  const image = changed ? workload.changed : workload.images.find((i) => i.ref === workload.changed.ref)!;
  await pushImage(registryUrl, image.repository, image.tag, image.layerData);
}

/** Bytes of makeTar's archive of these files: a header per file and per directory, contents in 512-byte blocks, 1 KiB end. */
export function tarSize(files: TarFile[]): number {
  const dirs = new Set<string>();
  let size = 1024;
  for (const f of files) {
    const segments = f.path.split('/');
    for (let i = 1; i < segments.length; i++) dirs.add(segments.slice(0, i).join('/'));
    size += 512 + Math.ceil(f.bytes / 512) * 512;
  }
  return size + dirs.size * 512;
}
