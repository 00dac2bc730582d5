// One bundle for both steps: action.yml runs it as main and as post; the state main leaves tells them apart.
import { main } from './main.js';
import { post } from './post.js';
import { state } from './state.js';

await (state.isPost ? post() : main());
