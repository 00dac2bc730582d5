// The action's work directory: one per use of the action under RUNNER_TEMP, private to the runner user, with a
// file of its own for each registry's proxy, and the baseline main leaves for post. Real files in a temp dir.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NOTHING_RESTORED } from '../../src/persistence.js';
import { createWorkDir, readBaseline, workDir, writeBaseline, WORK_DIR_PREFIX, type Baseline } from '../../src/work-dir.js';
import { sha256 } from '../helpers/images.js';

describe('workDir', () => {
  const dir = workDir('/runner/temp/pull-cache-action-x');

  test("Docker Hub's proxy has the plain names; another registry's carry its host, a port's colon made a file name", () => {
    assert.deepEqual(dir.registry('docker.io'), {
      config: '/runner/temp/pull-cache-action-x/registry.yml',
      accessLog: '/runner/temp/pull-cache-action-x/access.log',
      log: '/runner/temp/pull-cache-action-x/registry.log',
    });
    assert.deepEqual(dir.registry('localhost:5000'), {
      config: '/runner/temp/pull-cache-action-x/registry-localhost_5000.yml',
      accessLog: '/runner/temp/pull-cache-action-x/access-localhost_5000.log',
      log: '/runner/temp/pull-cache-action-x/registry-localhost_5000.log',
    });
  });

  test('every file lies directly in the work directory, and no two registries share one', () => {
    const hosts = ['docker.io', 'ghcr.io', 'quay.io', 'registry.k8s.io', 'localhost:5000', 'nexus.example:8444'];
    const files = [dir.storage, dir.before, ...Object.values(dir.clients), ...hosts.flatMap((h) => Object.values(dir.registry(h)))];
    assert.equal(new Set(files).size, files.length);
    for (const file of files) assert.equal(dirname(file), dir.root, file);
  });
});

describe('createWorkDir and the baseline', () => {
  let runnerTemp: string;
  const saved = process.env.RUNNER_TEMP;
  before(async () => {
    runnerTemp = await mkdtemp(join(tmpdir(), 'runner-temp-'));
    process.env.RUNNER_TEMP = runnerTemp;
  });
  after(async () => {
    if (saved === undefined) delete process.env.RUNNER_TEMP;
    else process.env.RUNNER_TEMP = saved;
    await rm(runnerTemp, { recursive: true, force: true });
  });

  test('a new directory under RUNNER_TEMP for each use, mode 0700, with its storage directory made', async () => {
    const first = await createWorkDir();
    const second = await createWorkDir();
    assert.notEqual(first.root, second.root);
    for (const dir of [first, second]) {
      assert.equal(dirname(dir.root), runnerTemp);
      assert.ok(basename(dir.root).startsWith(WORK_DIR_PREFIX), dir.root);
      assert.equal((await stat(dir.root)).mode & 0o777, 0o700);
      assert.ok((await stat(dir.storage)).isDirectory());
    }
    assert.equal((await readdir(runnerTemp)).length, 2);
  });

  test('post reads back the baseline main wrote', async () => {
    const dir = await createWorkDir();
    const baseline: Baseline = {
      started: Date.parse('2026-12-02T10:00:00Z'),
      restored: { ...NOTHING_RESTORED, restoredKey: 'pull-cache-index-x64-1', missingEntries: 1 },
      storage: {
        blobs: { [sha256('layer')]: 5 },
        repositories: {
          'library/alpine': { tags: { '3': sha256('manifest') }, manifests: [sha256('manifest')], layers: [sha256('layer')] },
        },
      },
    };
    await writeBaseline(dir, baseline);
    assert.deepEqual(await readBaseline(dir), baseline);
  });
});
