// Self-test on a hosted runner, run as a step after the job's pulls in the warm job: every blob the mirror
// served so far must have been in the storage restored from the cache (what the post step reports as hits).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = join(process.env.RUNNER_TEMP, 'pull-cache-action');
const baseline = JSON.parse(readFileSync(join(dir, 'before.json'), 'utf8'));
const served = [...readFileSync(join(dir, 'access.log'), 'utf8').matchAll(/"GET \/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/1\.1" 200 /g)];
if (served.length === 0) throw new Error('the mirror served no blob: did the pulls go through it?');
const misses = served.filter(([, repository, digest]) => !(digest in baseline.storage.blobs) || !baseline.storage.repositories[repository]?.layers.includes(digest));
console.log(`${served.length - misses.length} of ${served.length} blobs served from the restored cache`);
if (misses.length) throw new Error(`served from Docker Hub, not from the cache: ${misses.map(([, r, d]) => `${r}@${d}`).join(', ')}`);
