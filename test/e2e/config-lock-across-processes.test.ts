// The lock that serialises the edits of one daemon.json by jobs of several runners on one host: sections never
// overlap, in one process or across processes; a holder that never lets go makes the wait end with an error naming
// the directory; a step killed while holding it leaves it free.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { withConfigLock } from '../../src/config-lock.js';
import { waitFor } from '../helpers/process.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('withConfigLock', { timeout: 60_000 }, () => {
  let dir: string;
  let config: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-lock-'));
    config = join(dir, 'daemon.json');
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

  test('a lock held by another process is waited for; one never let go ends the wait with an error naming the directory', async () => {
    // A process group of its own: flock and the sleep that inherits its lock end together, by the group's id.
    const holder = spawn('flock', ['--exclusive', dir, 'sleep', '30'], { stdio: 'ignore', detached: true });
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
        new RegExp(`another job held the lock on ${dir} for more than 1 s`),
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
});
