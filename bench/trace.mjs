// A timeline of a Node process, for the bench's where-the-time-goes breakdown: loaded with
// NODE_OPTIONS="--import /path/bench/trace.mjs" and BENCH_TRACE_FILE=FILE (the action's steps), or called with
// installTrace(FILE) in the bench's own process; with BENCH_CPU_PROFILE_DIR=DIR it also writes a V8 CPU profile of the
// process there. It appends one line per event to FILE, "MS PID EVENT ...":
//   start | end | out LINE (each stdout line) | spawn CHILDPID COMMAND ARGS-JSON | exit CHILDPID CODE
//   | req ID METHOD HOST PATH | res ID STATUS CONTENT-LENGTH | done ID (node:http requests and fetch calls; for
//   fetch, done comes with the response headers)
// It changes nothing the process does: stdout is still written, children and requests are only observed.
import { appendFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { createRequire, syncBuiltinESMExports } from 'node:module';

const require = createRequire(import.meta.url);
let installed = '';

/** Starts recording this process's events to `file` (once per process). */
export function installTrace(file) {
  if (installed) return;
  installed = file;
  const log = (event) => {
    try {
      appendFileSync(file, `${Date.now()} ${process.pid} ${event.replace(/\n/g, ' ')}\n`);
    } catch {
      // tracing must never break the traced process
    }
  };
  log('start');
  process.on('exit', () => log('end'));

  let pending = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk, ...rest) => {
    pending += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    for (let i = pending.indexOf('\n'); i !== -1; i = pending.indexOf('\n')) {
      // Debug lines (hidden by the runner) are many and say nothing the other events do not.
      if (!pending.startsWith('::debug::')) log(`out ${pending.slice(0, i)}`);
      pending = pending.slice(i + 1);
    }
    return write(chunk, ...rest);
  };

  const cp = require('node:child_process');
  // execFile calls the module's own spawn, not the export: both are wrapped.
  for (const name of ['spawn', 'execFile']) {
    const original = cp[name];
    cp[name] = function traced(...args) {
      const child = original.apply(this, args);
      const argv = Array.isArray(args[1]) ? args[1] : [];
      log(`spawn ${child.pid ?? '-'} ${args[0]} ${JSON.stringify(argv)}`);
      child.once('exit', (code, signal) => log(`exit ${child.pid ?? '-'} ${code ?? signal}`));
      return child;
    };
  }

  let nextId = 1;
  for (const name of ['node:http', 'node:https']) {
    const mod = require(name);
    const request = mod.request;
    mod.request = function tracedRequest(...args) {
      const req = request.apply(this, args);
      const id = nextId++;
      try {
        const path = String(req.path ?? '').split('?')[0];
        log(`req ${id} ${req.method} ${req.getHeader('host') ?? req.host} ${path}`);
        req.once('response', (res) => {
          log(`res ${id} ${res.statusCode} ${res.headers['content-length'] ?? '-'}`);
          res.once('end', () => log(`done ${id}`));
        });
      } catch {
        // observe only
      }
      return req;
    };
  }
  syncBuiltinESMExports();

  // fetch (undici) does not go through node:http.
  const fetch = globalThis.fetch;
  if (fetch) {
    globalThis.fetch = async function tracedFetch(input, init) {
      const id = nextId++;
      try {
        const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
        log(
          `req ${id} ${init?.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET')} ${url.host} ${url.pathname}`,
        );
      } catch {
        // observe only
      }
      try {
        const res = await fetch.call(this, input, init);
        log(`res ${id} ${res.status} ${res.headers.get('content-length') ?? '-'}`);
        return res;
      } finally {
        log(`done ${id}`);
      }
    };
  }
}

/** Records a V8 CPU profile of this process into dir (NODE_OPTIONS may not carry --cpu-prof). */
export function installProfile(dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  // The in-thread session answers synchronously, so this works from 'exit', after process.exit().
  process.on('exit', () =>
    session.post('Profiler.stop', (error, result) => {
      if (!error) writeFileSync(join(dir, `${Date.now()}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    }),
  );
}

if (process.env.BENCH_TRACE_FILE) installTrace(process.env.BENCH_TRACE_FILE);
if (process.env.BENCH_CPU_PROFILE_DIR) installProfile(process.env.BENCH_CPU_PROFILE_DIR);
