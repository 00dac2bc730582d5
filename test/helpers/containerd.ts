// A real containerd (Debian's package, 1.6), standalone: its own root, state, socket and config, so nothing
// of the machine's containerd is touched. Its client, ctr, pulls the way kind's and k3s's containerd do:
// it resolves and fetches itself, reading HOSTS_DIR/REGISTRY/hosts.toml (--hosts-dir), and hands the
// content to the daemon.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, startProcess, waitFor, type RunResult, type Wrap } from './process.js';

export interface Containerd {
  /** The daemon's unix socket. */
  address: string;
  pid: number;
  /** `ctr` against this daemon, through `wrap` when given (a client inside the hub namespace). */
  ctr(args: string[], timeoutMs?: number): Promise<RunResult>;
  /** `ctr images pull --hosts-dir HOSTS_DIR REF`; throws with ctr's words when it fails. */
  pull(ref: string, hostsDir: string): Promise<void>;
  /** The references of the images the daemon holds. */
  images(): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startContainerd(dir: string, opts: { wrap?: Wrap } = {}): Promise<Containerd> {
  await mkdir(dir, { recursive: true });
  // Unix socket paths are limited to 108 bytes.
  const socketDir = await mkdtemp('/tmp/ctd-');
  const address = join(socketDir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = ${JSON.stringify(join(dir, 'root'))}`,
      `state = ${JSON.stringify(join(dir, 'state'))}`,
      // No CRI (no Kubernetes here), and nothing under the machine's /opt/containerd.
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(address)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${JSON.stringify(join(dir, 'opt'))}`,
      '',
    ].join('\n'),
  );
  const proc = startProcess('containerd', ['--config', config], join(dir, 'containerd.log'));
  const ctr = (args: string[], timeoutMs = 120_000) => {
    const plain = { command: 'ctr', args: ['--address', address, ...args] };
    const { command, args: wrapped } = opts.wrap ? opts.wrap(plain.command, plain.args) : plain;
    return run(command, wrapped, { timeoutMs });
  };
  try {
    await waitFor('containerd to answer', async () => (await ctr(['version'], 5_000)).code === 0, 30_000, 100, proc);
  } catch (error) {
    await proc.stop();
    await rm(socketDir, { recursive: true, force: true });
    throw error;
  }
  return {
    address,
    pid: proc.pid,
    ctr,
    async pull(ref, hostsDir) {
      // The native snapshotter unpacks on any filesystem (overlayfs cannot stack on the test's overlay /tmp).
      const pulled = await ctr(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', hostsDir, ref]);
      if (pulled.code !== 0) throw new Error(`ctr images pull ${ref} failed (${pulled.code}): ${pulled.stderr || pulled.stdout}`);
    },
    async images() {
      const listed = await ctr(['images', 'ls', '-q']);
      if (listed.code !== 0) throw new Error(`ctr images ls: ${listed.stderr}`);
      return listed.stdout.split('\n').filter(Boolean);
    },
    async stop() {
      await proc.stop();
      await rm(socketDir, { recursive: true, force: true });
    },
  };
}
