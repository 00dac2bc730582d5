// One bundle for both steps: action.yml runs it as main and as post; the state main leaves tells them apart.
// Main also starts it again, detached, as the prefetch worker.
import { main } from './main.js';
import { post } from './post.js';
import { PREFETCH_ENV, runPrefetch, type PrefetchPlan } from './prefetch.js';
import { state } from './state.js';

const prefetch = process.env[PREFETCH_ENV];
await (prefetch ? runPrefetch(JSON.parse(prefetch) as PrefetchPlan) : state.isPost ? post() : main());
// A cache operation cut off by cache-timeout may still hold a socket open: the step is done, so end it.
process.exit();
