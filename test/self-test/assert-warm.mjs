// Self-test on a hosted runner, run as a step after the job's pulls in the warm job: the cold job's save was
// restored (RESTORED_KEY, the action's restored-key output, under the CACHE_KEY prefix), and every blob a mirror
// served so far was in the storage restored from the cache, before the job or by the background restore (what the
// post step reports as hits). Each registry's
// mirror logs to its own access log (access.log for docker.io, access-HOST.log for the others) and names
// repositories as that registry does; the storage names them as docker does (HOST/NAME). A failure is an
// ::error:: annotation that says what is missing.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const fail = (message) => {
  console.log(`::error::${message}`);
  process.exit(1);
};

const { RESTORED_KEY, CACHE_KEY, RUNNER_TEMP } = process.env;
if (!RESTORED_KEY)
  fail(
    `no cache index was restored under the prefix ${CACHE_KEY}: the cold job saved none (see its post step's report), or the entry is gone`,
  );
console.log(`restored ${RESTORED_KEY}`);
// The action's work directory (RUNNER_TEMP/pull-cache-action-RANDOM): this job uses it once.
const workDirs = readdirSync(RUNNER_TEMP).filter((name) => name.startsWith('pull-cache-action-'));
if (workDirs.length !== 1) fail(`expected one work directory of the action in RUNNER_TEMP, found ${workDirs.length}`);
const dir = join(RUNNER_TEMP, workDirs[0]);
const baseline = JSON.parse(readFileSync(join(dir, 'before.json'), 'utf8'));
const served = readdirSync(dir)
  .filter((file) => /^access(-.+)?\.log$/.test(file))
  .flatMap((file) => {
    const host = /^access-(.+)\.log$/.exec(file)?.[1].replace(/_/g, ':');
    return [
      ...readFileSync(join(dir, file), 'utf8').matchAll(/"GET \/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})(?:\?[^ "]*)? HTTP\/1\.1" 200 /g),
    ].map(([, name, digest]) => [host ? `${host}/${name}` : name, digest]);
  });
if (served.length === 0) fail('the mirrors served no blob: did the pulls go through them?');
// What the background restore linked since (restore-progress.jsonl: one line per image linked, with its blobs); the
// mirrors' front held a pull of an image until then.
const progress = (() => {
  try {
    return readFileSync(join(dir, 'restore-progress.jsonl'), 'utf8');
  } catch {
    return ''; // nothing to restore in the background
  }
})();
const restored = new Set(
  progress
    .split('\n')
    .filter((line) => line.startsWith('{"image"'))
    .flatMap((line) => {
      const image = JSON.parse(line);
      return image.linked.map((digest) => `${image.repository}@${digest}`);
    }),
);
const misses = served.filter(
  ([repository, digest]) =>
    !restored.has(`${repository}@${digest}`) &&
    (!(digest in baseline.storage.blobs) || !baseline.storage.repositories[repository]?.layers.includes(digest)),
);
console.log(`${served.length - misses.length} of ${served.length} blobs served from the restored cache`);
if (misses.length) fail(`served from upstream, not from the cache: ${misses.map(([r, d]) => `${r}@${d}`).join(', ')}`);
