// The dockerd whose config the action edits, and which it sends SIGHUP (through sudo when need be), is found by its
// command line. Anyone can start a process named dockerd with --config-file: another user's, even from a binary named
// dockerd, or one of root's that runs another program under that name, is not picked and gets no signal.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { useMirror } from '../../src/daemon.js';
import { waitFor } from '../helpers/process.js';
import { NOBODY } from '../helpers/rootless.js';

const CONFIG = '{\n  "debug": false\n}\n';
/** A shell that waits for ever, with --config-file FILE after its script: as the daemon's command line reads. */
const posing = (config: string) => ['-c', 'while :; do sleep 0.2; done', '--config-file', config];

describe('a process named dockerd that is not the daemon', { timeout: 120_000 }, () => {
  let dir: string;
  let config: string;
  const dockerHost = process.env.DOCKER_HOST;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dockerd-impostor-'));
    await chmod(dir, 0o755);
    config = join(dir, 'daemon.json');
    // No daemon answers here: the old code's wait for the mirror to show in docker info ran out instead.
    process.env.DOCKER_HOST = `unix://${join(dir, 'no-daemon.sock')}`;
  });
  after(async () => {
    if (dockerHost === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = dockerHost;
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts `command` as the impostor; the test gets how it ended (null while it runs). */
  async function impostor(command: string, args: string[], options: { argv0?: string } = {}) {
    await writeFile(config, CONFIG);
    const child = spawn(command, args, { stdio: 'ignore', ...options });
    let ended: string | null = null;
    child.once('exit', (code, signal) => (ended = signal ?? `exit ${code}`));
    await waitFor(
      'the impostor to run',
      async () => (await readFile(`/proc/${child.pid}/cmdline`, 'utf8')).includes('--config-file'),
      5_000,
      20,
    );
    return {
      ended: () => ended,
      stop: () => {
        if (ended === null) child.kill('SIGKILL');
      },
    };
  }

  async function assertNotPicked(process: { ended: () => string | null }) {
    await assert.rejects(
      useMirror(config, 'http://127.0.0.1:9', () => {}),
      new RegExp(`no running dockerd reads ${config}`),
    );
    await new Promise((resolve) => setTimeout(resolve, 300)); // a signal sent would have ended it by now
    assert.equal(process.ended(), null, 'it got no signal');
    assert.equal(await readFile(config, 'utf8'), CONFIG, 'its config untouched');
  }

  test("another user's process, from a binary named dockerd: not picked", async () => {
    const binary = join(dir, 'dockerd');
    await copyFile('/bin/sh', binary);
    await chmod(binary, 0o755);
    const nobody = await impostor('setpriv', [
      '--reuid',
      String(NOBODY),
      '--regid',
      String(NOBODY),
      '--clear-groups',
      binary,
      ...posing(config),
    ]);
    try {
      await assertNotPicked(nobody);
    } finally {
      nobody.stop();
    }
  });

  test("root's process running another program under the name dockerd: not picked", async () => {
    const root = await impostor('/bin/sh', posing(config), { argv0: 'dockerd' });
    try {
      await assertNotPicked(root);
    } finally {
      root.stop();
    }
  });
});
