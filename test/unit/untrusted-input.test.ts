// Properties of the readers of restored content, over generated input: whatever a hostile cache holds, what the
// index reader accepts is well-formed, every path computed from it stays inside the storage, and an archive
// listing passes only when it holds nothing but the expected files.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { archiveProblem } from '../../src/cache-entry.js';
import { InvalidIndex, isRepositoryName, isTag, readIndex, type CacheIndex } from '../../src/cache-index.js';
import { splitRepository } from '../../src/images.js';
import { blobPath, inside, isDigest } from '../../src/storage.js';

const RULES = { prefix: 'pull-cache', registries: ['docker.io', 'ghcr.io'] };
const ROOT = '/runner/temp/pull-cache-action-x/storage';
const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const RUNS = { numRuns: 2000 };

/** Names as an attacker writes them: path-like pieces, separators, dots and bytes a grammar must refuse. */
const hostileText = fc.oneof(
  fc.string(),
  fc
    .array(
      fc.constantFrom('..', '.', '/', 'library', 'alpha', 'ghcr.io', 'a:1', '\u0000', 'sha256:', '%2e', 'x'.repeat(70), '\\', ' ', 'A'),
      { maxLength: 12 },
    )
    .map((parts) => parts.join('')),
  fc.string().map((s) => `../${s}`),
  fc.string().map((s) => `/${s}`),
);

/** The path writeLinks and the restore compute from an image, relative to the storage root. */
const pathsOf = (image: CacheIndex['images'][number]): string[] => {
  const { registry, repository } = splitRepository(image.repository);
  const root = registry === 'docker.io' ? '' : `registries/${registry}/`;
  const repo = `${root}docker/registry/v2/repositories/${repository}`;
  return [
    `${repo}/_manifests/tags/${image.reference}/current/link`,
    ...[...image.manifests, ...image.blobs].flatMap((d) => [`${repo}/_layers/sha256/${d.slice(7)}/link`, blobPath(d)]),
  ];
};

/** Everything the reader gives back is what a well-made index holds, and every path from it is plain and inside. */
function assertWellFormed(index: CacheIndex): void {
  for (const image of index.images) {
    assert.ok(isRepositoryName(image.repository, RULES.registries), image.repository);
    assert.ok(isTag(image.reference) || isDigest(image.reference), image.reference);
    assert.ok(image.manifests.length > 0 && [...image.manifests, ...image.blobs].every(isDigest));
    for (const path of pathsOf(image)) assert.equal(inside(ROOT, path), `${ROOT}/${path}`, 'no . or .. segment, nothing outside');
  }
  for (const entry of index.entries) {
    assert.ok(entry.key.startsWith(`${RULES.prefix}-blob-`) || entry.key.startsWith(`${RULES.prefix}-pack-`), entry.key);
    assert.ok(entry.digests.every((d) => isDigest(d) && Number.isSafeInteger(index.blobs[d]) && index.blobs[d] >= 0));
  }
}

const validIndex = (): CacheIndex => {
  const [m, c, l] = ['manifest', 'config', 'layer'].map(digestOf);
  return {
    version: 2,
    created: '2026-12-01T10:00:00.000Z',
    blobs: { [m]: 500, [c]: 300, [l]: 2_000_000 },
    entries: [
      { key: `pull-cache-pack-${digestOf('pack').replace(':', '-')}`, digests: [c, m].sort() },
      { key: `pull-cache-blob-${l.replace(':', '-')}`, digests: [l] },
    ],
    images: [
      { repository: 'library/alpha', reference: '1', manifests: [m], blobs: [c, l], lastUsed: '2026-12-01T10:00:00.000Z' },
      { repository: 'ghcr.io/org/tool', reference: m, manifests: [m], blobs: [c, l], lastUsed: '2026-12-01T10:00:00.000Z' },
    ],
  };
};

describe('readIndex over generated input', () => {
  test('any JSON: either refused as a whole, or read into a well-formed index', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          assertWellFormed(readIndex(JSON.stringify(value), RULES).index);
        } catch (e) {
          if (!(e instanceof InvalidIndex)) throw e;
        }
      }),
      RUNS,
    );
  });

  test('a valid index with any field of any image or entry replaced by hostile values: well-formed, and the rest kept', () => {
    const fields = ['repository', 'reference', 'manifests', 'blobs', 'lastUsed', 'key', 'digests'];
    const value = fc.oneof(hostileText, fc.array(hostileText, { maxLength: 3 }), fc.anything());
    fc.assert(
      fc.property(fc.nat(3), fc.constantFrom(...fields), value, (which, field, replacement) => {
        const index = validIndex();
        const items: Record<string, unknown>[] = [...index.images, ...index.entries] as unknown as Record<string, unknown>[];
        const target = items[which];
        if (field in target) target[field] = replacement;
        const read = readIndex(JSON.stringify(index), RULES);
        assertWellFormed(read.index);
        // Only the item changed can be dropped, and a dropped item is named, unless it now names a registry this run
        // does not cache (left out quietly, as images of a registry taken out of `registries` are).
        const kept = read.index.images.length + read.index.entries.length;
        assert.ok(kept >= 3, `kept ${kept} of 4`);
        const otherRegistry =
          field === 'repository' && typeof replacement === 'string' && !RULES.registries.includes(splitRepository(replacement).registry);
        assert.ok(kept === 4 || read.invalid.length === 1 || (otherRegistry && read.invalid.length === 0), read.invalid.join('\n'));
      }),
      RUNS,
    );
  });

  test('repository names and tags: hostile text accepted only when it is a plain name', () => {
    fc.assert(
      fc.property(hostileText, hostileText, (repository, reference) => {
        const index = { ...validIndex(), images: [{ ...validIndex().images[0], repository, reference }] };
        assertWellFormed(readIndex(JSON.stringify(index), RULES).index);
      }),
      RUNS,
    );
  });
});

describe('inside over generated paths', () => {
  test('a path is returned when, and only when, it lies under the root', () => {
    fc.assert(
      fc.property(hostileText, (relative) => {
        const under = resolve(ROOT, relative).startsWith(`${ROOT}/`);
        let path: string;
        try {
          path = inside(ROOT, relative);
        } catch {
          assert.ok(!under, `refused ${relative}, which lies under the root`);
          return;
        }
        assert.ok(under && path.startsWith(`${ROOT}/`), path);
      }),
      RUNS,
    );
  });
});

describe('archiveProblem over generated listings', () => {
  const expected = new Map([['storage/docker/registry/v2/blobs/sha256/ab/abcd/data', 100]]);
  const line = fc.oneof(
    fc.constantFrom(
      '-rw-r--r-- 0/0             100 2026-12-02 04:14 storage/docker/registry/v2/blobs/sha256/ab/abcd/data',
      'drwxr-xr-x 0/0               0 2026-12-02 04:14 storage/docker/registry/v2/blobs/sha256/ab/',
      'drwxr-xr-x 0/0               0 2026-12-02 04:14 storage/',
    ),
    fc
      .tuple(fc.constantFrom('-', 'd', 'l', 'h', 'c', 'b', 'p'), fc.nat(1000), hostileText)
      .map(([type, size, name]) => `${type}rw-r--r-- 0/0 ${String(size).padStart(15)} 2026-12-02 04:14 ${name}`),
    hostileText,
  );
  test('a listing passes only when each file is expected, once, within its size, and each directory lies above one', () => {
    fc.assert(
      fc.property(fc.array(line, { maxLength: 6 }), (lines) => {
        if (archiveProblem(lines.join('\n'), expected) !== '') return;
        const seen = new Set<string>();
        for (const l of lines.filter(Boolean)) {
          const m = /^([-d])[-rwxsStT]{9} \d+\/\d+ +(\d+) \S+ \S+ (.+)$/.exec(l);
          assert.ok(m, `passed a line that is no plain member: ${l}`);
          if (m[1] === 'd') {
            assert.ok('storage/docker/registry/v2/blobs/sha256/ab/abcd/data'.startsWith(m[3].replace(/\/?$/, '/')), m[3]);
            continue;
          }
          assert.ok(expected.has(m[3]) && Number(m[2]) <= 100 && !seen.has(m[3]), l);
          seen.add(m[3]);
        }
      }),
      RUNS,
    );
  });
});
