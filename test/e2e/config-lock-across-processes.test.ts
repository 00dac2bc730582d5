// The lock that serialises the edits of one daemon.json by jobs of several runners on one host: sections never
// overlap, in one process or across processes; a holder that never lets go makes the wait end with an error naming
// the lock file; a step killed while holding it leaves it free; another user can neither hold it nor stand in its way
// by locking the config's directory (which the lock was before, and which anyone who may read it can lock).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { withConfigLock } from '../../src/config-lock.js';
import { run, waitFor } from '../helpers/process.js';
import { NOBODY } from '../helpers/rootless.js';

/** The lock file of the action's own beside the config. */
const LOCK_FILE = '.pull-cache-action.lock';
/** Runs a command as nobody. */
const asNobody = (command: string, ...args: string[]) => [
  '--reuid',
  String(NOBODY),
  '--regid',
  String(NOBODY),
  '--clear-groups',
  command,
  ...args,
];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('withConfigLock', { timeout: 60_000 }, () => {
  let dir: string;
  let config: string;
  let lockFile: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-lock-'));
    await chmod(dir, 0o755); // as /etc/docker: any user may read it
    config = join(dir, 'daemon.json');
    lockFile = join(dir, LOCK_FILE);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('two sections at once run one after the other', async () => {
    const events: string[] = [];
    const section = (name: string) =>
      withConfigLock(config, async () => {
        events.push(`${name} in`);
        await sleep(300);
        events.push(`${name} out`);
      });
    await Promise.all([section('A'), section('B')]);
    assert.match(events.join(', '), /^(A in, A out, B in, B out|B in, B out, A in, A out)$/);
  });

  test('a lock held by another process is waited for; one never let go ends the wait with an error naming the lock file', async () => {
    // A process group of its own: flock and the sleep that inherits its lock end together, by the group's id.
    const holder = spawn('flock', ['--exclusive', lockFile, 'sleep', '30'], { stdio: 'ignore', detached: true });
    const kill = () => {
      try {
        process.kill(-holder.pid!, 'SIGKILL');
      } catch {
        // ended already
      }
    };
    try {
      await sleep(200); // flock has the lock before it execs sleep
      await assert.rejects(
        withConfigLock(config, async () => 'ran', 1),
        new RegExp(`could not take the lock ${lockFile}: another job held it for more than 1 s`),
      );
      const waiting = withConfigLock(config, async () => Date.now());
      await sleep(500);
      const released = Date.now();
      kill();
      assert.ok((await waiting) >= released, 'ran only once the other process let go');
    } finally {
      kill();
    }
  });

  test('a step killed while it holds the lock leaves it free', async () => {
    const marker = join(dir, 'locked');
    const script = `import { withConfigLock } from ${JSON.stringify(new URL('../../src/config-lock.ts', import.meta.url).pathname)};
import { writeFileSync } from 'node:fs';
await withConfigLock(${JSON.stringify(config)}, () => { writeFileSync(${JSON.stringify(marker)}, ''); return new Promise(() => {}); });`;
    const scriptFile = join(dir, 'holder.mts');
    await writeFile(scriptFile, script);
    const step = spawn(process.execPath, ['--import', 'tsx', scriptFile], { stdio: 'ignore' });
    await waitFor('the step to hold the lock', async () => existsSync(marker), 20_000, 50);
    step.kill('SIGKILL');
    assert.equal(await withConfigLock(config, async () => 'ran', 10), 'ran');
  });

  test("another user cannot keep it: a lock on the config's directory holds nothing up, and the lock file is root's alone", async () => {
    // nobody locks the directory, as anyone who may read /etc/docker can: with the lock there, each edit of
    // daemon.json waited for nobody's leave, and post gave up after a minute with the mirror left in the file.
    const holder = spawn('setpriv', asNobody('flock', '--exclusive', dir, 'sleep', '60'), { stdio: 'ignore', detached: true });
    const kill = () => {
      try {
        process.kill(-holder.pid!, 'SIGKILL');
      } catch {
        // ended already
      }
    };
    try {
      await waitFor('nobody to hold the directory', async () => (await run('flock', ['--nonblock', dir, 'true'])).code === 1, 10_000, 50);
      const started = Date.now();
      assert.equal(await withConfigLock(config, async () => 'ran', 5), 'ran');
      assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
      const lock = await stat(lockFile);
      assert.deepEqual([lock.mode & 0o777, lock.uid], [0o600, 0], 'a file of root only');
      const tried = await run('setpriv', asNobody('flock', '--nonblock', lockFile, 'true'));
      assert.notEqual(tried.code, 0, 'nobody cannot lock it');
      assert.match(tried.stderr, /Permission denied/);
    } finally {
      kill();
    }
  });
});
