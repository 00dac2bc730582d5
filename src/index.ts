// One bundle for both steps: action.yml runs it as main and as post; the state main leaves tells them apart.
// Main also starts it again, detached, as the restore worker, the mirrors' front and the prefetch worker (told by
// their arguments: they get no STATE_*).
import { restorePlanFile, runRestore } from './background-restore.js';
import { gatePlanFile, runGate } from './gate.js';
import { failOrWarn } from './log.js';
import { main } from './main.js';
import { post } from './post.js';
import { prefetchPlanFile, runPrefetch } from './prefetch.js';
import { state } from './state.js';

/**
 * Main and post turn what they expect to go wrong into warnings; this catches the rest, thrown or left
 * unhandled (a library's stray socket error, say), so the job goes on unless fail-on-error is set.
 */
async function failOpen(step: string, run: () => Promise<void>): Promise<void> {
  const fail = (e: unknown) => failOrWarn(`the ${step} step failed unexpectedly: ${e instanceof Error ? e.message : String(e)}`);
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  try {
    await run();
  } catch (e) {
    fail(e);
  }
}

const planFile = prefetchPlanFile(process.argv);
const restorePlan = restorePlanFile(process.argv);
const gatePlan = gatePlanFile(process.argv);
// The workers run detached and a failure ends them: the step that started them reads what they wrote.
if (planFile) await runPrefetch(planFile);
else if (restorePlan) await runRestore(restorePlan);
else if (gatePlan) await runGate(gatePlan);
else if (state.isPost) await failOpen('post', post);
else await failOpen('main', main);
// A cache operation cut off by cache-timeout may still hold a socket open: the step is done, so end it.
process.exit();
