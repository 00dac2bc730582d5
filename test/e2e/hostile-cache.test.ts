// A cache written by someone hostile. Anyone who can save into the cache scope (a pull_request_target workflow,
// a comment bot, a compromised step on the default branch) writes the index and the entries a later job
// restores. Each scenario plants one crafted content through the real cache service, runs a job that pulls,
// and checks what a user would: the pull works, nothing outside the action's work directory was created,
// changed or removed, and the report names what was refused.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cacheVersion } from '../../src/cache-entry.js';
import { blobPath } from '../../src/storage.js';
import { entryHolding } from '../helpers/cache-entries.js';
import { makeLayer, pushImage, rawTar, type PushedImage, type RawMember } from '../helpers/images.js';
import { startWorld, upstreamBlobFetches, type Runner, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const zstd = (tar: Buffer) => execFileSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 256 * MiB });
const file = (name: string, content: string | Buffer): RawMember => ({ type: 'file', name, content: Buffer.from(content) });
const up = (n: number) => '../'.repeat(n);
/** How a blob lies in an entry's archive. */
const entryPath = (digest: string) => `storage/${blobPath(digest)}`;

/**
 * A small entry archive that expands to `size` (a decompression bomb): one member, at `name`, of zeros, from a
 * sparse file (no disk used), compressed to a few hundred KiB.
 */
function bomb(name: string, size: string): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'bomb-'));
  try {
    mkdirSync(join(dir, dirname(name)), { recursive: true });
    const script = 'truncate -s "$3" "$1/$2" && tar -c -C "$1" "$2" | zstd -1 -T0 -q -c';
    return execFileSync('bash', ['-c', script, 'bomb', dir, name, size], { maxBuffer: 64 * MiB });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a job may leave beside RUNNER_TEMP: its step files, and the action's empty lock file beside daemon.json. */
const besideRunnerTemp = (name: string) => !/^job-\d+$/.test(name) && name !== '.pull-cache-action.lock';

/** Every file and directory under dir: type, mode, size, content hash, mtime. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (path: string) => {
    const info = lstatSync(path);
    const hash = info.isFile() ? createHash('sha256').update(readFileSync(path)).digest('hex') : '';
    out[path.slice(dir.length) || '/'] = [
      info.isDirectory() ? 'd' : info.isSymbolicLink() ? 'l' : 'f',
      info.mode,
      info.size,
      hash,
      info.mtimeMs,
    ].join(' ');
    if (info.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(dir);
  return out;
}

describe('a hostile cache', { timeout: 1_200_000 }, () => {
  let world: World;
  let runner: Runner;
  let alpha: PushedImage;
  let indexKey: string;
  let goodIndex: string;
  /** The entry holding alpha's base layer (beta's too), and what it held as saved. */
  let layerKey: string;
  let goodLayerArchive: Buffer;
  /** Beside RUNNER_TEMP: what the crafted names aim at. */
  let victim: string;
  let runnerBase: string;

  before(async () => {
    world = await startWorld('pull-cache-hostile');
    // Two images on one base: the base is an entry of its own, alpha's app layer another (the untouched one). Each
    // is over 1 MiB compressed: a smaller set of blobs would join its image's larger entry.
    const base = makeLayer('hostile-base', [{ path: 'usr/lib/base.bin', bytes: 1.5 * MiB }]);
    alpha = await pushImage(world.upstream.url, 'library/alpha', '1', [
      base,
      makeLayer('hostile-app', [{ path: 'opt/app.txt', bytes: 3 * MiB, content: 'text' }]),
    ]);
    await pushImage(world.upstream.url, 'library/beta', '1', [
      base,
      makeLayer('hostile-beta', [{ path: 'opt/beta.txt', bytes: 1.25 * MiB }]),
    ]);
    const seed = await world.runner('seed');
    const { post } = await seed.job(seed.inputs(), async () => {
      await seed.pull('alpha:1');
      await seed.pull('beta:1');
    });
    assert.equal(post.exitCode, 0, post.stdout);
    indexKey = world.cache.entries().find((e) => e.key.includes('-index-'))!.key;
    goodIndex = execFileSync('tar', ['-xO', '--use-compress-program', 'zstd', 'index.json'], {
      input: await world.cache.entryContent(indexKey),
    }).toString();
    layerKey = await entryHolding(world.cache, 'pull-cache', alpha.layers[0].digest);
    goodLayerArchive = await world.cache.entryContent(layerKey);

    runner = await world.runner('target');
    runnerBase = dirname(runner.runnerTemp);
    victim = join(runnerBase, 'victim');
    mkdirSync(join(victim, 'dir'), { recursive: true });
    writeFileSync(join(victim, 'secret'), 'the runner user can read this\n');
    writeFileSync(join(victim, 'dir', 'data'), 'a directory someone would miss\n');
  });
  after(() => world?.stop());

  const plantIndex = (text: string) => world.cache.replaceEntryContent(indexKey, zstd(rawTar([file('index.json', text)])));
  /** The saved index, changed by `edit` (which may return anything: the index is hostile). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the index is edited into any shape on purpose
  const editIndex = (edit: (index: any) => unknown) => plantIndex(JSON.stringify(edit(JSON.parse(goodIndex))));
  const plantLayerEntry = (members: RawMember[]) => world.cache.replaceEntryContent(layerKey, zstd(rawTar(members)));
  /** An image of the saved index under another name: valid but for what `change` does to it. */
  const addImage = (change: Record<string, unknown>) =>
    editIndex((index) => ({ ...index, images: [...index.images, { ...index.images[0], ...change }] }));
  /** A new entry saved under `key` for `digest`, as a job with write access could, and an image of the index that needs it. */
  const plantEntryFor = async (key: string, digest: string, members: RawMember[]) => {
    await world.cache.plantEntry(key, cacheVersion([entryPath(digest)], 'zstd-without-long'), zstd(rawTar(members)));
    await editIndex((index) => ({
      ...index,
      blobs: { ...index.blobs, [digest]: 64 },
      entries: [...index.entries, { key, digests: [digest] }],
      images: [...index.images, { ...index.images[0], reference: 'evil', blobs: [...index.images[0].blobs, digest] }],
    }));
  };

  const layer = () => alpha.layers[0];
  /** `wholeIndex`: the index itself is refused, so nothing is restored and the pull goes upstream. */
  const scenarios: { name: string; plant: () => Promise<unknown>; report: RegExp; wholeIndex?: true }[] = [
    // The index: names that become paths.
    {
      name: 'a repository that climbs out of the storage',
      plant: () => addImage({ repository: `library/${up(8)}victim/repo` }),
      report: /image 3 \(library\/\.\.\/[^)]*\): not a repository name/,
    },
    {
      name: 'an absolute repository name',
      plant: () => addImage({ repository: `${victim}/repo` }),
      report: /image 3 \([^)]*\): not a repository name/,
    },
    {
      name: 'a repository name with a NUL byte',
      plant: () => addImage({ repository: 'library/al\u0000pha' }),
      report: /image 3 \(library\/al\?pha\): not a repository name/,
    },
    {
      name: 'a tag that climbs out of the storage',
      plant: () => addImage({ reference: `${up(11)}victim/tag` }),
      report: /image 3 \(library\/alpha\): "[./]+victim\/tag" is neither a tag nor a digest/,
    },
    {
      name: 'a manifest "digest" that is a path',
      plant: () => addImage({ reference: 'evil', manifests: [`sha256:${up(7)}victim/dir`] }),
      report: /image 3 \(library\/alpha\): its manifests are not a list of sha256 digests/,
    },
    {
      name: 'a blob "digest" that is a path',
      plant: () => addImage({ reference: 'evil', blobs: [`sha256:${up(7)}victim/dir`] }),
      report: /image 3 \(library\/alpha\): its blobs are not a list of sha256 digests/,
    },
    {
      name: 'an entry whose "digest" is a directory to hash and remove',
      plant: () => plantEntryFor('pull-cache-blob-evil', `sha256:${up(7)}victim/dir`, [file('x', 'x')]),
      report: /entry \d \(pull-cache-blob-evil\): "sha256:\.\.\/[^"]*" is not a sha256 digest/,
    },
    // The index: keys, types, sizes, counts.
    {
      name: "an entry key outside this cache's prefix",
      plant: () =>
        editIndex((index) => ({
          ...index,
          entries: index.entries.map((e: { key: string }) =>
            e.key === layerKey ? { ...e, key: `other-cache-blob-${layer().digest.replace(':', '-')}` } : e,
          ),
        })),
      report: /entry \d \(other-cache-blob-sha256-[0-9a-f]+\): the key is not one of this cache's/,
    },
    {
      name: 'an entry key with a path in it',
      plant: () =>
        editIndex((index) => ({ ...index, entries: [...index.entries, { key: `pull-cache-blob-${up(3)}x`, digests: [layer().digest] }] })),
      report: /the key has characters or a length/,
    },
    { name: 'a repository that is a number', plant: () => addImage({ repository: 42 }), report: /image 3: no repository name/ },
    {
      name: 'manifests that are a string',
      plant: () => addImage({ manifests: 'sha256:abc' }),
      report: /image 3 \(library\/alpha\): its manifests are not a list/,
    },
    {
      name: 'a last use that is no time',
      plant: () => addImage({ reference: 'when', lastUsed: { $date: 1 } }),
      report: /image 3 \(library\/alpha\): its last use is not a time/,
    },
    {
      name: 'entries that are not a list',
      plant: () => editIndex((index) => ({ ...index, entries: { length: 1 } })),
      report: /the cache index has a format this version does not read/,
      wholeIndex: true,
    },
    {
      name: 'an index that is a list',
      plant: () => editIndex((index) => [index]),
      report: /the cache index has a format this version does not read/,
      wholeIndex: true,
    },
    {
      name: 'an index that is not JSON',
      plant: () => plantIndex('{"version": 2, '),
      report: /the cache index is not JSON/,
      wholeIndex: true,
    },
    {
      name: 'a negative size',
      plant: () => editIndex((index) => ({ ...index, blobs: { ...index.blobs, [layer().digest]: -1 } })),
      report: /\(pull-cache-(?:blob|pack)-sha256-[0-9a-f]+\): sha256:[0-9a-f]+ has no valid size/,
    },
    {
      name: 'a size past 2^53',
      plant: () => editIndex((index) => ({ ...index, blobs: { ...index.blobs, [layer().digest]: 2 ** 60 } })),
      report: /has no valid size in the index/,
    },
    {
      name: 'a huge number of images',
      plant: () =>
        editIndex((index) => ({
          ...index,
          images: Array.from({ length: 25_000 }, (_, i) => ({ ...index.images[0], reference: `t${i}` })),
        })),
      report: /5000 images past the first 20000/,
    },
    {
      name: 'a size smaller than the blob (to pass the budget)',
      plant: () => editIndex((index) => ({ ...index, blobs: { ...index.blobs, [layer().digest]: 1000 } })),
      report: /pull-cache-(?:blob|pack)-sha256-[0-9a-f]+: the archive is larger than its files can be/,
    },
    // The index archive.
    {
      name: 'an index archive that also writes a tag link',
      plant: () =>
        world.cache.replaceEntryContent(
          indexKey,
          zstd(
            rawTar([
              file('index.json', goodIndex),
              file('storage/docker/registry/v2/repositories/library/alpha/_manifests/tags/planted/current/link', alpha.manifestDigest),
            ]),
          ),
        ),
      report: /it holds an unexpected (file|directory) "storage/,
      wholeIndex: true,
    },
    {
      name: 'an index archive with an absolute member',
      plant: () => world.cache.replaceEntryContent(indexKey, zstd(rawTar([file('index.json', goodIndex), file(`${victim}/planted`, 'x')]))),
      report: /it holds an unexpected (file|directory) "\//,
      wholeIndex: true,
    },
    {
      name: 'an index of 40 MiB',
      plant: () => plantIndex(`${goodIndex.slice(0, -1)},"padding":"${'x'.repeat(40 * MiB)}"}`),
      // Refused while it decompresses: it expands past the 32 MiB an index may have, before tar lists it.
      report: /it expands to more than its files can be \(\d+ bytes\)/,
      wholeIndex: true,
    },
    // An entry's archive.
    {
      name: 'an entry member with an absolute path',
      plant: () => plantLayerEntry([file(entryPath(layer().digest), layer().data), file(`${victim}/planted`, 'x')]),
      report: /it holds an unexpected (file|directory) "\//,
    },
    {
      name: 'an entry member that climbs out',
      plant: () => plantLayerEntry([file(entryPath(layer().digest), layer().data), file(`${up(2)}victim/planted`, 'x')]),
      report: /it holds an unexpected (file|directory) "\.\.\//,
    },
    {
      name: 'an entry whose blob is a symlink to a secret',
      plant: () => plantLayerEntry([{ type: 'symlink', name: entryPath(layer().digest), target: join(victim, 'secret') }]),
      report: /not a plain file or directory/,
    },
    {
      name: 'an entry whose blobs directory is a symlink out',
      plant: () =>
        plantLayerEntry([
          { type: 'symlink', name: 'storage/docker/registry/v2/blobs', target: victim },
          file(entryPath(layer().digest), layer().data),
        ]),
      report: /not a plain file or directory/,
    },
    {
      name: 'an entry whose blob is a hard link to a secret',
      plant: () => plantLayerEntry([{ type: 'hardlink', name: entryPath(layer().digest), target: join(victim, 'secret') }]),
      report: /not a plain file or directory/,
    },
    {
      name: 'an entry with a hard link that climbs out',
      plant: () =>
        plantLayerEntry([
          file(entryPath(layer().digest), layer().data),
          { type: 'hardlink', name: `${up(3)}victim/linked`, target: entryPath(layer().digest) },
        ]),
      report: /not a plain file or directory/,
    },
    {
      name: 'an entry that plants a tag beside its blob',
      plant: () =>
        plantLayerEntry([
          file(entryPath(layer().digest), layer().data),
          file('storage/docker/registry/v2/repositories/library/alpha/_manifests/tags/planted/current/link', alpha.manifestDigest),
        ]),
      report: /it holds an unexpected (file|directory) "storage\/docker\/registry\/v2\/repositories/,
    },
    {
      name: 'an entry that holds its blob twice',
      plant: () => plantLayerEntry([file(entryPath(layer().digest), layer().data), file(entryPath(layer().digest), 'other bytes')]),
      report: /it holds "storage\/[^"]+" twice/,
    },
    {
      name: 'an entry with a FIFO',
      plant: () => plantLayerEntry([{ type: 'fifo', name: entryPath(layer().digest) }]),
      report: /not a plain file or directory/,
    },
    {
      name: 'an entry larger than its index says',
      plant: () => plantLayerEntry([file(entryPath(layer().digest), Buffer.concat([layer().data, Buffer.alloc(MiB)]))]),
      report: /more than the \d+ it may have/,
    },
    {
      // tar -t of the archive as it came would decompress all of it (minutes of CPU in every job) before the check.
      name: 'an entry that expands far past its files (a decompression bomb)',
      plant: () => world.cache.replaceEntryContent(layerKey, bomb(entryPath(layer().digest), '1G')),
      report: /it expands to more than its files can be \(\d+ bytes\)/,
    },
    {
      name: 'an entry whose bytes are not its digest',
      plant: () => plantLayerEntry([file(entryPath(layer().digest), Buffer.alloc(layer().size, 7))]),
      report: /1 blob failed the digest check and dropped/,
    },
  ];

  for (const scenario of scenarios) {
    test(`${scenario.name}: refused and reported, nothing outside touched, the pull works`, async () => {
      await plantIndex(goodIndex);
      await world.cache.replaceEntryContent(layerKey, goodLayerArchive);
      await scenario.plant();
      const victimBefore = snapshot(victim);
      const besideBefore = readdirSync(runnerBase).filter(besideRunnerTemp);
      let job!: Awaited<ReturnType<Runner['job']>>;
      const fetched = await upstreamBlobFetches(world.upstream, async () => {
        job = await runner.job(runner.inputs({ save: 'false' }), async (main) => {
          assert.equal(main.exitCode, 0, main.stdout);
          assert.deepEqual(snapshot(victim), victimBefore, 'nothing outside the work directory changed after main');
          await runner.pull('alpha:1');
        });
      });
      assert.equal(job.post.exitCode, 0, job.post.stdout);
      assert.deepEqual(snapshot(victim), victimBefore, 'nothing outside the work directory was created, changed or removed');
      assert.deepEqual(readdirSync(runnerBase).filter(besideRunnerTemp), besideBefore, 'nothing new beside RUNNER_TEMP');
      assert.deepEqual(readdirSync(runner.runnerTemp), [], 'nothing left in RUNNER_TEMP');
      assert.match(job.post.summary, scenario.report, `${job.post.summary}\nmain's warnings:\n${job.main.warnings.join('\n')}`);
      const served = await runner.dockerd.docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', 'alpha:1']);
      assert.deepEqual(
        JSON.parse(served.stdout),
        alpha.layers.map((l) => l.diffId),
        'the image pulled is the upstream one',
      );
      // What was not refused still comes from the cache; from a refused index, nothing does.
      if (scenario.wholeIndex) assert.match(job.post.summary, /- Restored: nothing/);
      else
        assert.ok(
          !fetched.some((l) => l.path.endsWith(alpha.layers[1].digest)),
          `the untouched entries still served from the cache: ${fetched.map((l) => l.path).join(' ')}\n${job.post.summary}`,
        );
      await runner.dockerd.docker(['rmi', 'alpha:1']);
    });
  }

  test('an index saved under a key that holds Markdown: refused, and neither the summary nor the output carries the key as markup', async () => {
    await plantIndex(goodIndex);
    await world.cache.replaceEntryContent(layerKey, goodLayerArchive);
    // The service finds the index by its key prefix: whoever saves into the scope chooses the rest of the key.
    const prefix = /^.*-index-linux-[^-]+-/.exec(indexKey)![0];
    const hostileKey = `${prefix}9\`](http://evil.example/a) ![i](http://evil.example/p.png) <img src=x onerror=alert(1)>`;
    await world.cache.plantEntry(
      hostileKey,
      cacheVersion(['index.json'], 'zstd-without-long'),
      zstd(rawTar([file('index.json', goodIndex)])),
    );
    try {
      const { main, post } = await runner.job(runner.inputs({ save: 'false' }), async () => runner.pull('alpha:1'));
      assert.equal(main.exitCode, 0, main.stdout);
      assert.equal(post.exitCode, 0, post.stdout);
      assert.ok(
        main.warnings.some((w) => w.includes('refused the cache index: the cache service answered with a key that is not one asked for')),
        main.warnings.join('\n'),
      );
      assert.equal(main.outputs['restored-key'], '');
      assert.match(post.summary, /- Restored: nothing \(the cache index was refused, see below\)/);
      assert.match(post.summary, /the cache service answered with a key that is not one asked for/);
      // Unescaped, any of these is a link, an image or HTML in the job summary.
      for (const markup of [/(?<!\\)\]\(/, /(?<!\\)!\[/, /(?<!\\)<img/, /(?<!\\)`\]/]) assert.doesNotMatch(post.summary, markup);
      await runner.dockerd.docker(['rmi', 'alpha:1']);
    } finally {
      world.cache.deleteEntry(hostileKey);
    }
  });

  test('a tag planted in the index that the upstream does not have is not saved again', async () => {
    await world.cache.replaceEntryContent(layerKey, goodLayerArchive);
    await addImage({ reference: 'planted' });
    const { post } = await runner.job(runner.inputs(), async () => runner.pull('alpha:1'));
    assert.equal(post.exitCode, 0, post.stdout);
    assert.match(post.summary, /- Not saved: 1 tag the upstream no longer names this way, moved or deleted \(alpha:planted\)\./);
    const saved = world.cache.entries().filter((e) => e.key.includes('-index-') && e.key !== indexKey);
    assert.equal(saved.length, 1, 'a new index without the planted tag');
    const next = execFileSync('tar', ['-xO', '--use-compress-program', 'zstd', 'index.json'], {
      input: await world.cache.entryContent(saved[0].key),
    }).toString();
    assert.deepEqual(
      JSON.parse(next).images.map((i: { repository: string; reference: string }) => `${i.repository}:${i.reference}`),
      ['library/alpha:1', 'library/beta:1'],
    );
  });
});
