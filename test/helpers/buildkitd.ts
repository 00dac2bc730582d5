// A real BuildKit daemon (buildkitd, built from github.com/moby/buildkit by test/prerequisites.sh) as a buildx
// docker-container builder runs it: its config file is the one setup-buildx-action's `buildkitd-config` hands it
// (mounted as /etc/buildkit/buildkitd.toml there, --config here). Here it runs as a plain process: its own root
// (a fresh one is a fresh builder: no cache), its own socket, the OCI worker (runc, native snapshotter: overlayfs
// cannot stack on the test's overlay /tmp). `wrap` puts it in a network namespace: the hub namespace for a builder
// on the host's network (driver-opts network=host), a bridge's container namespace for one on Docker's bridge.
// buildctl, the client, talks to it over the socket only: it runs here, unwrapped. Nothing is written outside dir
// and a socket directory of its own.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { goTool } from './go-tools.js';
import { run, startProcess, waitFor, type RunResult, type Wrap } from './process.js';

/** Keep in step with BUILDKIT_VERSION in test/prerequisites.sh, which builds it. */
export const BUILDKIT_VERSION = 'v0.34.2';

export interface Buildkitd {
  pid: number;
  /** unix://SOCKET */
  address: string;
  root: string;
  logFile: string;
  /** buildctl against this daemon. */
  buildctl(args: string[], timeoutMs?: number): Promise<RunResult>;
  /**
   * `buildctl build --frontend dockerfile.v0` of `dockerfile` (with an empty context), its result exported as a
   * directory (so every layer of every stage it uses is fetched); throws with buildctl's words when it fails.
   */
  build(dockerfile: string, name: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startBuildkitd(dir: string, opts: { config: string; wrap?: Wrap }): Promise<Buildkitd> {
  const buildkitd = goTool('github.com/moby/buildkit', BUILDKIT_VERSION, 'cmd/buildkitd');
  const buildctl = goTool('github.com/moby/buildkit', BUILDKIT_VERSION, 'cmd/buildctl');
  await mkdir(dir, { recursive: true });
  // Unix socket paths are limited to 108 bytes.
  const socketDir = await mkdtemp('/tmp/bkd-');
  const address = `unix://${join(socketDir, 'buildkitd.sock')}`;
  const root = join(dir, 'root');
  const logFile = join(dir, 'buildkitd.log');
  const clientConfig = join(dir, 'docker-config'); // buildctl reads registry credentials from DOCKER_CONFIG: none here
  await mkdir(clientConfig, { recursive: true });
  const args = [
    ...['--config', opts.config, '--root', root, '--addr', address],
    // Its tracing socket too: by default it is the machine's /run/buildkit/otel-grpc.sock.
    ...['--otel-socket-path', join(socketDir, 'otel-grpc.sock')],
    ...['--oci-worker=true', '--containerd-worker=false', '--oci-worker-snapshotter=native', '--oci-worker-net=host'],
  ];
  const plain = { command: buildkitd, args };
  const launch = opts.wrap ? opts.wrap(plain.command, plain.args) : plain;
  const proc = startProcess(launch.command, launch.args, logFile, { graceMs: 10_000 });
  const ctl = (ctlArgs: string[], timeoutMs = 120_000) =>
    run(buildctl, ['--addr', address, ...ctlArgs], { timeoutMs, env: { ...process.env, DOCKER_CONFIG: clientConfig } });
  try {
    await waitFor('buildkitd to answer', async () => (await ctl(['debug', 'workers'], 5_000)).code === 0, 30_000, 200, proc);
  } catch (error) {
    await proc.stop();
    await rm(socketDir, { recursive: true, force: true });
    throw error;
  }
  return {
    pid: proc.pid,
    address,
    root,
    logFile,
    buildctl: ctl,
    async build(dockerfile, name) {
      const context = join(dir, `${name}-context`);
      await mkdir(context, { recursive: true });
      await writeFile(join(context, 'Dockerfile'), dockerfile);
      const out = join(dir, `${name}-out`);
      const built = await ctl(
        [
          'build',
          '--frontend',
          'dockerfile.v0',
          '--local',
          `context=${context}`,
          '--local',
          `dockerfile=${context}`,
          '--output',
          `type=local,dest=${out}`,
        ],
        180_000,
      );
      if (built.code !== 0)
        throw new Error(`buildctl build (${name}) failed (${built.code}): ${(built.stderr || built.stdout).slice(-3000)}`);
    },
    async stop() {
      await proc.stop();
      await rm(socketDir, { recursive: true, force: true });
    },
  };
}
