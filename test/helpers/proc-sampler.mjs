// Samples every process's /proc/PID/environ and cmdline every few milliseconds, looking for secrets, until it gets
// SIGTERM or its time runs out; then prints what it found as JSON on stdout. It runs as its own process so that
// its loop is not slowed by the test's, and takes its secrets on stdin (never in its own environment or arguments).
// The processes allowed to hold them are the step itself (`node <step>` with no other argument: the action's
// workers have theirs), the test's wrap that execs into it (unshare, bash, nsenter) and the wrap's `mount` commands,
// run before the action starts. The action's workers and every command they or the step run are not.
import { readdirSync, readFileSync } from 'node:fs';

const { secrets, step, intervalMs, maxMs } = JSON.parse(readFileSync(0, 'utf8'));
const found = new Map();
let rounds = 0;
const read = (pid, file) => {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'latin1');
  } catch {
    return ''; // gone meanwhile
  }
};
/** The arguments of the program the process runs now, waiting out an exec in progress (a bounded re-read). */
const programAfter = (pid, before) => {
  for (let i = 0; i < 1000; i++) {
    const argv = read(pid, 'cmdline').split('\0').filter(Boolean);
    if (argv.length > 0) return argv;
  }
  return before.split('\0').filter(Boolean); // gone meanwhile: judged by what was read before
};
/** The step itself (`node <step>`, nothing more), the wrap that execs into it, and the wrap's own mounts. */
const isStep = (argv) =>
  (argv.length === 2 && argv[0] === process.execPath && argv[1] === step) ||
  (['unshare', '/bin/bash', 'nsenter'].includes(argv[0]) && argv.at(-1) === step && argv.at(-2) === process.execPath) ||
  (argv[0] === 'mount' && argv[1] === '--bind');
const round = () => {
  rounds++;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = read(pid, 'cmdline');
    for (const [where, text] of [
      ['environ', read(pid, 'environ')],
      ['cmdline', cmdline],
    ]) {
      if (!secrets.some((s) => text.includes(s))) continue;
      // A fork of the step not yet exec'd shows the step's arguments and environment. A process caught inside
      // execve shows no arguments (its new memory has none yet) and, a moment later, the environment of the
      // program it became: the wrap exec'ing into the step does. So it is judged by what it runs after the read.
      const argv = cmdline.split('\0').filter(Boolean);
      if (isStep(argv) || (where === 'environ' && argv.length === 0 && isStep(programAfter(pid, cmdline)))) continue;
      found.set(`${pid} ${where}`, `${pid} ${where}: ${(argv.length ? argv : programAfter(pid, cmdline)).join(' ').slice(0, 160)}`);
    }
  }
};
const started = Date.now();
const finish = () => {
  process.stdout.write(JSON.stringify({ rounds, found: [...found.values()] }));
  process.exit(0);
};
process.on('SIGTERM', finish);
const loop = () => {
  round();
  if (Date.now() - started > maxMs) finish();
  else setTimeout(loop, intervalMs);
};
process.stdout.write('sampling\n');
loop();
