// A real Docker daemon (Debian's docker.io, dockerd 20.10; TEST_DOCKERD for another) for tests: its own data-root,
// exec-root, socket, pidfile, config file and bridge, no iptables, vfs storage (so the classic image store on every
// engine: an explicitly named graph driver wins over Docker 29's containerd default, moby
// daemon/image_store_choice.go). TEST_IMAGE_STORE=containerd names no graph driver instead, so an engine that has the
// containerd image store as its default (29 on its fresh data root) uses it, as a fresh install does. It starts its
// own managed containerd (dockerd does so when no system containerd socket is at /run/containerd/containerd.sock,
// which is covered below; checked here on 20.10).
//
// Its own bridge, not --bridge=none: with none, dockerd deletes any interface named docker0 in its network namespace
// (moby daemon/daemon_unix.go, removeDefaultBridgeInterface, 20.10 through 29), which on a hosted runner is the
// system dockerd's. A user-managed bridge (--bridge=NAME) is one dockerd neither creates nor deletes, and it then
// leaves docker0 alone (host-network.test.ts; seen here on 20.10.24 and on a 28.5.2 built from its Go module). The
// helper makes it, with an address of its own from 198.18.0.0/15 (RFC 2544's benchmark range: nobody's network), in
// the namespace the daemon runs in, and deletes it after the daemon.
//
// dockerd writes outside its directories: 20.10 creates its identity key at /etc/docker/key.json (not
// configurable on the command line), makes /run/docker/plugins, and containerd puts shim sockets under
// /run/containerd/s. To leave the machine's docker setup alone, the daemon runs in a private mount namespace
// (`unshare --mount --propagation private`, which execs: dockerd keeps the pid we spawned) where each of
// /etc/docker, /run/docker, /run/containerd that exists is covered by a bind mount of a directory under
// dir/ns/. Mounts the daemon makes stay inside that namespace and vanish with it. The daemon's /etc/docker/certs.d
// (per-registry hosts.toml) is the certs.d beside its config file, as on a host whose config is
// /etc/docker/daemon.json: the action writes hosts.toml files there (dirname(daemon-config)/certs.d).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { engineDockerd } from './engines.js';
import { ip, type NetworkPlace } from './netns.js';
import { run, startProcess, waitFor, type RunResult, type Started } from './process.js';

/** The docker CLI the helpers run: Debian's 20.10 CLI, the daemon's own version (override: TEST_DOCKER_CLI). */
export const DOCKER_CLI = process.env.TEST_DOCKER_CLI ?? '/usr/bin/docker';
/** The dockerd the tests run: TEST_DOCKERD names a binary, TEST_ENGINE=28 or 29 an engine built by the prerequisites. */
export const DOCKERD_BINARY =
  process.env.TEST_DOCKERD ?? (process.env.TEST_ENGINE ? engineDockerd(process.env.TEST_ENGINE) : '/usr/sbin/dockerd');
/** The image store asked of every test daemon: `classic` (vfs named) or `containerd` (no graph driver named). */
export const IMAGE_STORE: 'classic' | 'containerd' = process.env.TEST_IMAGE_STORE === 'containerd' ? 'containerd' : 'classic';

/** Host paths dockerd/containerd write to no matter what their flags say; hidden in the daemon's namespace. */
const SHARED_HOST_DIRS = ['/etc/docker', '/run/docker', '/run/containerd'];

export interface Dockerd {
  pid: number;
  /** Path of the API socket. */
  socket: string;
  /** unix://SOCKET, for DOCKER_HOST. */
  host: string;
  configFile: string;
  dir: string;
  dataRoot: string;
  execRoot: string;
  logFile: string;
  /** Its bridge (--bridge), made for it in its network namespace. */
  bridge: string;
  /** Milliseconds from spawn until `docker info` answered. */
  startMs: number;
  process: Started;
  /** Runs the docker CLI against this daemon; `env` adds to its environment (DOCKER_BUILDKIT=1, say). */
  docker(args: string[], options?: DockerCliOptions): Promise<RunResult>;
  /** `docker info --format '{{json .}}'`, parsed. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- docker's JSON, read a field at a time by the tests
  info(): Promise<any>;
  /** Stops the daemon, then anything left of it (containerd, shims, containers), its mounts and its exec-root. */
  stop(): Promise<void>;
}

export interface DockerCliOptions {
  timeoutMs?: number;
  input?: string | Buffer;
  env?: Record<string, string>;
  /**
   * Run the CLI in the daemon's network namespace too: a BuildKit build's client fetches the registry's tokens
   * itself, for the daemon's BuildKit.
   */
  besideDaemon?: boolean;
}

const live = new Set<Dockerd>();
/** SHARED_HOST_DIRS that did not exist before our first daemon: dockerd creates them; removed (if empty) after. */
const createdByUs = new Set<string>();

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export async function startDockerd(
  dir: string,
  opts: {
    configFile?: string;
    cli?: string;
    extraArgs?: string[];
    /** The dockerd to run (default DOCKERD_BINARY): another engine release. */
    binary?: string;
    /** The network namespace to run the daemon in (a HubNamespace, a Netns); default: this process's. */
    netns?: NetworkPlace;
  } = {},
): Promise<Dockerd> {
  if (!existsSync('/etc/docker')) {
    // Without it there is nothing to cover, and dockerd 20.10 would create /etc/docker/key.json.
    throw new Error('/etc/docker does not exist on this machine; refusing to start a dockerd that would create it');
  }
  await mkdir(dir, { recursive: true });
  const dataRoot = join(dir, 'data');
  const logFile = join(dir, 'dockerd.log');
  const pidFile = join(dir, 'dockerd.pid');
  const configFile = opts.configFile ?? join(dir, 'daemon.json');
  if (!existsSync(configFile)) await writeFile(configFile, '{}\n');
  // Unix socket paths are limited to 108 bytes; containerd's socket lives at EXECROOT/containerd/containerd.sock.
  const execRoot = await mkdtemp('/tmp/dkd-');
  const socket = join(execRoot, 'docker.sock');
  const host = `unix://${socket}`;
  const cli = opts.cli ?? DOCKER_CLI;
  const cliConfig = join(dir, 'cli-config'); // keep the CLI away from ~/.docker
  await mkdir(cliConfig, { recursive: true });

  const binds: string[] = [];
  for (const hostDir of SHARED_HOST_DIRS) {
    if (existsSync(hostDir)) {
      if (!createdByUs.has(hostDir)) {
        const own = join(dir, 'ns', hostDir.replace(/^\//, '').replace(/\//g, '-'));
        await mkdir(own, { recursive: true });
        binds.push(`mount --bind ${shellQuote(own)} ${shellQuote(hostDir)}`);
      }
    } else {
      createdByUs.add(hostDir);
    }
  }
  const certsDir = join(dirname(configFile), 'certs.d');
  await mkdir(certsDir, { recursive: true });
  await mkdir(join(dir, 'ns', 'etc-docker', 'certs.d'), { recursive: true });
  binds.push(`mount --bind ${shellQuote(certsDir)} /etc/docker/certs.d`);
  const script = [...binds, 'exec "$0" "$@"'].join(' && ');
  const bridge = await addBridge(opts.netns);
  const args = [
    '--iptables=false',
    `--bridge=${bridge}`,
    ...(IMAGE_STORE === 'classic' ? ['--storage-driver=vfs'] : []),
    `--data-root=${dataRoot}`,
    `--exec-root=${execRoot}`,
    `--host=${host}`,
    `--pidfile=${pidFile}`,
    `--config-file=${configFile}`,
    ...(opts.extraArgs ?? []),
  ];
  const env = { ...process.env };
  for (const key of ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH']) delete env[key];

  const started = Date.now();
  const unshare = {
    command: 'unshare',
    args: ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, opts.binary ?? DOCKERD_BINARY, ...args],
  };
  const launch = opts.netns ? opts.netns.wrap(unshare.command, unshare.args) : unshare;
  let proc: Started;
  try {
    proc = startProcess(launch.command, launch.args, logFile, { env, graceMs: 20_000 });
  } catch (error) {
    await ip(...inNetns(opts.netns), 'link', 'delete', bridge);
    throw error;
  }
  const cliEnv = { ...env, DOCKER_HOST: host, DOCKER_CONFIG: cliConfig };
  const docker = (cliArgs: string[], o: DockerCliOptions = {}) => {
    const { command, args } = o.besideDaemon && opts.netns ? opts.netns.wrap(cli, cliArgs) : { command: cli, args: cliArgs };
    return run(command, args, { env: { ...cliEnv, ...o.env }, timeoutMs: o.timeoutMs ?? 120_000, input: o.input });
  };
  const info = async () => {
    const r = await docker(['info', '--format', '{{json .}}'], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`docker info: ${r.code} ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  let mntNs = '';
  const daemon: Dockerd = {
    pid: proc.pid,
    socket,
    host,
    configFile,
    dir,
    dataRoot,
    execRoot,
    logFile,
    bridge,
    startMs: 0,
    process: proc,
    docker,
    info,
    stop: () => stopDockerd(daemon, mntNs, opts.netns),
  };
  try {
    await waitFor(
      `dockerd ${host}`,
      async () => (await docker(['info', '--format', '{{.ID}}'], { timeoutMs: 5_000 })).code === 0,
      30_000,
      100,
      proc,
    );
    daemon.startMs = Date.now() - started;
    mntNs = await readlink(`/proc/${proc.pid}/ns/mnt`);
    const written = Number((await readFile(pidFile, 'utf8')).trim());
    if (written !== proc.pid) throw new Error(`dockerd pidfile says ${written}, we started ${proc.pid}`);
  } catch (error) {
    if (!mntNs) mntNs = await readlink(`/proc/${proc.pid}/ns/mnt`).catch(() => '');
    live.add(daemon);
    await daemon.stop();
    const log = await readFile(logFile, 'utf8').catch(() => '');
    throw new Error(`${(error as Error).message}; see ${logFile}:\n${log.slice(-3000)}`, { cause: error });
  }
  live.add(daemon);
  return daemon;
}

interface ProcInfo {
  pid: number;
  ppid: number;
  mntNs: string;
}

async function listProcesses(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const statText = await readFile(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...; comm may contain spaces and parentheses
      const ppid = Number(statText.slice(statText.lastIndexOf(')') + 2).split(' ')[1]);
      const mntNs = await readlink(`/proc/${name}/ns/mnt`).catch(() => '');
      out.push({ pid: Number(name), ppid, mntNs });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Processes in our mount namespace (dockerd, containerd, shims) and all their descendants (containers). */
async function leftovers(mntNs: string): Promise<number[]> {
  // Never the host's namespace (a daemon that failed before unshare ran): that would be every process.
  if (!mntNs || mntNs === (await readlink('/proc/self/ns/mnt'))) return [];
  const procs = await listProcesses();
  const ours = new Set(procs.filter((p) => p.mntNs === mntNs && p.pid !== process.pid).map((p) => p.pid));
  for (let grew = true; grew;) {
    grew = false;
    for (const p of procs) {
      if (!ours.has(p.pid) && ours.has(p.ppid)) {
        ours.add(p.pid);
        grew = true;
      }
    }
  }
  return [...ours];
}

/** The ip command's arguments that address the namespace a daemon runs in. */
const inNetns = (netns?: NetworkPlace) => (netns ? ['-n', netns.name] : []);

/** Makes a bridge for one daemon in its network namespace (see the top of this file); returns its name. */
async function addBridge(netns?: NetworkPlace): Promise<string> {
  const random = randomBytes(6);
  const name = `pcbr${random.toString('hex', 0, 4)}`; // interface names are at most 15 bytes
  const address = `198.${18 + (random[4] & 1)}.${random[5]}.1/24`;
  await ip(...inNetns(netns), 'link', 'add', name, 'type', 'bridge');
  try {
    await ip(...inNetns(netns), 'addr', 'add', address, 'dev', name);
  } catch (error) {
    await ip(...inNetns(netns), 'link', 'delete', name);
    throw error;
  }
  return name;
}

async function stopDockerd(daemon: Dockerd, mntNs: string, netns?: NetworkPlace): Promise<void> {
  if (!live.has(daemon)) return;
  // On SIGTERM dockerd stops running containers with their stop timeout (10 s by default); kill them first.
  if (!daemon.process.ended()) {
    const running = await daemon.docker(['ps', '--quiet'], { timeoutMs: 10_000 });
    const ids = running.code === 0 ? running.stdout.split('\n').filter(Boolean) : [];
    if (ids.length) await daemon.docker(['kill', ...ids], { timeoutMs: 10_000 });
  }
  await daemon.process.stop();
  // dockerd stops its managed containerd on the way out; anything still in the namespace is ours to end.
  await waitFor(
    `processes of dockerd ${daemon.pid} to end`,
    async () => {
      const pids = await leftovers(mntNs);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      return pids.length === 0;
    },
    15_000,
    100,
  );
  // Nothing should be mounted in our namespace under data-root or exec-root (the daemon's were private);
  // unmount whatever is there anyway, deepest first.
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const points = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => [daemon.dataRoot, daemon.execRoot].some((root) => p === root || p.startsWith(`${root}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of points) {
    const r = await run('umount', ['--lazy', point], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`umount ${point}: ${r.stderr}`);
  }
  // A shim that was killed leaves its socket in /run/containerd/s (ours when /run/containerd was not covered):
  // containerd names it sha256(ADDRESS/NAMESPACE/ID), which includes our unique exec-root.
  const address = join(daemon.execRoot, 'containerd', 'containerd.sock');
  for (const id of await readdir(join(daemon.dataRoot, 'containers')).catch(() => [] as string[])) {
    const hash = createHash('sha256')
      .update(join(address, 'moby', id))
      .digest('hex');
    await rm(join('/run/containerd/s', hash), { force: true });
  }
  await rm(daemon.execRoot, { recursive: true, force: true });
  // Gone already when its namespace was deleted first.
  if (!netns || existsSync(`/run/netns/${netns.name}`)) await ip(...inNetns(netns), 'link', 'delete', daemon.bridge);
  live.delete(daemon);
  if (live.size === 0) for (const hostDir of createdByUs) await removeEmptyDirs(hostDir);
}

/** Removes dir and the directories under it, only as far as they are empty. */
async function removeEmptyDirs(dir: string): Promise<void> {
  const s = await stat(dir).catch(() => undefined);
  if (!s?.isDirectory()) return;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await removeEmptyDirs(join(dir, entry.name));
  }
  await rmdir(dir).catch(() => {});
}
