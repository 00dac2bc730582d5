// The job's report: what the registry's access log says was pulled, where each blob came from, and the
// Markdown the user reads in the job summary.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { builtInBuildkitNotice } from '../../src/builtin-buildkit.js';
import { readFile } from 'node:fs/promises';
import { imageKey, imagesInStorage, type Dropped } from '../../src/cache-index.js';
import type { Manifests } from '../../src/images.js';
import { parseAccessLog } from '../../src/access-log.js';
import { aroundTheCache } from '../../src/around-the-cache.js';
import { formatBytes, renderReport, type ReportFacts } from '../../src/report.js';
import { accountUsage, mergeUsage, type Usage, type UsageTable } from '../../src/usage.js';
import type { StorageState } from '../../src/storage.js';

const digest = (name: string) => `sha256:${createHash('sha256').update(name).digest('hex')}`;
const UA = String.raw`docker/20.10.24 go/go1.19.8 git-commit/5d6db84 kernel/6.1 os/linux arch/amd64 UpstreamClient(Docker-Client/20.10.24 \(linux\))`;

/** One access-log line as Distribution 2.8 writes it (gorilla's combined format). */
function line(method: string, path: string, status: number, size = 1234, ua = UA, time = '29/Nov/2026:19:10:00 +0000'): string {
  return `127.0.0.1 - - [${time}] "${method} ${path} HTTP/1.1" ${status} ${size} "" "${ua}"`;
}

/** The time of line(): 29/Nov/2026:19:10:00 +0000, in epoch milliseconds. */
const AT = Date.UTC(2026, 10, 29, 19, 10, 0);

describe('parseAccessLog', () => {
  test('a manifest GET by tag', () => {
    assert.deepEqual(parseAccessLog(line('GET', '/v2/library/alpha/manifests/1', 200)), [
      { at: AT, agent: UA, method: 'GET', repository: 'library/alpha', kind: 'manifests', reference: '1', status: 200 },
    ]);
  });

  test('the example line from the brief, verbatim', () => {
    const text = String.raw`127.0.0.1 - - [29/Nov/2026:19:10:00 +0000] "GET /v2/library/alpha/manifests/1 HTTP/1.1" 200 1234 "" "docker/20.10.24 go/go1.19.8 git-commit/5d6db84 kernel/6.1 os/linux arch/amd64 UpstreamClient(Docker-Client/20.10.24 \(linux\))"`;
    assert.deepEqual(parseAccessLog(text), [
      { at: AT, agent: UA, method: 'GET', repository: 'library/alpha', kind: 'manifests', reference: '1', status: 200 },
    ]);
  });

  test('blob GETs and HEADs, manifests by digest, nested repository names', () => {
    const b = digest('b');
    const m = digest('m');
    const text = [
      line('HEAD', `/v2/library/alpha/manifests/1`, 200, 0),
      line('GET', `/v2/library/alpha/manifests/${m}`, 200),
      line('HEAD', `/v2/library/alpha/blobs/${b}`, 200, 0),
      line('GET', `/v2/library/alpha/blobs/${b}`, 200, 2_811_478),
      line('GET', `/v2/myorg/team/tool/blobs/${b}`, 200),
      line('GET', `/v2/library/missing/manifests/latest`, 404, 96),
    ].join('\n');
    assert.deepEqual(parseAccessLog(text), [
      { at: AT, agent: UA, method: 'HEAD', repository: 'library/alpha', kind: 'manifests', reference: '1', status: 200 },
      { at: AT, agent: UA, method: 'GET', repository: 'library/alpha', kind: 'manifests', reference: m, status: 200 },
      { at: AT, agent: UA, method: 'HEAD', repository: 'library/alpha', kind: 'blobs', reference: b, status: 200 },
      { at: AT, agent: UA, method: 'GET', repository: 'library/alpha', kind: 'blobs', reference: b, status: 200 },
      { at: AT, agent: UA, method: 'GET', repository: 'myorg/team/tool', kind: 'blobs', reference: b, status: 200 },
      { at: AT, agent: UA, method: 'GET', repository: 'library/missing', kind: 'manifests', reference: 'latest', status: 404 },
    ]);
  });

  test('a percent-encoded digest reference is decoded', () => {
    const m = digest('m');
    assert.equal(parseAccessLog(line('GET', `/v2/library/alpha/manifests/${m.replace(':', '%3A')}`, 200))[0].reference, m);
  });

  test('a query string is not part of the reference', () => {
    const b = digest('b');
    assert.equal(parseAccessLog(line('GET', `/v2/library/alpha/blobs/${b}?ns=docker.io`, 200))[0].reference, b);
  });

  test('ignores the /v2/ ping, tag lists, uploads, other methods, and non-access lines', () => {
    const text = [
      line('GET', '/v2/', 401, 87),
      line('GET', '/v2/library/alpha/tags/list', 200),
      line('POST', '/v2/library/alpha/blobs/uploads/', 202, 0),
      line('PUT', '/v2/library/alpha/manifests/1', 201, 0),
      line('DELETE', `/v2/library/alpha/blobs/${digest('x')}`, 405, 0),
      line('GET', '/debug/vars', 200),
      'time="2026-11-29T19:10:00Z" level=info msg="response completed" go.version=go1.19.8 http.request.method=GET http.request.uri="/v2/library/alpha/manifests/1" http.response.status=200',
      '',
      'garbage',
    ].join('\n');
    assert.deepEqual(parseAccessLog(text), []);
  });

  test('an empty log gives no requests', () => {
    assert.deepEqual(parseAccessLog(''), []);
    assert.deepEqual(parseAccessLog('\n\n'), []);
  });

  describe('the time of a request', () => {
    const at = (time: string) => parseAccessLog(line('GET', '/v2/library/alpha/manifests/1', 200, 1234, UA, time))[0].at;

    test('the log time in UTC is epoch milliseconds, whole seconds', () => {
      assert.equal(AT, Date.parse('2026-11-29T19:10:00.000Z'));
      assert.equal(at('29/Nov/2026:19:10:00 +0000'), Date.parse('2026-11-29T19:10:00Z'));
      assert.equal(at('29/Nov/2026:19:14:15 +0000'), Date.parse('2026-11-29T19:14:15Z'));
      assert.equal(at('29/Nov/2026:19:14:15 +0000') % 1000, 0);
    });

    test('the timezone offset is honoured: -0500 is five hours behind UTC, +0530 five and a half ahead', () => {
      assert.equal(at('29/Nov/2026:14:10:00 -0500'), AT);
      assert.equal(at('30/Nov/2026:00:40:00 +0530'), AT);
      assert.equal(at('29/Nov/2026:19:10:00 -0500') - at('29/Nov/2026:19:10:00 +0000'), 5 * 3600_000);
    });

    test('an offset can move the time into the next day and year', () => {
      assert.equal(at('31/Dec/2026:23:59:59 -0100'), Date.parse('2027-01-01T00:59:59Z'));
      assert.equal(at('01/Jan/2027:00:30:00 +0100'), Date.parse('2026-12-31T23:30:00Z'));
    });

    test('every month by its English abbreviation', () => {
      const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
      months.forEach((month, i) => assert.equal(at(`05/${month}/2026:08:09:10 +0000`), Date.UTC(2026, i, 5, 8, 9, 10), month));
    });

    test('a time it cannot read gives NaN, and the request is still listed', () => {
      for (const time of ['29/Foo/2026:19:10:00 +0000', '29/nov/2026:19:10:00 +0000', '2026-11-29T19:10:00Z', '29/Nov/2026:19:10:00']) {
        const requests = parseAccessLog(line('GET', '/v2/library/alpha/manifests/1', 200, 1234, UA, time));
        assert.equal(requests.length, 1, time);
        assert.ok(Number.isNaN(requests[0].at), `${time}: ${requests[0].at}`);
      }
    });

    test('each line keeps its own time', () => {
      const text = [
        line('HEAD', '/v2/library/alpha/manifests/1', 200, 0, UA, '29/Nov/2026:19:10:00 +0000'),
        line('HEAD', '/v2/library/alpha/manifests/1', 200, 0, UA, '29/Nov/2026:19:10:07 +0000'),
      ].join('\n');
      assert.deepEqual(
        parseAccessLog(text).map((r) => r.at - AT),
        [0, 7_000],
      );
    });
  });
});

// The scenario: images alpha:1 and beta:1 share a base layer. Before the job, the cache held alpha only
// (base linked under library/alpha alone). gamma:2 is a two-platform index of which one platform is pulled.
const d = {
  alphaManifest: digest('alpha manifest'),
  alphaConfig: digest('alpha config'),
  alphaLayer: digest('alpha layer'),
  alphaUnrequested: digest('alpha layer the daemon already had'),
  base: digest('base layer'),
  betaManifest: digest('beta manifest'),
  betaConfig: digest('beta config'),
  betaLayer: digest('beta layer'),
  gammaIndex: digest('gamma index'),
  gammaAmd64: digest('gamma amd64 manifest'),
  gammaArm64: digest('gamma arm64 manifest'),
  gammaConfig: digest('gamma amd64 config'),
  gammaLayer: digest('gamma amd64 layer'),
  gammaArmConfig: digest('gamma arm64 config'),
  gammaArmLayer: digest('gamma arm64 layer'),
};
const size: Record<string, number> = {
  [d.alphaManifest]: 1_000,
  [d.alphaConfig]: 2_000,
  [d.alphaLayer]: 3_000_000,
  [d.alphaUnrequested]: 7_000_000,
  [d.base]: 30_000_000,
  [d.betaManifest]: 1_100,
  [d.betaConfig]: 2_100,
  [d.betaLayer]: 4_000_000,
  [d.gammaIndex]: 900,
  [d.gammaAmd64]: 1_200,
  [d.gammaArm64]: 1_200,
  [d.gammaConfig]: 1_500,
  [d.gammaLayer]: 5_000_000,
  [d.gammaArmConfig]: 1_600,
  [d.gammaArmLayer]: 6_000_000,
};
const sized = (...ds: string[]) => Object.fromEntries(ds.map((x) => [x, size[x]]));

/** As the registry stores them: schema 2 JSON, with fields the report does not read. */
const manifestJson = {
  [d.alphaManifest]: {
    schemaVersion: 2,
    config: { digest: d.alphaConfig },
    layers: [{ digest: d.base }, { digest: d.alphaUnrequested }, { digest: d.alphaLayer }],
  },
  [d.betaManifest]: { schemaVersion: 2, config: { digest: d.betaConfig }, layers: [{ digest: d.base }, { digest: d.betaLayer }] },
  [d.gammaIndex]: {
    schemaVersion: 2,
    manifests: [
      { digest: d.gammaAmd64, platform: { os: 'linux', architecture: 'amd64' } },
      { digest: d.gammaArm64, platform: { os: 'linux', architecture: 'arm64' } },
    ],
  },
  [d.gammaAmd64]: { schemaVersion: 2, config: { digest: d.gammaConfig }, layers: [{ digest: d.gammaLayer }] },
  [d.gammaArm64]: { schemaVersion: 2, config: { digest: d.gammaArmConfig }, layers: [{ digest: d.gammaArmLayer }] },
};
const manifests: Manifests = manifestJson;

const before: StorageState = {
  blobs: sized(d.alphaManifest, d.alphaConfig, d.alphaLayer, d.alphaUnrequested, d.base),
  repositories: {
    'library/alpha': {
      tags: { '1': d.alphaManifest },
      manifests: [d.alphaManifest],
      layers: [d.alphaConfig, d.alphaLayer, d.alphaUnrequested, d.base],
    },
  },
};
const after: StorageState = {
  blobs: sized(...Object.values(d).filter((x) => x !== d.gammaArmConfig && x !== d.gammaArmLayer)),
  repositories: {
    'library/alpha': before.repositories['library/alpha'],
    'library/beta': { tags: { '1': d.betaManifest }, manifests: [d.betaManifest], layers: [d.base, d.betaConfig, d.betaLayer] },
    'library/gamma': { tags: { '2': d.gammaIndex }, manifests: [d.gammaIndex, d.gammaAmd64], layers: [d.gammaConfig, d.gammaLayer] },
  },
};

const jobLog = [
  line('GET', '/v2/', 401, 87),
  line('HEAD', '/v2/library/alpha/manifests/1', 200, 0),
  line('GET', '/v2/library/alpha/manifests/1', 200, 1000),
  line('GET', `/v2/library/alpha/blobs/${d.alphaConfig}`, 200),
  line('GET', `/v2/library/alpha/blobs/${d.base}`, 200),
  line('GET', `/v2/library/alpha/blobs/${d.alphaLayer}`, 200),
  // alphaUnrequested: the daemon had it, so never asked for it.
  line('GET', '/v2/library/beta/manifests/1', 200, 1100),
  line('GET', `/v2/library/beta/blobs/${d.betaConfig}`, 200),
  line('HEAD', `/v2/library/beta/blobs/${d.base}`, 200, 0),
  line('GET', `/v2/library/beta/blobs/${d.base}`, 200),
  line('GET', `/v2/library/beta/blobs/${d.betaLayer}`, 200),
  // A retried download of the same blob: served twice, counted once.
  line('GET', `/v2/library/beta/blobs/${d.betaLayer}`, 200),
  line('GET', '/v2/library/gamma/manifests/2', 200, 900),
  line('GET', `/v2/library/gamma/manifests/${d.gammaAmd64}`, 200, 1200),
  line('GET', `/v2/library/gamma/blobs/${d.gammaConfig}`, 200),
  line('GET', `/v2/library/gamma/blobs/${d.gammaLayer}`, 200),
  // A failed request is not something served.
  line('GET', `/v2/library/gamma/blobs/${d.gammaArmLayer}`, 404, 157),
].join('\n');

/** A table with no image in it. */
const NOTHING: UsageTable = { images: [], fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 0, bytes: 0 } };

const rowOf = (usage: Usage, image: string) => {
  const row = usage.images.find((u) => u.image === image);
  assert.ok(row, `no row for ${image} in ${JSON.stringify(usage.images.map((u) => u.image))}`);
  return row;
};

describe('accountUsage', () => {
  const usage = accountUsage(parseAccessLog(jobLog), before, after, manifests);

  test('one row per image pulled by tag, with the short name for official images', () => {
    assert.deepEqual(
      usage.images.map((u) => u.image),
      ['alpha:1', 'beta:1', 'gamma:2'],
    );
  });

  test('an image whose blobs were all linked under its repository before the job comes from the cache', () => {
    assert.deepEqual(rowOf(usage, 'alpha:1'), {
      key: 'library/alpha:1',
      image: 'alpha:1',
      fromCache: { blobs: 3, bytes: size[d.alphaConfig] + size[d.base] + size[d.alphaLayer] },
      fromUpstream: { blobs: 0, bytes: 0 },
    });
  });

  test('a base layer held but linked only under another repository counts as upstream (per-repository hits)', () => {
    assert.deepEqual(rowOf(usage, 'beta:1'), {
      key: 'library/beta:1',
      image: 'beta:1',
      fromCache: { blobs: 0, bytes: 0 },
      fromUpstream: { blobs: 3, bytes: size[d.betaConfig] + size[d.base] + size[d.betaLayer] },
    });
  });

  test('an index counts only the platform the job pulled, and its child manifest is not a row of its own', () => {
    assert.deepEqual(rowOf(usage, 'gamma:2'), {
      key: 'library/gamma:2',
      image: 'gamma:2',
      fromCache: { blobs: 0, bytes: 0 },
      fromUpstream: { blobs: 2, bytes: size[d.gammaConfig] + size[d.gammaLayer] },
    });
    assert.ok(!usage.images.some((u) => u.image.includes('@')));
  });

  test('totals: blobs not requested are not counted; a blob served twice is counted once', () => {
    assert.deepEqual(usage.fromCache, { blobs: 3, bytes: 2_000 + 30_000_000 + 3_000_000 });
    assert.deepEqual(usage.fromUpstream, { blobs: 5, bytes: 2_100 + 30_000_000 + 4_000_000 + 1_500 + 5_000_000 });
  });

  test('a blob shared by two tags of the same repository counts in each row, and once in the total', () => {
    const log = [
      line('GET', '/v2/library/alpha/manifests/1', 200),
      line('GET', `/v2/library/alpha/blobs/${d.alphaConfig}`, 200),
      line('GET', `/v2/library/alpha/blobs/${d.base}`, 200),
      line('GET', '/v2/library/alpha/manifests/latest', 200),
    ].join('\n');
    const state: StorageState = {
      blobs: before.blobs,
      repositories: {
        'library/alpha': { ...before.repositories['library/alpha'], tags: { '1': d.alphaManifest, latest: d.alphaManifest } },
      },
    };
    const u = accountUsage(parseAccessLog(log), before, state, manifests);
    assert.deepEqual(
      u.images.map((r) => r.image),
      ['alpha:1', 'alpha:latest'],
    );
    assert.deepEqual(rowOf(u, 'alpha:1').fromCache, { blobs: 2, bytes: 2_000 + 30_000_000 });
    assert.deepEqual(rowOf(u, 'alpha:latest').fromCache, { blobs: 2, bytes: 2_000 + 30_000_000 });
    assert.deepEqual(u.fromCache, { blobs: 2, bytes: 2_000 + 30_000_000 });
    assert.deepEqual(u.fromUpstream, { blobs: 0, bytes: 0 });
  });

  test('a blob held before the job but not linked anywhere is upstream; a linked one missing from storage is upstream too', () => {
    const extra = digest('orphan');
    const log = [
      line('GET', '/v2/library/alpha/manifests/1', 200),
      line('GET', `/v2/library/alpha/blobs/${d.alphaConfig}`, 200),
      line('GET', `/v2/library/alpha/blobs/${d.base}`, 200),
    ].join('\n');
    const b: StorageState = {
      blobs: { [d.alphaConfig]: size[d.alphaConfig], [extra]: 1 },
      repositories: { 'library/alpha': { tags: {}, manifests: [], layers: [d.base] } },
    };
    const u = accountUsage(parseAccessLog(log), b, before, manifests);
    assert.deepEqual(u.fromCache, { blobs: 0, bytes: 0 });
    assert.deepEqual(u.fromUpstream, { blobs: 2, bytes: 2_000 + 30_000_000 });
  });

  test('restored in the background: a blob linked by the end of the second its request was logged in is a hit, one linked later a miss', () => {
    // Nothing was in storage when the job started; the restore linked alpha's blobs while the job pulled.
    const empty: StorageState = { blobs: {}, repositories: {} };
    const log = [
      line('GET', '/v2/library/alpha/manifests/1', 200),
      line('GET', `/v2/library/alpha/blobs/${d.alphaConfig}`, 200),
      line('GET', `/v2/library/alpha/blobs/${d.base}`, 200),
    ].join('\n');
    // The config in the same second as its request (the front held it until then), the base layer a second later.
    const restoredAt = new Map([
      [`library/alpha@${d.alphaConfig}`, AT + 900],
      [`library/alpha@${d.base}`, AT + 1000],
    ]);
    const u = accountUsage(parseAccessLog(log), empty, before, manifests, new Set(), restoredAt);
    assert.deepEqual(u.fromCache, { blobs: 1, bytes: 2_000 });
    assert.deepEqual(u.fromUpstream, { blobs: 1, bytes: 30_000_000 });
  });

  test('an image pulled by digest gets a row named by repository@digest prefix', () => {
    const log = [
      line('GET', `/v2/library/beta/manifests/${d.betaManifest}`, 200),
      line('GET', `/v2/library/beta/blobs/${d.betaConfig}`, 200),
      line('GET', `/v2/library/beta/blobs/${d.betaLayer}`, 200),
    ].join('\n');
    const u = accountUsage(parseAccessLog(log), before, after, manifests);
    assert.equal(u.images.length, 1);
    assert.equal(u.images[0].image, `beta@${d.betaManifest.slice(0, 19)}`);
    assert.deepEqual(u.images[0].fromUpstream, { blobs: 2, bytes: 2_100 + 4_000_000 });
  });

  test('a tag resolved with a HEAD, then the index and one platform GET by digest (containerd image store): one row named by tag', () => {
    const log = [
      line('HEAD', '/v2/library/gamma/manifests/2', 200, 0),
      line('GET', `/v2/library/gamma/manifests/${d.gammaIndex}`, 200),
      line('GET', `/v2/library/gamma/manifests/${d.gammaAmd64}`, 200),
      line('GET', `/v2/library/gamma/blobs/${d.gammaConfig}`, 200),
      line('GET', `/v2/library/gamma/blobs/${d.gammaLayer}`, 200),
    ].join('\n');
    const u = accountUsage(parseAccessLog(log), before, after, manifests);
    assert.deepEqual(u.images, [
      { key: 'library/gamma:2', image: 'gamma:2', fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 2, bytes: 1_500 + 5_000_000 } },
    ]);
  });

  test('a tag both HEADed and GET is one row, its blobs counted once', () => {
    const log = [
      line('HEAD', '/v2/library/beta/manifests/1', 200, 0),
      line('GET', '/v2/library/beta/manifests/1', 200),
      line('GET', `/v2/library/beta/manifests/${d.betaManifest}`, 200),
      line('GET', `/v2/library/beta/blobs/${d.betaLayer}`, 200),
    ].join('\n');
    const u = accountUsage(parseAccessLog(log), before, after, manifests);
    assert.deepEqual(u.images, [
      { key: 'library/beta:1', image: 'beta:1', fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 1, bytes: 4_000_000 } },
    ]);
  });

  test('an index pulled by digest is one row; its child is not listed separately', () => {
    const log = [
      line('GET', `/v2/library/gamma/manifests/${d.gammaIndex}`, 200),
      line('GET', `/v2/library/gamma/manifests/${d.gammaAmd64}`, 200),
      line('GET', `/v2/library/gamma/blobs/${d.gammaConfig}`, 200),
      line('GET', `/v2/library/gamma/blobs/${d.gammaLayer}`, 200),
    ].join('\n');
    const u = accountUsage(parseAccessLog(log), before, after, manifests);
    assert.deepEqual(
      u.images.map((r) => r.image),
      [`gamma@${d.gammaIndex.slice(0, 19)}`],
    );
    assert.deepEqual(u.images[0].fromUpstream, { blobs: 2, bytes: 1_500 + 5_000_000 });
  });

  test('blobs served with no manifest the job asked for are reported in a row of their own', () => {
    const log = line('GET', `/v2/library/alpha/blobs/${d.alphaLayer}`, 200);
    const u = accountUsage(parseAccessLog(log), before, before, manifests);
    assert.deepEqual(u.images, [
      {
        key: '',
        image: '(blobs of no image pulled by tag)',
        fromCache: { blobs: 1, bytes: 3_000_000 },
        fromUpstream: { blobs: 0, bytes: 0 },
      },
    ]);
    assert.deepEqual(u.fromCache, { blobs: 1, bytes: 3_000_000 });
  });

  test('a manifest the report could not read still lists the image, with nothing counted against it', () => {
    const log = [line('GET', '/v2/library/beta/manifests/1', 200), line('GET', `/v2/library/beta/blobs/${d.betaLayer}`, 200)].join('\n');
    const u = accountUsage(parseAccessLog(log), before, after, {});
    assert.deepEqual(rowOf(u, 'beta:1'), {
      key: 'library/beta:1',
      image: 'beta:1',
      fromCache: { blobs: 0, bytes: 0 },
      fromUpstream: { blobs: 0, bytes: 0 },
    });
    assert.deepEqual(u.fromUpstream, { blobs: 1, bytes: 4_000_000 });
  });

  test('a job that pulled nothing', () => {
    assert.deepEqual(accountUsage([], before, before, {}), { ...NOTHING, prefetchOnly: NOTHING });
  });

  test('each row carries the key the cache index names the image by: repository:tag, with library/ kept', () => {
    assert.deepEqual(
      usage.images.map((u) => u.key),
      ['library/alpha:1', 'library/beta:1', 'library/gamma:2'],
    );
  });

  test('the keys of images pulled by tag are those imagesInStorage gives for the storage after the job', () => {
    const inStorage = new Set(imagesInStorage(after, manifests).map(imageKey));
    for (const u of usage.images) assert.ok(inStorage.has(u.key), `${u.key} not in ${[...inStorage].join(', ')}`);
  });

  test('an image pulled by digest has the key repository@digest, in full', () => {
    const log = [
      line('GET', `/v2/library/beta/manifests/${d.betaManifest}`, 200),
      line('GET', `/v2/library/beta/blobs/${d.betaLayer}`, 200),
    ].join('\n');
    const u = accountUsage(parseAccessLog(log), before, after, manifests);
    assert.deepEqual(
      u.images.map((r) => [r.key, r.image]),
      [[`library/beta@${d.betaManifest}`, `beta@${d.betaManifest.slice(0, 19)}`]],
    );
  });

  test('an index pulled by digest has the key of the index, and the key matches imagesInStorage', () => {
    const log = [
      line('GET', `/v2/library/gamma/manifests/${d.gammaIndex}`, 200),
      line('GET', `/v2/library/gamma/manifests/${d.gammaAmd64}`, 200),
    ].join('\n');
    const state: StorageState = {
      blobs: after.blobs,
      repositories: { 'library/gamma': { ...after.repositories['library/gamma'], tags: {} } },
    };
    const u = accountUsage(parseAccessLog(log), before, state, manifests);
    assert.deepEqual(
      u.images.map((r) => r.key),
      [`library/gamma@${d.gammaIndex}`],
    );
    assert.deepEqual(imagesInStorage(state, manifests).map(imageKey), [`library/gamma@${d.gammaIndex}`]);
  });

  test('the same image pulled by two tags gives two keys; a user image keeps its namespace in the key', () => {
    const log = [line('GET', '/v2/library/alpha/manifests/1', 200), line('GET', '/v2/library/alpha/manifests/latest', 200)].join('\n');
    const state: StorageState = {
      blobs: before.blobs,
      repositories: {
        'library/alpha': { ...before.repositories['library/alpha'], tags: { '1': d.alphaManifest, latest: d.alphaManifest } },
      },
    };
    assert.deepEqual(
      accountUsage(parseAccessLog(log), before, state, manifests).images.map((r) => r.key),
      ['library/alpha:1', 'library/alpha:latest'],
    );
    const m = digest('user manifest');
    const userState: StorageState = {
      blobs: { [m]: 10 },
      repositories: { 'octocat/tool': { tags: { 'v1.2': m }, manifests: [m], layers: [] } },
    };
    assert.deepEqual(
      accountUsage(parseAccessLog(line('HEAD', '/v2/octocat/tool/manifests/v1.2', 200)), before, userState, {}).images.map((r) => r.key),
      ['octocat/tool:v1.2'],
    );
  });

  test('a user image keeps its full name', () => {
    const m = digest('user manifest');
    const c = digest('user config');
    const log = [line('GET', '/v2/octocat/tool/manifests/v1.2', 200), line('GET', `/v2/octocat/tool/blobs/${c}`, 200)].join('\n');
    const state: StorageState = {
      blobs: { [m]: 10, [c]: 20 },
      repositories: { 'octocat/tool': { tags: { 'v1.2': m }, manifests: [m], layers: [c] } },
    };
    const u = accountUsage(parseAccessLog(log), { blobs: {}, repositories: {} }, state, { [m]: { config: { digest: c }, layers: [] } });
    assert.deepEqual(
      u.images.map((r) => r.image),
      ['octocat/tool:v1.2'],
    );
  });
});

/** A report's facts with nothing remarkable in them; tests set what they look at. */
const reportFacts: ReportFacts = {
  upstream: 'https://registry-1.docker.io',
  registries: [],
  aroundTheCache: [],
  builtInBuildkit: '',
  usage: null,
  restoredKey: 'pull-cache-index-linux-amd64-123-1-abc',
  indexLimited: '',
  indexLateSeconds: null,
  restoredBlobs: 5,
  background: null,
  restoredBytes: 40_003_000,
  missingEntries: 0,
  damagedBlobs: 0,
  refused: [],
  dropped: [],
  budget: { maxBytes: 2_000_000_000, maxAgeDays: 7 },
  saved: { entries: 4, bytes: 39_006_900, indexKey: 'pull-cache-index-linux-amd64-456-1-def', deferred: 0, stopped: '' },
  saveDisabled: false,
  withheld: [],
  stale: [],
  unverified: [],
  quota: null,
  pullsAs: '',
  prefetch: null,
  unpigz: true,
  problems: [],
};
const MiB = 1024 * 1024;

describe('accountUsage: the job apart from the prefetch', () => {
  const PREFETCH = String.raw`docker/20.10.24 go/go1.19.8 git-commit/5d6db84 kernel/6.1 os/linux arch/amd64 UpstreamClient(pull-cache-action-prefetch)`;
  const p = (method: string, path: string) => line(method, path, 200, 1234, PREFETCH);
  // The scenario: the last run pulled base:1, app:2 and someuser/tool:latest; this job pulls app:3, which
  // shares three blobs with app:2 (one of them with base:1 too) and adds a config and a layer.
  const b = Object.fromEntries(
    [
      'baseCfg',
      'baseLayer',
      'depLayer',
      'app2Layer',
      'app2Cfg',
      'app2',
      'app3Cfg',
      'app3Layer',
      'app3',
      'base',
      'toolCfg',
      'toolLayer',
      'tool',
      'newCfg',
      'newLayer',
      'new',
    ].map((n) => [n, digest(`issue16 ${n}`)]),
  );
  const sizes: Record<string, number> = {
    [b.baseCfg]: 300,
    [b.baseLayer]: 2 * MiB,
    [b.depLayer]: 2 * MiB,
    [b.app2Layer]: 2 * MiB,
    [b.app2Cfg]: 64 * 1024,
    [b.app3Cfg]: 1024,
    [b.app3Layer]: MiB - 1024,
    [b.toolCfg]: 700,
    [b.toolLayer]: 512 * 1024,
    [b.newCfg]: 400,
    [b.newLayer]: 3 * MiB,
    [b.app2]: 500,
    [b.app3]: 500,
    [b.base]: 300,
    [b.tool]: 400,
    [b.new]: 400,
  };
  const m: Manifests = {
    [b.base]: { config: { digest: b.baseCfg }, layers: [{ digest: b.baseLayer }] },
    [b.app2]: { config: { digest: b.app2Cfg }, layers: [{ digest: b.baseLayer }, { digest: b.depLayer }, { digest: b.app2Layer }] },
    [b.app3]: {
      config: { digest: b.app3Cfg },
      layers: [{ digest: b.baseLayer }, { digest: b.depLayer }, { digest: b.app2Layer }, { digest: b.app3Layer }],
    },
    [b.tool]: { config: { digest: b.toolCfg }, layers: [{ digest: b.toolLayer }] },
    [b.new]: { config: { digest: b.newCfg }, layers: [{ digest: b.baseLayer }, { digest: b.newLayer }] },
  };
  const only = (...ds: string[]) => Object.fromEntries(ds.map((x) => [x, sizes[x]]));
  const cached: StorageState = {
    blobs: only(b.base, b.baseCfg, b.baseLayer, b.app2, b.app2Cfg, b.depLayer, b.app2Layer, b.tool, b.toolCfg, b.toolLayer),
    repositories: {
      'library/base': { tags: { '1': b.base }, manifests: [b.base], layers: [b.baseCfg, b.baseLayer] },
      'library/app': { tags: { '2': b.app2 }, manifests: [b.app2], layers: [b.app2Cfg, b.baseLayer, b.depLayer, b.app2Layer] },
      'someuser/tool': { tags: { latest: b.tool }, manifests: [b.tool], layers: [b.toolCfg, b.toolLayer] },
    },
  };
  const later: StorageState = {
    blobs: { ...cached.blobs, ...only(b.app3, b.app3Cfg, b.app3Layer, b.new, b.newCfg, b.newLayer) },
    repositories: {
      ...cached.repositories,
      'library/app': {
        tags: { '2': b.app2, '3': b.app3 },
        manifests: [b.app2, b.app3],
        layers: [...cached.repositories['library/app'].layers, b.app3Cfg, b.app3Layer],
      },
      'library/new': { tags: { '1': b.new }, manifests: [b.new], layers: [b.newCfg, b.baseLayer, b.newLayer] },
    },
  };
  const pulls = (agent: (method: string, path: string) => string, repository: string, tag: string, blobs: string[]) => [
    agent('HEAD', `/v2/${repository}/manifests/${tag}`),
    agent('GET', `/v2/${repository}/manifests/${tag}`),
    ...blobs.map((x) => agent('GET', `/v2/${repository}/blobs/${x}`)),
  ];
  const job = (method: string, path: string) => line(method, path, 200);
  const prefetchOfLastRun = [
    ...pulls(p, 'library/base', '1', [b.baseCfg, b.baseLayer]),
    ...pulls(p, 'library/app', '2', [b.app2Cfg, b.depLayer, b.app2Layer]),
    ...pulls(p, 'someuser/tool', 'latest', [b.toolCfg, b.toolLayer]),
  ];
  const account = (log: string[], ranByJob: string[] = []) =>
    accountUsage(parseAccessLog(log.join('\n')), cached, later, m, new Set(ranByJob));
  const tally = (blobs: number, bytes: number) => ({ blobs, bytes });

  test("the issue's scenario: app:3 alone in the job's figures, 3 of its 5 blobs from the cache though the prefetch's pulls carried them", () => {
    const u = account([...prefetchOfLastRun, ...pulls(job, 'library/app', '3', [b.app3Cfg, b.app3Layer])]);
    assert.deepEqual(u.images, [{ key: 'library/app:3', image: 'app:3', fromCache: tally(3, 6 * MiB), fromUpstream: tally(2, MiB) }]);
    assert.deepEqual([u.fromCache, u.fromUpstream], [tally(3, 6 * MiB), tally(2, MiB)]);
    assert.deepEqual(
      u.prefetchOnly.images.map((i) => [i.image, i.fromCache.blobs, i.fromUpstream.blobs]),
      [
        ['base:1', 2, 0],
        ['app:2', 4, 0],
        ['someuser/tool:latest', 2, 0],
      ],
    );
    // app:2's shared layers are counted in the job's figures already.
    assert.deepEqual(u.prefetchOnly.fromCache, tally(4, 300 + 64 * 1024 + 700 + 512 * 1024));
    assert.deepEqual(u.prefetchOnly.fromUpstream, tally(0, 0));
  });

  test("job only: no prefetch, everything is the job's", () => {
    const u = account(pulls(job, 'library/app', '2', [b.app2Cfg, b.baseLayer, b.depLayer, b.app2Layer]));
    assert.deepEqual(
      u.images.map((i) => [i.image, i.fromCache.blobs]),
      [['app:2', 4]],
    );
    assert.deepEqual(u.prefetchOnly.images, []);
  });

  test("prefetch only, unused: nothing in the job's figures", () => {
    const u = account(prefetchOfLastRun);
    assert.deepEqual(u.images, []);
    assert.deepEqual([u.fromCache, u.fromUpstream], [tally(0, 0), tally(0, 0)]);
    assert.deepEqual(
      u.prefetchOnly.images.map((i) => i.image),
      ['base:1', 'app:2', 'someuser/tool:latest'],
    );
  });

  test("prefetched, then the job pulled it (the daemon had it: a manifest request, no blobs): the job's, with all its blobs", () => {
    const u = account([...prefetchOfLastRun, job('HEAD', '/v2/library/app/manifests/2')]);
    assert.deepEqual(u.images, [
      { key: 'library/app:2', image: 'app:2', fromCache: tally(4, 6 * MiB + 64 * 1024), fromUpstream: tally(0, 0) },
    ]);
    assert.deepEqual(
      u.prefetchOnly.images.map((i) => i.image),
      ['base:1', 'someuser/tool:latest'],
    );
  });

  test("prefetched, then the job ran a container of it without pulling: the job's", () => {
    const u = account(prefetchOfLastRun, ['someuser/tool:latest']);
    assert.deepEqual(
      u.images.map((i) => [i.image, i.fromCache.blobs]),
      [['someuser/tool:latest', 2]],
    );
    assert.deepEqual(
      u.prefetchOnly.images.map((i) => i.image),
      ['base:1', 'app:2'],
    );
  });

  test("a job pull joining the prefetch in flight: the blobs came on the prefetch's requests, the image is the job's", () => {
    const log = [
      p('GET', '/v2/library/app/manifests/2'),
      job('GET', '/v2/library/app/manifests/2'),
      ...[b.app2Cfg, b.baseLayer, b.depLayer, b.app2Layer].map((x) => p('GET', `/v2/library/app/blobs/${x}`)),
    ];
    const u = account(log);
    assert.deepEqual(u.images, [
      { key: 'library/app:2', image: 'app:2', fromCache: tally(4, 6 * MiB + 64 * 1024), fromUpstream: tally(0, 0) },
    ]);
    assert.deepEqual(u.prefetchOnly.images, []);
  });

  test("a prefetch miss: fetched from the upstream on speculation, shown apart; a shared blob the job's image names is the job's", () => {
    const log = [...pulls(p, 'library/new', '1', [b.newCfg, b.baseLayer, b.newLayer]), ...pulls(job, 'library/base', '1', [b.baseCfg])];
    const u = account(log);
    // base:1's layer came from the upstream under library/new, where the cache did not hold it; the daemon then had it.
    assert.deepEqual(u.images, [{ key: 'library/base:1', image: 'base:1', fromCache: tally(1, 300), fromUpstream: tally(1, 2 * MiB) }]);
    assert.deepEqual(u.prefetchOnly.images, [
      { key: 'library/new:1', image: 'new:1', fromCache: tally(0, 0), fromUpstream: tally(3, 400 + 2 * MiB + 3 * MiB) },
    ]);
    assert.deepEqual(u.prefetchOnly.fromUpstream, tally(2, 400 + 3 * MiB));
  });

  test('a blob no one asked the mirror for during the job was on the runner already: neither a hit nor a miss', () => {
    const u = account(pulls(job, 'library/app', '3', [b.app3Cfg, b.app3Layer]));
    assert.deepEqual(u.images, [{ key: 'library/app:3', image: 'app:3', fromCache: tally(0, 0), fromUpstream: tally(2, MiB) }]);
  });

  test("the report: the job's table and hit rate, then the prefetch's own table with its pulling time", () => {
    const usage = account([...prefetchOfLastRun, ...pulls(job, 'library/app', '3', [b.app3Cfg, b.app3Layer])]);
    const unused = ['base:1', 'someuser/tool:latest', 'app:2'].map((ref, i) => ({ ref, ms: 400 + 100 * i }));
    const md = renderReport({ ...reportFacts, usage, prefetch: { used: [], unused, failed: [] } });
    const expected = [
      '| Image | From cache | From Docker Hub |',
      '| --- | --- | --- |',
      '| app:3 | 3 blobs, 6.0 MiB | 2 blobs, 1.0 MiB |',
      '| **Total** | **3 blobs, 6.0 MiB** | **2 blobs, 1.0 MiB** |',
      '',
      'Hit rate: 86% of bytes served (3 of 5 blobs).',
      '',
      'Prefetched and not used by the job (not in the figures above):',
      '',
      '| Image | From cache | From Docker Hub | Pulling |',
      '| --- | --- | --- | --- |',
      '| base:1 | 2 blobs, 2.0 MiB | – | 0.4 s |',
      '| app:2 | 4 blobs, 6.1 MiB | – | 0.6 s |',
      '| someuser/tool:latest | 2 blobs, 512.7 KiB | – | 0.5 s |',
      '| **Total** | **4 blobs, 577.0 KiB** | **–** | |',
      '',
      "The total counts each blob once, and none of the job's images.",
      '',
    ].join('\n');
    assert.ok(md.includes(expected), md);
    assert.ok(!md.includes('turns it off'), md);
  });

  test("the README's example report is what the action prints for this scenario", async () => {
    const usage = account([...prefetchOfLastRun, ...pulls(job, 'library/app', '3', [b.app3Cfg, b.app3Layer])]);
    const md = renderReport({
      ...reportFacts,
      usage,
      restoredKey: 'pull-cache-index-linux-amd64-14611-1-m3x9q2-7c1d0e',
      restoredBlobs: Object.keys(cached.blobs).length,
      restoredBytes: Object.values(cached.blobs).reduce((a, x) => a + x, 0),
      background: { images: 3, seconds: 0.8, finished: true, early: [] },
      saved: {
        entries: 3,
        bytes: sizes[b.app3] + sizes[b.app3Cfg] + sizes[b.app3Layer],
        indexKey: 'pull-cache-index-linux-amd64-14612-1-p8k2w4-91e3aa',
        deferred: 0,
        stopped: '',
      },
      quota: { limit: 200, remaining: 187, window: 21600 },
      pullsAs: 'ci-bot',
      prefetch: {
        used: [],
        unused: [
          { ref: 'base:1', ms: 420 },
          { ref: 'app:2', ms: 1_870 },
          { ref: 'someuser/tool:latest', ms: 640 },
        ],
        failed: [],
      },
    });
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const example = md.slice('## Pull cache\n\n'.length).trimEnd();
    assert.ok(readme.includes(`\n${example}\n`), `README.md does not show the report as printed:\n${example}`);
  });

  test('the report: what the prefetch fetched from the upstream for nothing, and how to stop it', () => {
    const usage = account(pulls(p, 'library/new', '1', [b.newCfg, b.baseLayer, b.newLayer]));
    const md = renderReport({ ...reportFacts, usage, prefetch: { used: [], unused: [{ ref: 'new:1', ms: 2_345 }], failed: [] } });
    assert.ok(md.includes('No image was pulled through the cache in this job.'), md);
    assert.ok(md.includes('| new:1 | – | 3 blobs, 5.0 MiB | 2.3 s |'), md);
    assert.ok(
      md.includes('The prefetch fetched 3 blobs, 5.0 MiB from Docker Hub for images this job did not use: `prefetch: false` turns it off.'),
      md,
    );
  });
});

describe('formatBytes', () => {
  test('KiB, MiB and GiB, named as binary units', () => {
    assert.equal(formatBytes(0), '0.0 KiB');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(30 * 1024 * 1024), '30.0 MiB');
    assert.equal(formatBytes(3 * 1024 ** 3), '3.00 GiB');
  });
});

describe('renderReport', () => {
  const usage = accountUsage(parseAccessLog(jobLog), before, after, manifests);
  const facts = (over: Partial<ReportFacts> = {}): ReportFacts => ({ ...reportFacts, usage, ...over });

  test('a table with one row per image, and totals, from cache and from Docker Hub', () => {
    const md = renderReport(facts());
    assert.ok(md.startsWith('## Pull cache\n'));
    assert.ok(md.includes('| Image | From cache | From Docker Hub |'), md);
    assert.ok(md.includes(`| alpha:1 | 3 blobs, ${formatBytes(33_002_000)} | – |`), md);
    assert.ok(md.includes(`| beta:1 | – | 3 blobs, ${formatBytes(34_002_100)} |`), md);
    assert.ok(md.includes(`| gamma:2 | – | 2 blobs, ${formatBytes(5_001_500)} |`), md);
    assert.ok(md.includes(`| **Total** | **3 blobs, ${formatBytes(33_002_000)}** | **5 blobs, ${formatBytes(39_003_600)}** |`), md);
  });

  test('the hit rate is by bytes, with the blob count', () => {
    const pct = Math.round((100 * 33_002_000) / (33_002_000 + 39_003_600));
    assert.equal(pct, 46);
    assert.ok(renderReport(facts()).includes('Hit rate: 46% of bytes served (3 of 8 blobs).'));
  });

  test('a single blob is "1 blob"', () => {
    const one: Usage = {
      images: [{ key: 'library/x:1', image: 'x:1', fromCache: { blobs: 1, bytes: 2048 }, fromUpstream: { blobs: 0, bytes: 0 } }],
      fromCache: { blobs: 1, bytes: 2048 },
      fromUpstream: { blobs: 0, bytes: 0 },
      prefetchOnly: NOTHING,
    };
    const md = renderReport(facts({ usage: one }));
    assert.ok(md.includes('| x:1 | 1 blob, 2.0 KiB | – |'), md);
    assert.ok(md.includes('Hit rate: 100% of bytes served (1 of 1 blobs).'), md);
  });

  test('another upstream is named by its host', () => {
    const md = renderReport(facts({ upstream: 'https://ghcr.io' }));
    assert.ok(md.includes('| Image | From cache | From ghcr.io |'), md);
    assert.ok(!md.includes('Docker Hub'));
    assert.ok(renderReport(facts({ upstream: 'http://127.0.0.1:5001' })).includes('From 127.0.0.1:5001 |'));
  });

  test('restored and saved lines', () => {
    const md = renderReport(facts());
    assert.ok(md.includes(`- Restored: \`pull-cache-index-linux-amd64-123-1-abc\`, 5 blobs, ${formatBytes(40_003_000)}.`), md);
    assert.ok(md.includes(`- Saved: 4 new entries, ${formatBytes(39_006_900)}, index \`pull-cache-index-linux-amd64-456-1-def\`.`), md);
  });

  test('a first run: nothing restored', () => {
    assert.ok(
      renderReport(facts({ restoredKey: '', restoredBlobs: 0, restoredBytes: 0 })).includes(
        '- Restored: nothing (no cache yet for this key prefix and platform).',
      ),
    );
  });

  test('a damaged restore says what was lost and that it is fetched again', () => {
    const md = renderReport(facts({ missingEntries: 2, damagedBlobs: 1 }));
    assert.match(
      md,
      /- Restored: `pull-cache-index-linux-amd64-123-1-abc`, 5 blobs, [^\n]* \(2 entries gone from the cache; 1 blob failed the digest check and dropped: fetched again on demand\)\./,
    );
  });

  test('what was refused from the cache is named, the first ten of it', () => {
    const refused = Array.from({ length: 12 }, (_, i) => `image ${i + 1} (../x): not a repository name`);
    const md = renderReport(facts({ refused }));
    assert.match(
      md,
      /- Refused from the cache as invalid \(not restored, not served\): 12 items:\n {2}- image 1 \(\.\.\/x\): not a repository name\n/,
    );
    assert.ok(md.includes('  - image 10 (../x)'));
    assert.ok(!md.includes('  - image 11 (../x)'));
    assert.ok(md.includes("  - and 2 more (see the step's warnings)"));
    assert.doesNotMatch(renderReport(facts()), /Refused/);
    const wholeIndex = renderReport(
      facts({ restoredKey: '', restoredBlobs: 0, restoredBytes: 0, refused: ['the cache index is not JSON'] }),
    );
    assert.ok(wholeIndex.includes('- Restored: nothing (the cache index was refused, see below).'));
  });

  test('an index the restore worker got late, after main went on without it: said under what was restored', () => {
    const md = renderReport(facts({ indexLateSeconds: 7 }));
    assert.match(
      md,
      /- Restored: `[^`]+`, .*\n- The cache index came 7 s late: the cache service rate-limited its look-up\. The main step went on at once; pulls before the restore had their images came from the upstream\./,
    );
    assert.doesNotMatch(renderReport(facts()), /came \d+ s late/);
  });

  test('tags the upstream no longer names, and images it could not vouch for, are named as not saved', () => {
    const md = renderReport(facts({ stale: ['library/alpha:1', 'octo/tool:v2'], unverified: ['library/beta:edge'] }));
    assert.ok(md.includes('- Not saved: 2 tags the upstream no longer names this way, moved or deleted (alpha:1, octo/tool:v2).'));
    assert.ok(
      md.includes(
        '- Not saved: 1 image the upstream could not vouch for when the job ended (beta:edge); a tag is saved only once the upstream confirms it.',
      ),
    );
    assert.doesNotMatch(renderReport(facts()), /no longer names|could not vouch/);
  });

  test('damaged blobs alone, one and several', () => {
    assert.ok(renderReport(facts({ damagedBlobs: 1 })).includes(' (1 blob failed the digest check and dropped: fetched again on demand).'));
    assert.ok(
      renderReport(facts({ damagedBlobs: 3 })).includes(' (3 blobs failed the digest check and dropped: fetched again on demand).'),
    );
    assert.ok(renderReport(facts({ missingEntries: 1 })).includes(' (1 entry gone from the cache: fetched again on demand).'));
  });

  const old: Dropped[] = [
    { image: 'library/delta:3', bytes: 3_000_000, reason: 'age' },
    { image: `octo/tool@${digest('tool')}`, bytes: 1_500_000, reason: 'age' },
  ];
  const big: Dropped = { image: 'library/epsilon:1', bytes: 700_000_000, reason: 'size' };

  test('images dropped for age: one line naming them, the max-age and their bytes', () => {
    const md = renderReport(facts({ dropped: old }));
    assert.ok(
      md.includes(
        `- Dropped: 2 images unused for more than 7 days (max-age) (${old[0].image.replace(/^library\//, '')}, ${old[1].image.replace(/^library\//, '')}; ${formatBytes(4_500_000)}).\n`,
      ),
      md,
    );
    assert.ok(!md.includes('max-size'), md);
  });

  test('images dropped for size: one line naming them, the max-size and their bytes', () => {
    const md = renderReport(facts({ dropped: [big], budget: { maxBytes: 500 * 1024 * 1024, maxAgeDays: 7 } }));
    assert.ok(
      md.includes(
        `- Dropped: 1 image that did not fit in ${formatBytes(500 * 1024 * 1024)} (max-size) (epsilon:1; ${formatBytes(700_000_000)}).\n`,
      ),
      md,
    );
    assert.ok(!md.includes('max-age'), md);
  });

  test('both kinds: the age line, then the size line, between what was restored and what was saved', () => {
    const md = renderReport(facts({ dropped: [old[0], big, old[1]], budget: { maxBytes: 1e9, maxAgeDays: 14 } }));
    const lines = md.split('\n');
    const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
    const age = lines.findIndex((l) => l.includes('(max-age)'));
    const size = lines.findIndex((l) => l.includes('(max-size)'));
    assert.ok(at('- Restored:') < age && age < size && size < at('- Saved:'), md);
    assert.match(lines[age], /^- Dropped: 2 images unused for more than 14 days \(max-age\) /);
    assert.match(lines[size], /^- Dropped: 1 image that did not fit in /);
    assert.equal(lines.filter((l) => l.startsWith('- Dropped:')).length, 2);
  });

  test('nothing dropped: no Dropped line', () => {
    assert.ok(!renderReport(facts()).includes('Dropped'));
  });

  test('nothing new to save, save disabled, and deferred blobs', () => {
    assert.ok(
      renderReport(facts({ saved: { entries: 0, bytes: 0, indexKey: '', deferred: 0, stopped: '' } })).includes('- Saved: nothing new.'),
    );
    const off = renderReport(facts({ saved: null, saveDisabled: true }));
    assert.ok(off.includes('- Saved: nothing (`save: false`).'));
    const capped = renderReport(facts({ saved: { entries: 32, bytes: 100, indexKey: 'k', deferred: 7, stopped: '' } }));
    assert.ok(capped.includes('- Not saved this run: 7 blobs (per-run entry cap); the next run saves them.'), capped);
    const refused = renderReport(
      facts({ saved: { entries: 3, bytes: 100, indexKey: '', deferred: 2, stopped: 'the cache service did not take k' } }),
    );
    assert.ok(refused.includes('- Not saved this run: 2 blobs (the cache service did not take k); the next run saves them.'), refused);
  });

  test('pruning: what it freed, or why it deleted nothing, in one line that is not a warning; nothing without a token', () => {
    const freed = renderReport(facts({ pruned: { deleted: 3, bytes: 25 * 1024 * 1024, reason: '' } }));
    assert.ok(freed.includes('- Pruned 3 entries the index no longer names: 25.0 MiB freed.\n'), freed);
    const readOnly = renderReport(
      facts({ pruned: { deleted: 0, bytes: 0, reason: 'pruning needs a github-token with actions: write; nothing deleted' } }),
    );
    assert.ok(readOnly.includes('\n- Pruning needs a github-token with actions: write; nothing deleted.\n'), readOnly);
    assert.doesNotMatch(readOnly, /⚠️.*[Pp]run/);
    const none = renderReport(facts({ pruned: { deleted: 0, bytes: 0, reason: '' } }));
    assert.ok(
      none.includes('- Pruned nothing: every entry of this cache is named by an index of the last 7 days or less than an hour old.'),
      none,
    );
    assert.doesNotMatch(renderReport(facts({ pruned: null })), /[Pp]run/);
    assert.doesNotMatch(renderReport(facts()), /[Pp]run/);
  });

  test('a save that did not run says nothing about saving', () => {
    assert.ok(!renderReport(facts({ saved: null })).includes('Saved'));
  });

  test('problems are listed with a warning sign', () => {
    const md = renderReport(facts({ problems: ['stopping the registry: boom', 'saving the cache: quota'] }));
    assert.ok(md.includes('- ⚠️ stopping the registry: boom\n'));
    assert.ok(md.includes('- ⚠️ saving the cache: quota\n'));
  });

  test('no image pulled, and no usage at all (the log could not be read)', () => {
    const empty = renderReport(facts({ usage: { ...NOTHING, prefetchOnly: NOTHING } }));
    assert.ok(empty.includes('No image was pulled through the cache in this job.'));
    assert.ok(!empty.includes('| Image |'));
    const none = renderReport(facts({ usage: null }));
    assert.ok(!none.includes('| Image |') && !none.includes('No image was pulled'));
    assert.ok(none.includes('- Restored:'));
  });

  test('images withheld from the cache: one line naming them, library/ left out, and how to save them', () => {
    const md = renderReport(facts({ withheld: ['ci-bot/secret:1', 'library/alpha:1', `ci-bot/tool@${digest('tool')}`] }));
    assert.ok(
      md.includes(
        `- Not saved: 3 images anonymous users cannot pull (ci-bot/secret:1, alpha:1, ci-bot/tool@${digest('tool')}), since pull requests from forks can read the cache; \`cache-private: true\` saves them.\n`,
      ),
      md,
    );
    assert.ok(!md.includes('library/alpha'), md);
    const one = renderReport(facts({ withheld: ['ci-bot/secret:1'] }));
    assert.ok(one.includes('- Not saved: 1 image anonymous users cannot pull (ci-bot/secret:1), '), one);
  });

  test('the background restore: when it ended, and the images the job asked for before they were in place', () => {
    const done = renderReport(facts({ background: { images: 5, seconds: 2.4, finished: true, early: [] } }));
    assert.ok(
      done.includes('- Restored in the background: 5 images in 2.4 s after the main step, before the job asked for any of them.\n'),
      done,
    );
    const early = renderReport(
      facts({
        background: {
          images: 5,
          seconds: 2.4,
          finished: true,
          early: [{ image: 'alpha:1', askedAt: 0.3, inPlaceAt: 1.1, restoredShare: 0.25 }],
        },
      }),
    );
    assert.ok(early.includes('- Restored in the background: 5 images in 2.4 s after the main step.\n'), early);
    assert.ok(early.includes('  - alpha:1: asked at 0.3 s, in place at 1.1 s; 25% of the restore was done when asked.\n'), early);
    const cut = renderReport(facts({ background: { images: 5, seconds: null, finished: false, early: [] }, saved: null }));
    assert.ok(
      cut.includes(
        '- ⚠️ The background restore did not finish within cache-timeout: nothing was saved, so the next run restores the cache as it was.\n',
      ),
      cut,
    );
  });

  test('nothing withheld: no Not saved line', () => {
    assert.ok(!renderReport(facts()).includes('- Not saved:'));
  });

  test('the withheld line follows the saved line', () => {
    const lines = renderReport(facts({ withheld: ['ci-bot/secret:1'] })).split('\n');
    const saved = lines.findIndex((l) => l.startsWith('- Saved:'));
    const withheld = lines.findIndex((l) => l.startsWith('- Not saved:'));
    assert.ok(saved >= 0 && withheld === saved + 1, lines.join('\n'));
  });

  test('the pull quota left for the user the cache pulled as, per 6 hours', () => {
    const md = renderReport(facts({ quota: { limit: 200, remaining: 187, window: 21600 }, pullsAs: 'ci-bot' }));
    assert.ok(md.includes('- Docker Hub pull quota: 187 of 200 pulls left for ci-bot (per 6 hours).\n'), md);
  });

  test('the pull quota for anonymous pulls, when the cache pulled without credentials', () => {
    const md = renderReport(facts({ quota: { limit: 100, remaining: 76, window: 21600 }, pullsAs: '' }));
    assert.ok(md.includes('- Docker Hub pull quota: 76 of 100 pulls left for anonymous pulls from this runner (per 6 hours).\n'), md);
  });

  test('a quota without a window says no period', () => {
    const md = renderReport(facts({ quota: { limit: 100, remaining: 0, window: 0 }, pullsAs: 'ci-bot' }));
    assert.ok(md.includes('- Docker Hub pull quota: 0 of 100 pulls left for ci-bot.\n'), md);
    assert.ok(!md.includes('per '), md);
  });

  test('no limit: says so, for the user or for anonymous pulls', () => {
    assert.ok(
      renderReport(facts({ quota: 'unlimited', pullsAs: 'ci-bot' })).includes('- Docker Hub pull quota: no limit applies for ci-bot.\n'),
    );
    assert.ok(
      renderReport(facts({ quota: 'unlimited', pullsAs: '' })).includes(
        '- Docker Hub pull quota: no limit applies for anonymous pulls from this runner.\n',
      ),
    );
  });

  test('another upstream names its host in the quota line', () => {
    const md = renderReport(facts({ upstream: 'https://hub.example', quota: { limit: 10, remaining: 9, window: 21600 } }));
    assert.ok(md.includes('- hub.example pull quota: 9 of 10 pulls left for anonymous pulls from this runner (per 6 hours).'), md);
  });

  test('a quota that could not be read: no quota line', () => {
    assert.ok(!renderReport(facts({ quota: null, pullsAs: 'ci-bot' })).includes('quota'));
  });

  test('prefetch: how many were prefetched, and which the job used', () => {
    const md = renderReport(
      facts({
        prefetch: {
          used: ['alpha:1', 'octo/tool:2'],
          unused: [
            { ref: 'beta:1', ms: 2_345 },
            { ref: 'gamma:2', ms: 800 },
          ],
          failed: [],
        },
      }),
    );
    assert.ok(md.includes('- Prefetched in the background: 4 images; used by the job: alpha:1, octo/tool:2.\n'), md);
    assert.ok(!md.includes('Prefetching'), md);
    const none = renderReport(facts({ prefetch: { used: [], unused: [{ ref: 'beta:1', ms: 12_000 }], failed: [] } }));
    assert.ok(none.includes('- Prefetched in the background: 1 image; used by the job: none.\n'), none);
  });

  test('prefetch: a failed pull is a warning of its own, not counted among the prefetched', () => {
    const md = renderReport(
      facts({
        prefetch: { used: ['alpha:1'], unused: [], failed: [{ ref: 'beta:1', error: 'Error response from daemon: manifest unknown' }] },
      }),
    );
    assert.ok(md.includes('- Prefetched in the background: 1 image; used by the job: alpha:1.\n'), md);
    assert.ok(md.includes('- ⚠️ Prefetching beta:1 failed: Error response from daemon: manifest unknown\n'), md);
  });

  test('nothing prefetched: no prefetch lines', () => {
    assert.ok(!renderReport(facts({ prefetch: null })).includes('refetch'));
  });

  test('dockerd without unpigz: a hint to install pigz; with it, none', () => {
    const md = renderReport(facts({ unpigz: false }));
    assert.ok(md.includes('- dockerd decompresses layers without unpigz: installing `pigz` makes pulls about 20% faster.\n'), md);
    assert.ok(!renderReport(facts({ unpigz: true })).includes('pigz'));
  });

  test('the new lines come before the problems', () => {
    const md = renderReport(
      facts({
        withheld: ['ci-bot/secret:1'],
        quota: { limit: 100, remaining: 76, window: 21600 },
        prefetch: { used: [], unused: [{ ref: 'beta:1', ms: 1000 }], failed: [] },
        unpigz: false,
        problems: ['boom'],
      }),
    );
    const lines = md.split('\n');
    const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
    const order = [
      at('- Saved:'),
      at('- Not saved:'),
      at('- Docker Hub pull quota:'),
      at('- Prefetched in the background:'),
      at('- dockerd decompresses'),
      at('- ⚠️ boom'),
    ];
    assert.ok(
      order.every((n, i) => n >= 0 && (i === 0 || n > order[i - 1])),
      md,
    );
  });

  test('ends with a newline', () => {
    assert.ok(renderReport(facts()).endsWith('\n'));
  });

  test('more than one registry: a row per registry with its mirror, and the image table says "From upstream"', () => {
    const tally = (blobs: number, bytes: number) => ({ blobs, bytes });
    const md = renderReport(
      facts({
        registries: [
          {
            registry: 'docker.io',
            upstream: 'https://registry-1.docker.io',
            mirror: 'http://127.0.0.1:40001',
            offline: false,
            images: 3,
            fromCache: tally(3, 33_002_000),
            fromUpstream: tally(5, 39_003_600),
          },
          {
            registry: 'ghcr.io',
            upstream: 'https://ghcr.io',
            mirror: 'http://127.0.0.1:40002',
            offline: true,
            images: 0,
            fromCache: tally(0, 0),
            fromUpstream: tally(0, 0),
          },
        ],
      }),
    );
    assert.ok(md.includes('| Registry | Mirror | Images | From cache | From upstream |\n| --- | --- | --- | --- | --- |\n'), md);
    assert.ok(
      md.includes(`| docker.io | http://127.0.0.1:40001 | 3 | 3 blobs, ${formatBytes(33_002_000)} | 5 blobs, ${formatBytes(39_003_600)} |`),
      md,
    );
    assert.ok(md.includes('| ghcr.io | http://127.0.0.1:40002 (offline) | 0 | – | – |'), md);
    assert.ok(md.includes('| Image | From cache | From upstream |'), md);
    assert.ok(md.indexOf('| Registry |') < md.indexOf('| Image |'));
  });

  test('one registry other than Docker Hub names it in the image table; no registry table', () => {
    const md = renderReport(
      facts({
        registries: [
          {
            registry: 'ghcr.io',
            upstream: 'https://ghcr.io',
            mirror: 'http://127.0.0.1:40002',
            offline: false,
            images: 0,
            fromCache: { blobs: 0, bytes: 0 },
            fromUpstream: { blobs: 0, bytes: 0 },
          },
        ],
      }),
    );
    assert.ok(md.includes('| Image | From cache | From ghcr.io |'), md);
    assert.ok(!md.includes('| Registry |'));
  });

  test("a registry behind an organisation's mirror: its row, or the image table, names the org tier it came from", () => {
    const none = { blobs: 0, bytes: 0 };
    const ghcr = {
      registry: 'ghcr.io',
      upstream: 'https://nexus.example:8444',
      mirror: 'http://127.0.0.1:40002',
      offline: false,
      images: 1,
      fromCache: none,
      fromUpstream: { blobs: 2, bytes: 2048 },
    };
    const hub = {
      registry: 'docker.io',
      upstream: 'https://registry-1.docker.io',
      mirror: 'http://127.0.0.1:40001',
      offline: false,
      images: 0,
      fromCache: none,
      fromUpstream: none,
    };
    assert.ok(
      renderReport(facts({ registries: [hub, ghcr] })).includes(
        '| ghcr.io via nexus.example:8444 | http://127.0.0.1:40002 | 1 | – | 2 blobs, 2.0 KiB |\n',
      ),
    );
    assert.ok(renderReport(facts({ registries: [hub, ghcr] })).includes('| docker.io | http://127.0.0.1:40001 | 0 |'));
    assert.ok(renderReport(facts({ registries: [ghcr] })).includes('| Image | From cache | From nexus.example:8444 |'));
  });

  test('images dockerd pulled around the cache: how to pull them through it, or which registry to list', () => {
    const md = renderReport(
      facts({
        aroundTheCache: [
          { image: 'ghcr.io/org/app:1', throughMirror: '127.0.0.1:40002/org/app:1' },
          { image: 'quay.io/x/y:2', throughMirror: '' },
        ],
      }),
    );
    assert.ok(
      md.includes(
        "- Not through the cache: dockerd pulled ghcr.io/org/app:1 from its registry directly (dockerd's registry-mirrors cover Docker Hub only); `docker pull 127.0.0.1:40002/org/app:1` comes through the cache, as does a containerd client with hosts-dir.\n",
      ),
      md,
    );
    assert.ok(
      md.includes(
        "- Not through the cache: dockerd pulled quay.io/x/y:2 from its registry directly (dockerd's registry-mirrors cover Docker Hub only); list quay.io in registries to cache it.\n",
      ),
      md,
    );
  });

  test("dockerd's own BuildKit going around the cache: one line saying so, none when it does not", () => {
    const notice = builtInBuildkitNotice('20.10.24+dfsg1', 'http://127.0.0.1:40001')!;
    assert.ok(renderReport(facts({ builtInBuildkit: notice })).includes(`\n- Not through the cache: ${notice}\n`));
    assert.ok(!renderReport(facts()).includes('BuildKit'));
  });
});

describe('aroundTheCache', () => {
  const mirrors = [
    { registry: 'docker.io', url: 'http://127.0.0.1:40001' },
    { registry: 'ghcr.io', url: 'http://127.0.0.1:40002' },
  ];

  test('Docker Hub images (by any spelling) and pulls from a mirror itself went through the cache', () => {
    assert.deepEqual(
      aroundTheCache(['alpine:1', 'someuser/app:2', 'docker.io/library/alpine:1', '127.0.0.1:40002/org/app:1'], mirrors),
      [],
    );
  });

  test('a registry dockerd reads a hosts.toml of ours for (containerd image store) went through its mirror', () => {
    assert.deepEqual(aroundTheCache(['ghcr.io/org/app:1', 'quay.io/x/y:2'], mirrors, ['ghcr.io']), [
      { image: 'quay.io/x/y:2', throughMirror: '' },
    ]);
  });

  test('another registry: through its mirror when it has one', () => {
    assert.deepEqual(aroundTheCache(['ghcr.io/org/app:1', 'localhost:5000/x:1'], mirrors), [
      { image: 'ghcr.io/org/app:1', throughMirror: '127.0.0.1:40002/org/app:1' },
      { image: 'localhost:5000/x:1', throughMirror: '' },
    ]);
  });
});

describe('mergeUsage', () => {
  test('the images of every registry, and the totals added up, the prefetch-only ones apart', () => {
    const x = { key: 'library/x:1', image: 'x:1', fromCache: { blobs: 1, bytes: 10 }, fromUpstream: { blobs: 2, bytes: 20 } };
    const y = { key: 'ghcr.io/o/y:1', image: 'ghcr.io/o/y:1', fromCache: { blobs: 3, bytes: 30 }, fromUpstream: { blobs: 0, bytes: 0 } };
    const z = { key: 'ghcr.io/o/z:1', image: 'ghcr.io/o/z:1', fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 1, bytes: 5 } };
    const a: Usage = { images: [x], fromCache: x.fromCache, fromUpstream: x.fromUpstream, prefetchOnly: NOTHING };
    const b: Usage = {
      images: [y],
      fromCache: y.fromCache,
      fromUpstream: y.fromUpstream,
      prefetchOnly: { images: [z], fromCache: z.fromCache, fromUpstream: z.fromUpstream },
    };
    assert.deepEqual(mergeUsage([a, b]), {
      images: [x, y],
      fromCache: { blobs: 4, bytes: 40 },
      fromUpstream: { blobs: 2, bytes: 20 },
      prefetchOnly: { images: [z], fromCache: { blobs: 0, bytes: 0 }, fromUpstream: { blobs: 1, bytes: 5 } },
    });
  });
});

/**
 * What of a Markdown text is read as markup: the text outside code spans (CommonMark: a span ends at the next run of
 * as many backticks as opened it), with backslash-escaped characters left out.
 */
function markupOf(md: string): string {
  let out = '';
  for (let i = 0; i < md.length;) {
    if (md[i] === '\\' && /[!-/:-@[-`{-~]/.test(md[i + 1] ?? '')) {
      i += 2;
      continue;
    }
    const run = /^`+/.exec(md.slice(i))?.[0];
    if (run) {
      const close = new RegExp(`(?<!\`)${run}(?!\`)`, 'g');
      close.lastIndex = i + run.length;
      const end = close.exec(md);
      out += end ? 'CODE' : run;
      i = end ? end.index + run.length : i + run.length;
      continue;
    }
    out += md[i++];
  }
  return out;
}

describe('renderReport: values from outside', () => {
  // What a cache key, an image name or a message of the cache service or the upstream could hold.
  const HOSTILE =
    'x`](http://evil.example/a) ![i](http://evil.example/p.png) <img src=x onerror=alert(1)> [r]: http://evil.example ' +
    '| ~~s~~ $m$ www.evil.example _e_ *b* &lt; \\` ``\n## Restored everything\n| a | b |';
  const tally = (blobs: number) => ({ blobs, bytes: blobs * 1024 });
  const hostileFacts: ReportFacts = {
    ...reportFacts,
    upstream: `https://${HOSTILE}`,
    registries: [
      ...['docker.io', HOSTILE].map((registry, i) => ({
        registry,
        upstream: `https://${HOSTILE}`,
        mirror: `http://127.0.0.1:4000${i}`,
        offline: false,
        images: 1,
        fromCache: tally(1),
        fromUpstream: tally(0),
      })),
    ],
    usage: {
      images: [{ key: HOSTILE, image: HOSTILE, fromCache: tally(1), fromUpstream: tally(1) }],
      fromCache: tally(1),
      fromUpstream: tally(1),
      prefetchOnly: {
        images: [{ key: HOSTILE, image: HOSTILE, fromCache: tally(0), fromUpstream: tally(1) }],
        fromCache: tally(0),
        fromUpstream: tally(1),
      },
    },
    restoredKey: HOSTILE,
    background: { images: 1, seconds: 1, finished: true, early: [{ image: HOSTILE, askedAt: 0.1, inPlaceAt: 0.5, restoredShare: 0.5 }] },
    refused: [HOSTILE, `${HOSTILE}: it holds an unexpected file`],
    dropped: [{ image: HOSTILE, bytes: 1, reason: 'age' }],
    saved: { entries: 1, bytes: 1, indexKey: HOSTILE, deferred: 1, stopped: HOSTILE },
    withheld: [HOSTILE],
    stale: [HOSTILE],
    unverified: [HOSTILE],
    quota: { limit: 100, remaining: 99, window: 21600 },
    pullsAs: HOSTILE,
    prefetch: { used: [HOSTILE], unused: [{ ref: HOSTILE, ms: 1 }], failed: [{ ref: HOSTILE, error: HOSTILE }] },
    aroundTheCache: [
      { image: HOSTILE, throughMirror: HOSTILE },
      { image: HOSTILE, throughMirror: '' },
    ],
    problems: [HOSTILE],
  };
  const md = renderReport(hostileFacts);
  const lines = md.split('\n');

  test('nothing in them is a link, an image, HTML, a code span of their own, or an autolink', () => {
    // The mirrors' own addresses are the action's, not from outside.
    const markup = markupOf(md).replace(/http:\/\/127\.0\.0\.1:\d+/g, 'MIRROR');
    for (const [what, pattern] of [
      ['a link or an image', /[[\]]/],
      ['HTML or an autolink in angle brackets', /[<>]/],
      ['a backtick', /`/],
      ['an entity', /&/],
      ['math or strikethrough', /[$~]/],
      ['an autolink', /:\/\/|www\./i],
    ] as const)
      assert.doesNotMatch(markup, pattern, `${what} in:\n${md}`);
  });

  test('they start no line of their own, and end no table cell', () => {
    assert.ok(!lines.some((l) => l.startsWith('## Restored everything') || l.startsWith('| a | b |')), md);
    const cells = (l: string) => markupOf(l).split('|').length;
    let header = 0;
    for (const [i, line] of lines.entries()) {
      if (!line.startsWith('|')) continue;
      if (!lines[i - 1].startsWith('|')) header = cells(line);
      assert.equal(cells(line), header, `${line}\nin:\n${md}`);
    }
  });

  test('every line of the report is still there, each showing the value', () => {
    for (const start of [
      '- Restored: ',
      '- Dropped: 1 image',
      '- Saved: 1 new entry',
      '- Not saved this run: 1 blob',
      '- Prefetched in the background: ',
      '- ⚠️ Prefetching ',
      '- Not through the cache: ',
      '  - ',
    ])
      assert.ok(
        lines.some((l) => l.startsWith(start)),
        `${start} in:\n${md}`,
      );
    assert.equal(lines.filter((l) => l.includes('Restored everything')).length, 19, md);
  });
});
