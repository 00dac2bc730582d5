// The test daemons are guests on the machine's network, as on a hosted runner, where docker0 is the system
// dockerd's bridge: each has a bridge of its own and leaves every other interface as it found it. The runner is
// stood in for by a network namespace of this test's with a docker0 of "someone else's" in it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDockerd } from '../helpers/dockerd.js';
import { ip, startNetns, type Netns } from '../helpers/netns.js';

/** Each interface with its addresses, one line each (`ip -4 -brief address`: link-local IPv6 addresses come by themselves), sorted. */
const interfaces = (text: string) =>
  text
    .split('\n')
    .map((l) =>
      l
        .trim()
        .split(/\s+/)
        .filter((w, i) => i !== 1)
        .join(' '),
    )
    .filter(Boolean)
    .sort();

describe("a test dockerd and the runner's own network", { timeout: 120_000 }, () => {
  let dir: string;
  let runner: Netns;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'host-network-'));
    runner = await startNetns('runnerns');
    // As the system dockerd leaves it on a runner with no container running: a bridge with the gateway, no carrier.
    await runner.ip('link', 'add', 'docker0', 'type', 'bridge');
    await runner.ip('addr', 'add', '172.17.0.1/16', 'dev', 'docker0');
    await runner.ip('link', 'set', 'docker0', 'up');
  });

  after(async () => {
    await runner?.stop();
    if (dir && !process.env.KEEP_TEST_DIRS) await rm(dir, { recursive: true, force: true });
  });

  test("a daemon started on the runner's network uses a bridge of its own, and docker0 is as it was after it", async () => {
    const before = interfaces(await runner.ip('-4', '-brief', 'address'));
    const dockerd = await startDockerd(join(dir, 'guest'), { netns: runner });
    try {
      const bridgeNetwork = JSON.parse((await dockerd.docker(['network', 'inspect', 'bridge', '--format', '{{json .Options}}'])).stdout);
      assert.equal(bridgeNetwork['com.docker.network.bridge.name'], dockerd.bridge, "the daemon's default network is on its own bridge");
      assert.deepEqual(
        interfaces(await runner.ip('-4', '-brief', 'address', 'show', 'docker0')),
        ['docker0 172.17.0.1/16'],
        'docker0 is there while it runs',
      );
    } finally {
      await dockerd.stop();
    }
    assert.deepEqual(
      interfaces(await runner.ip('-4', '-brief', 'address')),
      before,
      'the same interfaces with the same addresses: its bridge gone, docker0 kept',
    );
  });

  test('the hazard this guards against is real on this engine: with --bridge=none dockerd deletes docker0', async () => {
    const dockerd = await startDockerd(join(dir, 'bridge-none'), { netns: runner, extraArgs: ['--bridge=none'] });
    await dockerd.stop();
    assert.equal((await runner.ip('-brief', 'link', 'show', 'type', 'bridge')).match(/^docker0\s/m), null, 'docker0 deleted');
  });

  test("a daemon in this process's own namespace takes its bridge away again: the machine's interfaces are as they were", async () => {
    // Other test daemons on this machine may come and go meanwhile, each with a bridge named as this one's.
    const others = async () => interfaces(await ip('-4', '-brief', 'address')).filter((line) => !line.startsWith('pcbr'));
    const before = await others();
    const dockerd = await startDockerd(join(dir, 'here'));
    try {
      assert.match(await ip('-brief', 'link', 'show', 'dev', dockerd.bridge), new RegExp(`^${dockerd.bridge}\\s`));
    } finally {
      await dockerd.stop();
    }
    assert.deepEqual(await others(), before);
    assert.doesNotMatch(await ip('-brief', 'link'), new RegExp(`^${dockerd.bridge}\\s`, 'm'), 'its bridge is gone');
  });
});
