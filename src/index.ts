// One bundle for both steps: action.yml runs it as main and as post; the state main leaves tells them apart.
// Main also starts it again, detached, as the prefetch worker (told by its arguments: it gets no STATE_*).
import { main } from './main.js';
import { post } from './post.js';
import { prefetchPlanFile, runPrefetch } from './prefetch.js';
import { state } from './state.js';

const planFile = prefetchPlanFile(process.argv);
await (planFile ? runPrefetch(planFile) : state.isPost ? post() : main());
// A cache operation cut off by cache-timeout may still hold a socket open: the step is done, so end it.
process.exit();
