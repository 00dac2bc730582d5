// One bundle for both steps: action.yml runs it as main and as post; the state main leaves tells them apart.
// Main also starts it again, detached, as the restore worker, the mirrors' front and the prefetch worker, and post as the save worker (told by their
// arguments: they get no STATE_*).
import { restorePlanFile, runRestore } from './background-restore.js';
import { gatePlanFile, runGate } from './gate.js';
import { main } from './main.js';
import { runSave, saveRequestFile } from './persistence.js';
import { post } from './post.js';
import { prefetchPlanFile, runPrefetch } from './prefetch.js';
import { state } from './state.js';

const planFile = prefetchPlanFile(process.argv);
const restorePlan = restorePlanFile(process.argv);
const gatePlan = gatePlanFile(process.argv);
const saveRequest = saveRequestFile(process.argv);
await (planFile ? runPrefetch(planFile) : restorePlan ? runRestore(restorePlan) : gatePlan ? runGate(gatePlan) : saveRequest ? runSave(saveRequest) : state.isPost ? post() : main());
// A cache operation cut off by cache-timeout may still hold a socket open: the step is done, so end it.
process.exit();
