// Rootless Docker without a machine to spare: Debian's dockerd run by an unprivileged user (nobody, uid 65534) in a
// user and mount namespace of its own, as RootlessKit runs it (ROOTLESSKIT_STATE_DIR set, so dockerd takes its
// rootless defaults: config in ~/.config/docker, data in ~/.local/share/docker, socket in $XDG_RUNTIME_DIR). What
// is left out is RootlessKit's network namespace (slirp4netns): this daemon shares the host's, as with
// RootlessKit's --net=host. Also the action's steps as that user, so nothing of theirs may need root.
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, startProcess, waitFor, type RunResult, type Started, type Wrap } from './process.js';
import { DOCKER_CLI } from './dockerd.js';

export const NOBODY = 65534;

export interface RootlessUser {
  /** Everything of the user's is under it: home, runtime dir, RUNNER_TEMP, tool cache, the steps' files. */
  base: string;
  home: string;
  runtimeDir: string;
  /** The runner's RUNNER_TEMP and tool cache, the user's. */
  runnerTemp: string;
  toolCache: string;
  /** Runs a command as the user. */
  as: Wrap;
  /**
   * Makes a step's file commands (DIR/main and DIR/post: output, state, summary.md, as runStep names them) and hands
   * them to the user, as the runner does: runStep then truncates them, keeping their owner.
   */
  stepFiles(dir: string): Promise<void>;
  /** Every file and directory under base that the user does not own. */
  notOwned(): Promise<string[]>;
  /** Removes base, and the daemon's log beside it. */
  remove(): Promise<void>;
}

export async function rootlessUser(): Promise<RootlessUser> {
  const base = await mkdtemp('/tmp/rl-'); // short: the daemon's sockets live under it
  await chmod(base, 0o755);
  const home = join(base, 'home');
  const runtimeDir = join(base, 'run');
  const runnerTemp = join(base, 'temp');
  const toolCache = join(base, 'tool-cache');
  for (const dir of [home, runtimeDir, runnerTemp, toolCache]) await mkdir(dir, { recursive: true });
  await chownTree(base);
  const setpriv = ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups'];
  return {
    base,
    home,
    runtimeDir,
    runnerTemp,
    toolCache,
    // No shell in between: dash drops variables such as INPUT_REGISTRY-DOWNLOAD-URL, whose names it cannot spell.
    as: (command, args) => ({ command: 'setpriv', args: [...setpriv, command, ...args] }),
    async stepFiles(dir) {
      for (const phase of ['main', 'post']) {
        await mkdir(join(dir, phase), { recursive: true });
        for (const file of ['output', 'state', 'summary.md']) await writeFile(join(dir, phase, file), '');
      }
      await chownTree(dir);
    },
    remove: () => Promise.all([rm(base, { recursive: true, force: true }), rm(`${base}.dockerd.log`, { force: true })]).then(() => {}),
    notOwned: async () => {
      const out: string[] = [];
      for (const entry of await readdir(base, { recursive: true })) {
        const path = join(base, entry);
        const s = await lstat(path).catch(() => null);
        if (s && s.uid !== NOBODY) out.push(`${path} (uid ${s.uid})`);
      }
      return out;
    },
  };
}

async function chownTree(dir: string): Promise<void> {
  await chown(dir, NOBODY, NOBODY);
  for (const entry of await readdir(dir, { recursive: true })) await chown(join(dir, entry), NOBODY, NOBODY);
}

export interface RootlessDockerd {
  pid: number;
  /** unix://SOCKET, for DOCKER_HOST. */
  host: string;
  /** Where a rootless dockerd reads its config: ~/.config/docker/daemon.json. */
  configFile: string;
  logFile: string;
  docker(args: string[]): Promise<RunResult>;
  mirrors(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Starts the user's rootless dockerd with its defaults (no --config-file, no --data-root); with ownNetwork, in a
 * network namespace of its own, as RootlessKit's slirp4netns puts it (with only loopback, which is its own).
 */
export async function startRootlessDockerd(user: RootlessUser, opts: { ownNetwork?: boolean } = {}): Promise<RootlessDockerd> {
  const logFile = `${user.base}.dockerd.log`; // the test's, not the user's: beside its files
  const env = {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: user.home,
    XDG_RUNTIME_DIR: user.runtimeDir,
    ROOTLESSKIT_STATE_DIR: join(user.runtimeDir, 'rootlesskit'),
  };
  // /run of its own (dockerd makes /run/docker there); its socket's group is its own root group, nobody's outside.
  const script = 'mount -t tmpfs tmpfs /run && exec dockerd --iptables=false --bridge=none --storage-driver=vfs --group=root';
  const proc: Started = startProcess(
    'setpriv',
    [
      '--reuid',
      String(NOBODY),
      '--regid',
      String(NOBODY),
      '--clear-groups',
      'unshare',
      '--user',
      '--map-root-user',
      '--mount',
      ...(opts.ownNetwork ? ['--net'] : []),
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      script,
    ],
    logFile,
    { env, graceMs: 20_000 },
  );
  const host = `unix://${join(user.runtimeDir, 'docker.sock')}`;
  const docker = (args: string[]) =>
    run(DOCKER_CLI, args, { env: { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: join(user.base, 'cli') }, timeoutMs: 120_000 });
  const mntNs = async () => readlink(`/proc/${proc.pid}/ns/mnt`).catch(() => '');
  let ns = '';
  const daemon: RootlessDockerd = {
    pid: proc.pid,
    host,
    configFile: join(user.home, '.config', 'docker', 'daemon.json'),
    logFile,
    docker,
    mirrors: async () => {
      const r = await docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}']);
      if (r.code !== 0) throw new Error(`docker info: ${r.stderr}`);
      return (JSON.parse(r.stdout) as string[] | null) ?? [];
    },
    async stop() {
      await proc.stop();
      // dockerd ends its containerd on the way out; whatever is still in its namespace is ours to end.
      await waitFor(
        "the rootless daemon's processes to end",
        async () => {
          const left = ns ? await inNamespace(ns) : [];
          for (const pid of left) process.kill(pid, 'SIGKILL');
          return left.length === 0;
        },
        15_000,
      );
    },
  };
  try {
    await waitFor(
      'the rootless dockerd to answer',
      async () => (await docker(['info', '--format', '{{.ID}}'])).code === 0,
      30_000,
      100,
      proc,
    );
    ns = await mntNs();
  } catch (e) {
    await daemon.stop();
    throw new Error(`${(e as Error).message}; ${logFile}:\n${(await readFile(logFile, 'utf8').catch(() => '')).slice(-2000)}`, {
      cause: e,
    });
  }
  return daemon;
}

async function inNamespace(ns: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (/^\d+$/.test(name) && (await readlink(`/proc/${name}/ns/mnt`).catch(() => '')) === ns) pids.push(Number(name));
  }
  return pids;
}
