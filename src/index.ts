// One bundle for both steps: action.yml runs it as main and as post; the state main leaves tells them apart.
import { main } from './main.js';
import { post } from './post.js';
import { state } from './state.js';

await (state.isPost ? post() : main());
// A cache operation cut off by cache-timeout may still hold a socket open: the step is done, so end it.
process.exit();
