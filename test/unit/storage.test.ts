// The registries' storage on disk: where a blob lives, paths kept inside the root, the links that make images
// serve (Docker Hub's at the root, other registries' under registries/HOST with the blobs shared), read back by
// scanStorage, and the digest check every restored blob passes before it is served. Real files in a temp dir.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  blobPath,
  holdsDigest,
  inside,
  prepareRegistryRoot,
  readManifests,
  scanStorage,
  writeLinks,
  type ImageLinks,
} from '../../src/storage.js';
import { MANIFEST_V2, IMAGE_CONFIG, LAYER_GZIP, makeConfig, makeLayer, sha256 } from '../helpers/images.js';

const V2 = 'docker/registry/v2';

/** A storage root; holdsDigest's files lie beside what scanStorage reads, which they do not disturb. */
let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'storage-'));
});
after(() => rm(root, { recursive: true, force: true }));

type StoredImage = ImageLinks & { sizes: Record<string, number> };

/** An image's config, layers and manifest written into `storage` as the registry stores them. */
async function storeImage(storage: string, repository: string, reference: string | null, seeds: string[]): Promise<StoredImage> {
  const layers = seeds.map((seed) => makeLayer(seed, [{ path: `${seed}.txt`, bytes: 64, content: 'text' }]));
  const config = makeConfig(layers);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_V2,
      config: { mediaType: IMAGE_CONFIG, size: config.length, digest: sha256(config) },
      layers: layers.map((l) => ({ mediaType: LAYER_GZIP, size: l.size, digest: l.digest })),
    }),
  );
  const sizes: Record<string, number> = {};
  for (const bytes of [manifest, config, ...layers.map((l) => l.data)]) {
    const path = join(storage, blobPath(sha256(bytes)));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
    sizes[sha256(bytes)] = bytes.length;
  }
  const manifestDigest = sha256(manifest);
  return {
    repository,
    reference: reference ?? manifestDigest,
    manifests: [manifestDigest],
    blobs: [sha256(config), ...layers.map((l) => l.digest)],
    sizes,
  };
}

describe('blobPath', () => {
  test('sha256/XX/HEX/data under docker/registry/v2/blobs, as Distribution lays it out', () => {
    const hex = 'ab'.padEnd(64, '0');
    assert.equal(blobPath(`sha256:${hex}`), `docker/registry/v2/blobs/sha256/ab/${hex}/data`);
  });
});

describe('inside', () => {
  test('a relative path under the root comes back absolute', () => {
    assert.equal(inside('/runner/storage', 'docker/registry/v2/x/link'), '/runner/storage/docker/registry/v2/x/link');
    assert.equal(inside('/runner/storage/', 'a/../b'), '/runner/storage/b');
  });

  test('the root itself, a climb out, an absolute path or a sibling sharing its prefix is refused, naming both', () => {
    for (const relative of ['', '.', 'a/../..', '../storage-other/x', '/etc/passwd']) {
      assert.throws(() => inside('/runner/storage', relative), { message: `${JSON.stringify(relative)} leaves /runner/storage` });
    }
  });
});

describe('holdsDigest', () => {
  test('a regular file whose bytes have the digest', async () => {
    await writeFile(join(root, 'right'), 'layer bytes');
    assert.equal(await holdsDigest(join(root, 'right'), sha256('layer bytes')), true);
  });

  test('other bytes, a missing file, a directory, or a link even to the right bytes: not held', async () => {
    await writeFile(join(root, 'wrong'), 'other bytes');
    await mkdir(join(root, 'directory'));
    await writeFile(join(root, 'target'), 'layer bytes');
    await symlink(join(root, 'target'), join(root, 'link'));
    for (const name of ['wrong', 'missing', 'directory', 'link'])
      assert.equal(await holdsDigest(join(root, name), sha256('layer bytes')), false, name);
  });
});

describe('writeLinks and scanStorage', () => {
  test("Docker Hub's repositories at the root, another's under registries/HOST sharing the blobs; scanStorage reads them back", async () => {
    const alpine = await storeImage(root, 'library/alpine', '3', ['base', 'alpine']);
    const app = await storeImage(root, 'ghcr.io/org/app', '1', ['base', 'app']);
    const present = new Set([...Object.keys(alpine.sizes), ...Object.keys(app.sizes)]);
    await writeLinks(root, [alpine, app], present);

    const link = join(root, 'registries/ghcr.io', V2, 'blobs');
    assert.equal(await realpath(link), await realpath(join(root, V2, 'blobs')), "ghcr.io's blobs are the shared ones");
    assert.ok(!(await readlink(link)).startsWith('/'), 'a relative link: the storage can be restored anywhere');
    const app1 = join(root, 'registries/ghcr.io', V2, 'repositories/org/app/_manifests/tags/1/current/link');
    assert.equal(await readFile(app1, 'utf8'), app.manifests[0]);

    const state = await scanStorage(root);
    assert.deepEqual(state.blobs, { ...alpine.sizes, ...app.sizes });
    assert.deepEqual(state.repositories, {
      'library/alpine': { tags: { '3': alpine.manifests[0] }, manifests: alpine.manifests, layers: [...alpine.blobs].sort() },
      'ghcr.io/org/app': { tags: { '1': app.manifests[0] }, manifests: app.manifests, layers: [...app.blobs].sort() },
    });
    const manifests = await readManifests(root, state);
    assert.deepEqual(Object.keys(manifests).sort(), [alpine.manifests[0], app.manifests[0]].sort());
    assert.deepEqual(
      manifests[alpine.manifests[0]]?.layers?.map((l) => l.digest),
      alpine.blobs.slice(1),
    );
  });

  test('only blobs present are linked; an image without its manifest gets its present layers but no tag; one pulled by digest gets no tag', async () => {
    const partial = await storeImage(root, 'library/partial', '2', ['partial-a', 'partial-b']);
    const absent = await storeImage(root, 'library/absent', '1', ['absent']);
    const pinned = await storeImage(root, 'library/pinned', null, ['pinned']);
    // Its own entry (manifest, config, own layer) evicted; the base it shares with partial restored.
    const headless = await storeImage(root, 'library/headless', '1', ['partial-a', 'headless-own']);
    const missingLayer = partial.blobs[2];
    const present = new Set([...Object.keys(partial.sizes), ...Object.keys(pinned.sizes)].filter((d) => d !== missingLayer));
    await writeLinks(root, [partial, absent, pinned, headless], present);

    const { repositories } = await scanStorage(root);
    assert.deepEqual(repositories['library/partial'].layers, partial.blobs.slice(0, 2).sort());
    assert.equal(repositories['library/absent'], undefined);
    const base = partial.blobs[1];
    assert.ok(headless.blobs.includes(base));
    assert.deepEqual(repositories['library/headless'], { tags: {}, manifests: [], layers: [base] });
    assert.deepEqual(repositories['library/pinned'], { tags: {}, manifests: pinned.manifests, layers: [...pinned.blobs].sort() });
  });

  test('written while the registry serves: a tag it linked meanwhile stays, every other link is written whole, no temporary file left', async () => {
    const restored = await storeImage(root, 'library/moved', '1', ['moved-old']);
    const fresher = sha256('the manifest the upstream names now');
    const tag = join(root, V2, 'repositories/library/moved/_manifests/tags/1/current/link');
    await mkdir(dirname(tag), { recursive: true });
    await writeFile(tag, fresher);
    await writeLinks(root, [restored], new Set(Object.keys(restored.sizes)));
    assert.equal(await readFile(tag, 'utf8'), fresher, "the registry's own tag link is kept");
    const { repositories } = await scanStorage(root);
    assert.deepEqual(repositories['library/moved'].layers, [...restored.blobs].sort());
    const files = await readdir(join(root, V2, 'repositories/library/moved'), { recursive: true });
    assert.deepEqual(
      files.filter((f) => /link\./.test(f)),
      [],
      'no temporary link left',
    );
  });

  test('a tag link that does not hold a digest is not read as a tag', async () => {
    const broken = join(root, V2, 'repositories/library/broken/_manifests/tags');
    await mkdir(join(broken, 'good/current'), { recursive: true });
    await mkdir(join(broken, 'bad/current'), { recursive: true });
    const digest = sha256('manifest');
    await writeFile(join(broken, 'good/current/link'), `${digest}\n`);
    await writeFile(join(broken, 'bad/current/link'), '../../../../etc/passwd');
    assert.deepEqual((await scanStorage(root)).repositories['library/broken'].tags, { good: digest });
  });

  test('an empty or missing storage holds nothing', async () => {
    assert.deepEqual(await scanStorage(join(root, 'nothing-here')), { blobs: {}, repositories: {} });
  });

  test('prepareRegistryRoot is idempotent, and Docker Hub has the storage root itself', async () => {
    const first = await prepareRegistryRoot(root, 'quay.io');
    assert.equal(await prepareRegistryRoot(root, 'quay.io'), first);
    assert.equal(first, join(root, 'registries/quay.io/'));
    assert.equal(await prepareRegistryRoot(root, 'docker.io'), root);
  });
});
