// The local cache service against the real @actions/cache 6: save, restore, immutability, restore-key
// prefixes, version mismatch and eviction.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { restoreCache, saveCache } from '@actions/cache';
import { startCacheService, type CacheService } from '../helpers/cache-service.js';

let root: string;
let service: CacheService;
const savedCwd = process.cwd();
const savedEnv = { ...process.env };

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'cache-service-test-'));
  const workspace = join(root, 'workspace');
  await Promise.all([mkdir(join(root, 'service')), mkdir(workspace), mkdir(join(root, 'runner-temp'))]);
  service = await startCacheService(join(root, 'service'));
  Object.assign(process.env, service.env, { GITHUB_WORKSPACE: workspace, RUNNER_TEMP: join(root, 'runner-temp') });
  delete process.env.ACTIONS_CACHE_MODE;
  delete process.env.GITHUB_SERVER_URL;
  process.chdir(workspace);
});

after(async () => {
  process.chdir(savedCwd);
  for (const name of Object.keys(process.env)) if (!(name in savedEnv)) delete process.env[name];
  Object.assign(process.env, savedEnv);
  await service?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

/** Replaces ./data with one file holding fresh random bytes, and returns them. */
async function writeData(): Promise<Buffer> {
  await rm('data', { recursive: true, force: true });
  await mkdir('data');
  const bytes = randomBytes(64 * 1024);
  await writeFile(join('data', 'blob.bin'), bytes);
  return bytes;
}

test('save then restore round-trips the bytes', async () => {
  const bytes = await writeData();
  const id = await saveCache(['data'], 'roundtrip-1');
  assert.ok(id > 0, `saveCache returned ${id}`);
  const [entry] = service.entries().filter((e) => e.key === 'roundtrip-1');
  assert.equal(entry.finalized, true);
  assert.ok(entry.sizeBytes > 0);

  await rm('data', { recursive: true });
  assert.equal(await restoreCache(['data'], 'roundtrip-1'), 'roundtrip-1');
  assert.deepEqual(await readFile(join('data', 'blob.bin')), bytes);
  assert.equal(service.entries().find((e) => e.key === 'roundtrip-1')?.downloads, 1);
});

test('saving an existing key again returns -1 and creates no second entry', async () => {
  await writeData();
  const before = service.entries().length;
  const creates = service.requests.CreateCacheEntry;
  const id = await saveCache(['data'], 'roundtrip-1'); // resolves, does not throw ReserveCacheError
  assert.equal(id, -1);
  assert.equal(service.entries().length, before);
  assert.equal(service.requests.CreateCacheEntry, creates + 1);
});

test('a restore key prefix picks the newest matching entry', async () => {
  await writeData();
  assert.ok((await saveCache(['data'], 'deps-linux-aaa')) > 0);
  const newest = await writeData();
  assert.ok((await saveCache(['data'], 'deps-linux-bbb')) > 0);

  await rm('data', { recursive: true });
  assert.equal(await restoreCache(['data'], 'deps-linux-zzz', ['deps-linux-']), 'deps-linux-bbb');
  assert.deepEqual(await readFile(join('data', 'blob.bin')), newest);
  // The primary key is also tried as a prefix first.
  assert.equal(await restoreCache(['data'], 'deps-linux-a', ['deps-']), 'deps-linux-aaa');
});

test('restoring with different paths (another version) misses', async () => {
  assert.equal(await restoreCache(['./data'], 'roundtrip-1'), undefined);
  assert.equal(await restoreCache(['data', 'more'], 'roundtrip-1', ['roundtrip-']), undefined);
});

test('a deleted entry misses', async () => {
  assert.equal(await restoreCache(['data'], 'roundtrip-1', [], { lookupOnly: true }), 'roundtrip-1');
  service.deleteEntry('roundtrip-1');
  assert.equal(
    service.entries().some((e) => e.key === 'roundtrip-1'),
    false,
  );
  assert.equal(await restoreCache(['data'], 'roundtrip-1'), undefined);
  assert.equal(await restoreCache(['data'], 'roundtrip-'), undefined);
});

test('the service rejects a wrong token', async () => {
  const res = await fetch(`${service.env.ACTIONS_RESULTS_URL}twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer wrong' },
    body: JSON.stringify({ key: 'roundtrip-1', version: 'x' }),
  });
  assert.equal(res.status, 401);
  assert.equal(((await res.json()) as { code: string }).code, 'unauthenticated');
});
