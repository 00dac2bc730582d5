// Self-test on a hosted runner, run as a step after the job's pulls in the warm job: every blob a mirror served
// so far must have been in the storage restored from the cache (what the post step reports as hits). Each
// registry's mirror logs to its own access log (access.log for docker.io, access-HOST.log for the others) and
// names repositories as that registry does; the storage names them as docker does (HOST/NAME).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// The action's work directory (RUNNER_TEMP/pull-cache-action-RANDOM): this job uses it once.
const workDirs = readdirSync(process.env.RUNNER_TEMP).filter((name) => name.startsWith('pull-cache-action-'));
if (workDirs.length !== 1) throw new Error(`expected one work directory of the action in RUNNER_TEMP, found ${workDirs.length}`);
const dir = join(process.env.RUNNER_TEMP, workDirs[0]);
const baseline = JSON.parse(readFileSync(join(dir, 'before.json'), 'utf8'));
const served = readdirSync(dir)
  .filter((file) => /^access(-.+)?\.log$/.test(file))
  .flatMap((file) => {
    const host = /^access-(.+)\.log$/.exec(file)?.[1].replace(/_/g, ':');
    return [...readFileSync(join(dir, file), 'utf8').matchAll(/"GET \/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/1\.1" 200 /g)].map(([, name, digest]) => [host ? `${host}/${name}` : name, digest]);
  });
if (served.length === 0) throw new Error('the mirrors served no blob: did the pulls go through them?');
const misses = served.filter(([repository, digest]) => !(digest in baseline.storage.blobs) || !baseline.storage.repositories[repository]?.layers.includes(digest));
console.log(`${served.length - misses.length} of ${served.length} blobs served from the restored cache`);
if (misses.length) throw new Error(`served from upstream, not from the cache: ${misses.map(([r, d]) => `${r}@${d}`).join(', ')}`);
