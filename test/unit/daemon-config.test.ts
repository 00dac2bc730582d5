// daemon.json merging: the user's daemon config is kept whole, the mirror goes first, and a config the
// action cannot read safely is left alone with a message naming the file.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  clearingMirrors,
  digestOf,
  mirrorIsLive,
  namesMirror,
  otherMirrors,
  restoredConfig,
  usesContainerdStore,
  hostsTomlReaders,
  withMirror,
  withoutMirror,
  MIRRORS_KEY,
} from '../../src/daemon-config.js';

const PATH = '/etc/docker/daemon.json';
const MIRROR = 'http://127.0.0.1:41234';

const parsed = (text: string | null) => JSON.parse(text!) as Record<string, unknown>;

describe('withMirror', () => {
  test('keeps every other key and value of the user config', () => {
    const original = {
      'log-driver': 'json-file',
      'log-opts': { 'max-size': '10m', 'max-file': '3' },
      'insecure-registries': ['registry.internal:5000'],
      'cgroup-parent': '/actions_job',
      'max-concurrent-downloads': 10,
      debug: false,
      features: { buildkit: true },
      'default-address-pools': [{ base: '10.10.0.0/16', size: 24 }],
    };
    const merged = parsed(withMirror(JSON.stringify(original), MIRROR, PATH));
    assert.deepEqual(merged, { ...original, [MIRRORS_KEY]: [MIRROR] });
  });

  test('puts our mirror first and keeps the existing ones after it, in order', () => {
    const original = JSON.stringify({ [MIRRORS_KEY]: ['https://mirror.gcr.io', 'https://other.example'] });
    assert.deepEqual(parsed(withMirror(original, MIRROR, PATH))[MIRRORS_KEY], [MIRROR, 'https://mirror.gcr.io', 'https://other.example']);
  });

  test('no duplicate when our mirror is already listed, with or without a trailing slash', () => {
    for (const listed of [MIRROR, `${MIRROR}/`, `${MIRROR}//`]) {
      const original = JSON.stringify({ [MIRRORS_KEY]: ['https://mirror.gcr.io', listed] });
      assert.deepEqual(parsed(withMirror(original, MIRROR, PATH))[MIRRORS_KEY], [MIRROR, 'https://mirror.gcr.io']);
    }
  });

  test('applying it twice gives the same file', () => {
    const once = withMirror('{"debug": true}', MIRROR, PATH);
    assert.equal(withMirror(once, MIRROR, PATH), once);
  });

  test('a mirror on another port is a different mirror and is kept', () => {
    const original = JSON.stringify({ [MIRRORS_KEY]: ['http://127.0.0.1:5000'] });
    assert.deepEqual(parsed(withMirror(original, MIRROR, PATH))[MIRRORS_KEY], [MIRROR, 'http://127.0.0.1:5000']);
  });

  test('creates a config from no file, an empty file, whitespace or {}', () => {
    for (const original of [null, '', '  \n', '{}']) {
      assert.deepEqual(parsed(withMirror(original, MIRROR, PATH)), { [MIRRORS_KEY]: [MIRROR] }, `from ${JSON.stringify(original)}`);
    }
  });

  test('writes readable JSON ending in a newline', () => {
    const text = withMirror(null, MIRROR, PATH);
    assert.ok(text.endsWith('}\n'));
    assert.ok(text.includes('\n  "registry-mirrors"'));
  });

  test('invalid JSON is refused, naming the file, and saying it was left alone', () => {
    for (const original of ['{"debug": true,}', '{debug: true}', '{"a": 1', 'registry-mirrors = []']) {
      assert.throws(
        () => withMirror(original, MIRROR, '/custom/daemon.json'),
        (e: Error) => e.message.startsWith('/custom/daemon.json is not valid JSON') && /left as it is/.test(e.message),
        original,
      );
    }
  });

  test('JSON that is not an object is refused, naming the file', () => {
    for (const original of ['[]', '["http://x"]', '"text"', '42', 'null', 'true']) {
      assert.throws(
        () => withMirror(original, MIRROR, '/custom/daemon.json'),
        /^Error: \/custom\/daemon\.json does not hold a JSON object/,
        original,
      );
    }
  });

  test('a registry-mirrors that is not a list of strings is refused, naming the file and the key', () => {
    for (const mirrors of ['"https://mirror.gcr.io"', '{"a": "b"}', '[1, 2]', '["https://ok.example", 3]', '[["nested"]]']) {
      assert.throws(
        () => withMirror(`{"${MIRRORS_KEY}": ${mirrors}}`, MIRROR, '/custom/daemon.json'),
        (e: Error) =>
          e.message.startsWith('/custom/daemon.json has a "registry-mirrors" that is not a list of URLs') &&
          /left as it is/.test(e.message),
        mirrors,
      );
    }
  });

  test('an empty registry-mirrors list is fine', () => {
    assert.deepEqual(parsed(withMirror(`{"${MIRRORS_KEY}": []}`, MIRROR, PATH))[MIRRORS_KEY], [MIRROR]);
  });

  test("only inserts: the user's formatting, order and spacing are kept around it", () => {
    assert.equal(
      withMirror('{\n\t"debug": true,\n\t"log-level": "warn"\n}\n', MIRROR, PATH),
      `{\n\t"registry-mirrors": ["${MIRROR}"],\n\t"debug": true,\n\t"log-level": "warn"\n}\n`,
    );
    assert.equal(
      withMirror('{"registry-mirrors": [ "https://mirror.gcr.io" ], "debug": true}', MIRROR, PATH),
      `{"registry-mirrors": [ "${MIRROR}", "https://mirror.gcr.io" ], "debug": true}`,
    );
    assert.equal(withMirror('{"debug":true}', MIRROR, PATH), `{"registry-mirrors": ["${MIRROR}"],"debug":true}`);
  });

  test('a registry-mirrors given twice: the one dockerd and JSON.parse read (the last) gets the mirror', () => {
    const merged = withMirror('{"registry-mirrors": ["https://a.example"], "registry-mirrors": ["https://b.example"]}', MIRROR, PATH);
    assert.deepEqual(parsed(merged)[MIRRORS_KEY], [MIRROR, 'https://b.example']);
  });

  test('registry-mirrors: null becomes the list of our mirror', () => {
    assert.deepEqual(parsed(withMirror(`{"${MIRRORS_KEY}": null, "debug": true}`, MIRROR, PATH)), { [MIRRORS_KEY]: [MIRROR], debug: true });
  });
});

describe('withoutMirror: only what the action added leaves', () => {
  test('undoes withMirror exactly, whatever the formatting', () => {
    for (const original of [
      '{"debug": true}\n',
      '{\n\t"debug": true,\n\t"log-level": "warn"\n}',
      '{}',
      '{\n  "registry-mirrors": [\n    "https://mirror.gcr.io"\n  ]\n}\n',
      '{"registry-mirrors": [], "x": 1}',
    ]) {
      const keepEmpty = original.includes('[]');
      assert.equal(withoutMirror(withMirror(original, MIRROR, PATH), MIRROR, PATH, keepEmpty), original, original);
    }
  });

  test("a job step's own edit (another tool's formatting) is kept; only our mirror and the key we added go", () => {
    const edited = `{\n    "registry-mirrors": [\n        "${MIRROR}"\n    ],\n    "debug": true,\n    "insecure-registries": [\n        "registry.internal:5000"\n    ]\n}\n`;
    assert.equal(
      withoutMirror(edited, MIRROR, PATH, false),
      '{\n    "debug": true,\n    "insecure-registries": [\n        "registry.internal:5000"\n    ]\n}\n',
    );
  });

  test('other mirrors stay, in order; a trailing slash or a repeat of ours goes too', () => {
    const current = `{"registry-mirrors": ["https://a.example", "${MIRROR}/", "https://b.example", "${MIRROR}"]}`;
    assert.equal(withoutMirror(current, MIRROR, PATH, false), '{"registry-mirrors": ["https://a.example", "https://b.example"]}');
  });

  test('an emptied list goes with its key unless the file had an empty list before', () => {
    const current = `{"debug": true, "registry-mirrors": ["${MIRROR}"]}`;
    assert.equal(withoutMirror(current, MIRROR, PATH, false), '{"debug": true}');
    assert.equal(withoutMirror(current, MIRROR, PATH, true), '{"debug": true, "registry-mirrors": []}');
  });

  test('a list that did not hold our mirror is left alone, even empty', () => {
    for (const current of [
      '{"registry-mirrors": []}',
      '{"registry-mirrors": ["https://a.example"]}',
      '{"debug": true}',
      '',
      '{"registry-mirrors": null}',
    ]) {
      assert.equal(withoutMirror(current, MIRROR, PATH, false), current);
    }
  });

  test('JSON a job step broke is refused with the outcome given', () => {
    assert.throws(
      () => withoutMirror('{"debug": tru', MIRROR, '/x/daemon.json', false, 'left as it is'),
      /^Error: \/x\/daemon\.json is not valid JSON \(.*\); left as it is$/,
    );
  });
});

describe('restoredConfig: what post leaves in daemon.json', () => {
  const ORIGINAL = '{\n\t"debug": true\n}\n';
  const saved = (original: string | null, written: string) => ({
    original: original === null ? null : Buffer.from(original),
    written: digestOf(written),
    mirror: MIRROR,
  });
  const text = (b: Buffer | null) => b?.toString('utf8') ?? null;

  test('unchanged since main: the original, byte for byte; or no file when there was none', () => {
    const merged = withMirror(ORIGINAL, MIRROR, PATH);
    assert.equal(text(restoredConfig(Buffer.from(merged), saved(ORIGINAL, merged), PATH)), ORIGINAL);
    const created = withMirror(null, MIRROR, PATH);
    assert.equal(restoredConfig(Buffer.from(created), saved(null, created), PATH), null);
    // Even an original post could not parse now is not its business: the bytes go back.
    assert.equal(text(restoredConfig(Buffer.from(merged), saved('  ', merged), PATH)), '  ');
  });

  test('changed since main: the change is kept, our mirror goes', () => {
    const merged = withMirror(ORIGINAL, MIRROR, PATH);
    const edited = merged.replace('"debug": true', '"debug": true,\n\t"insecure-registries": ["registry.internal:5000"]');
    assert.equal(
      text(restoredConfig(Buffer.from(edited), saved(ORIGINAL, merged), PATH)),
      '{\n\t"debug": true,\n\t"insecure-registries": ["registry.internal:5000"]\n}\n',
    );
  });

  test("main stopped before it wrote (or a step took our mirror out itself): the file's own bytes stay", () => {
    const current = Buffer.concat([Buffer.from('{"labels": ["'), Buffer.from([0xff]), Buffer.from('"]}\n')]);
    assert.equal(restoredConfig(current, saved(ORIGINAL, withMirror(ORIGINAL, MIRROR, PATH)), PATH), current);
  });

  test('removed during the job: stays removed', () => {
    assert.equal(restoredConfig(null, saved(ORIGINAL, withMirror(ORIGINAL, MIRROR, PATH)), PATH), null);
  });

  test('changed into something that is not JSON: refused, saying the mirror may still be named', () => {
    assert.throws(
      () => restoredConfig(Buffer.from('{"debug": '), saved(ORIGINAL, withMirror(ORIGINAL, MIRROR, PATH)), '/x/daemon.json'),
      /\/x\/daemon\.json is not valid JSON .*changed during the job and left as it is.*http:\/\/127\.0\.0\.1:41234/,
    );
  });

  test('two jobs on one daemon.json, posts in either order: the original comes back byte for byte', () => {
    const A = 'http://127.0.0.1:41001';
    const B = 'http://127.0.0.1:41002';
    const byA = withMirror(ORIGINAL, A, PATH);
    const byB = withMirror(byA, B, PATH);
    const jobA = { original: Buffer.from(ORIGINAL), written: digestOf(byA), mirror: A };
    const jobB = { original: Buffer.from(byA), written: digestOf(byB), mirror: B };
    const afterA = restoredConfig(Buffer.from(byB), jobA, PATH)!;
    assert.deepEqual(parsed(text(afterA))[MIRRORS_KEY], [B], 'B keeps its mirror while its job goes on');
    assert.equal(text(restoredConfig(afterA, jobB, PATH)), ORIGINAL);
    const afterB = restoredConfig(Buffer.from(byB), jobB, PATH)!;
    assert.equal(text(afterB), byA, 'A keeps its mirror while its job goes on');
    assert.equal(text(restoredConfig(afterB, jobA, PATH)), ORIGINAL);
  });
});

describe('clearingMirrors', () => {
  test('null when the original names registry-mirrors: putting it back is enough', () => {
    assert.equal(clearingMirrors(JSON.stringify({ [MIRRORS_KEY]: ['https://mirror.gcr.io'] }), PATH), null);
    assert.equal(clearingMirrors(JSON.stringify({ [MIRRORS_KEY]: [] }), PATH), null);
  });

  test('the original with registry-mirrors: [] when it does not name them', () => {
    const original = { debug: true, 'log-opts': { 'max-size': '10m' } };
    assert.deepEqual(parsed(clearingMirrors(JSON.stringify(original), PATH)), { ...original, [MIRRORS_KEY]: [] });
  });

  test('[] config when there is to be no file or an empty one', () => {
    for (const original of [null, '', '{}']) assert.deepEqual(parsed(clearingMirrors(original, PATH)), { [MIRRORS_KEY]: [] });
  });

  test('refuses a broken original like withMirror does', () => {
    assert.throws(() => clearingMirrors('{oops', '/x/daemon.json'), /\/x\/daemon\.json is not valid JSON/);
  });
});

describe('mirrorIsLive', () => {
  test('matches docker info, which lists mirrors with a trailing slash', () => {
    assert.equal(mirrorIsLive([`${MIRROR}/`], MIRROR), true);
    assert.equal(mirrorIsLive(['https://mirror.gcr.io/', `${MIRROR}/`], MIRROR), true);
    assert.equal(mirrorIsLive([MIRROR], MIRROR), true);
  });

  test('false when absent, empty, or another port', () => {
    assert.equal(mirrorIsLive([], MIRROR), false);
    assert.equal(mirrorIsLive(['https://mirror.gcr.io/'], MIRROR), false);
    assert.equal(mirrorIsLive(['http://127.0.0.1:4123/'], MIRROR), false);
    assert.equal(mirrorIsLive(['http://127.0.0.1:412345/'], MIRROR), false);
  });
});

describe("otherMirrors: the config's mirrors that may be another job's", () => {
  test("the plain-HTTP ones besides this job's, without a trailing slash; an https one is the user's", () => {
    const config = JSON.stringify({
      [MIRRORS_KEY]: [MIRROR, 'http://172.17.0.1:40001/', 'https://mirror.gcr.io', 'http://127.0.0.1:40002', `${MIRROR}/`],
    });
    assert.deepEqual(otherMirrors(config, MIRROR), ['http://172.17.0.1:40001', 'http://127.0.0.1:40002']);
  });

  test('none in no file, a config without mirrors, or one that is not a config', () => {
    assert.deepEqual(otherMirrors(null, MIRROR), []);
    assert.deepEqual(otherMirrors('{"debug": true}', MIRROR), []);
    assert.deepEqual(otherMirrors('{"registry-mirrors": [', MIRROR), []);
    assert.deepEqual(otherMirrors('{"registry-mirrors": [1, 2]}', MIRROR), []);
  });

  test('a long list: only the first 16 are asked about', () => {
    const listed = Array.from({ length: 40 }, (_, i) => `http://127.0.0.1:${40000 + i}`);
    assert.deepEqual(otherMirrors(JSON.stringify({ [MIRRORS_KEY]: listed }), MIRROR), listed.slice(0, 16));
  });
});

describe('namesMirror: whether post left the mirror in the file', () => {
  test('listed, with or without a trailing slash; not listed; a key elsewhere does not count', () => {
    assert.equal(namesMirror(JSON.stringify({ [MIRRORS_KEY]: [`${MIRROR}/`] }), MIRROR), true);
    assert.equal(namesMirror(JSON.stringify({ [MIRRORS_KEY]: ['http://127.0.0.1:1'] }), MIRROR), false);
    assert.equal(namesMirror(JSON.stringify({ 'insecure-registries': [MIRROR] }), MIRROR), false);
    assert.equal(namesMirror('', MIRROR), false);
  });

  test('text that is not a config: searched for the URL', () => {
    assert.equal(namesMirror(`{"registry-mirrors": ["${MIRROR}"`, MIRROR), true);
    assert.equal(namesMirror('{"registry-mirrors": [', MIRROR), false);
  });
});

describe('usesContainerdStore (docker info DriverStatus)', () => {
  test('the containerd image store names its snapshotter as driver-type', () => {
    assert.equal(usesContainerdStore([['driver-type', 'io.containerd.snapshotter.v1']]), true);
  });

  test('the classic store (overlay2, vfs) or no answer is not', () => {
    assert.equal(
      usesContainerdStore([
        ['Backing Filesystem', 'extfs'],
        ['Supports d_type', 'true'],
      ]),
      false,
    );
    assert.equal(usesContainerdStore(null), false);
    assert.equal(usesContainerdStore([]), false);
  });
});

describe('hostsTomlReaders (docker info DriverStatus and ServerVersion)', () => {
  const classic = [['Backing Filesystem', 'extfs']];
  const containerd = [['driver-type', 'io.containerd.snapshotter.v1']];
  test('from Docker Engine 28 the built-in BuildKit reads them whatever the store; the pulls only on the containerd store', () => {
    assert.deepEqual(hostsTomlReaders(classic, '28.0.4'), { pulls: false, buildkit: true });
    assert.deepEqual(hostsTomlReaders(containerd, '29.8.1-dev'), { pulls: true, buildkit: true });
    assert.deepEqual(hostsTomlReaders(classic, '29.1.5'), { pulls: false, buildkit: true });
  });
  test('before 28: the containerd store pulls alone; nothing on the classic store, or for a version not read', () => {
    assert.deepEqual(hostsTomlReaders(classic, '20.10.24+dfsg1'), { pulls: false, buildkit: false });
    assert.deepEqual(hostsTomlReaders(classic, '27.5.1'), { pulls: false, buildkit: false });
    assert.deepEqual(hostsTomlReaders(containerd, '27.5.1'), { pulls: true, buildkit: false });
    assert.deepEqual(hostsTomlReaders(classic, ''), { pulls: false, buildkit: false });
  });
});
