// The Docker daemon: point it at the mirror by a live reload (never a restart), and put it back as it was.
import * as core from '@actions/core';
import { randomBytes } from 'node:crypto';
import { access, mkdir, open, readdir, readFile, readlink, realpath, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { mapBounded, pollUntil } from './bounded.js';
import { builtInBuildkitNotice } from './builtin-buildkit.js';
import { hostsToml, type MirrorAddress } from './client-config.js';
import { withConfigLock } from './config-lock.js';
import {
  clearingMirrors,
  digestOf,
  DOCKERD_CONFIG,
  mirrorIsLive,
  namesMirror,
  hostsTomlReaders,
  otherMirrors,
  restoredConfig,
  withMirror,
  type HostsTomlReaders,
} from './daemon-config.js';
import { DOCKER_HUB } from './images.js';
import { warn } from './log.js';
import { CommandFailed, commandOutput, isRunning } from './processes.js';
import { isPullCacheMirror } from './registry.js';
import type { DaemonState, RegistryHostsFile } from './state.js';

/**
 * Points the dockerd that reads configPath at the mirrors (Docker Hub's in daemon.json, the others in certs.d), or,
 * with daemon-config `none`, touches no daemon and checks only whether the one at DOCKER_HOST names the mirror
 * already (a dind sidecar started with --registry-mirror). True when dockerd's Docker Hub pulls come through the cache.
 */
export async function pointDaemon(
  configPath: string | null,
  mirrors: MirrorAddress[],
  record: {
    daemon: (s: DaemonState | null) => void;
    registryHosts: (files: RegistryHostsFile[]) => void;
    builtInBuildkit: (notice: string) => void;
  },
): Promise<boolean> {
  const hub = mirrors.find((m) => m.registry === DOCKER_HUB);
  if (configPath === null) {
    if (!hub) return false;
    const live = await liveMirrors().catch(() => null);
    if (live && mirrorIsLive(live, hub.url)) core.info(`daemon-config is none: dockerd already pulls Docker Hub images through ${hub.url}`);
    else if (live)
      warn(
        `daemon-config is none, and the dockerd at ${process.env.DOCKER_HOST || 'the default socket'} does not name ${hub.url} among its registry-mirrors: its pulls go around the cache. Start it with --registry-mirror=${hub.url} (and set port).`,
      );
    return !!live && mirrorIsLive(live, hub.url);
  }
  if (hub) {
    await useMirror(configPath, hub.url, record.daemon);
    core.info(`dockerd now pulls Docker Hub images through ${hub.url}`);
    // Its own BuildKit may not see a mirror added by reload: the log and the report say so.
    const buildkit = builtInBuildkitNotice(await serverVersion(), hub.url);
    if (buildkit) {
      core.notice(buildkit);
      record.builtInBuildkit(buildkit);
    }
  }
  const others = mirrors.filter((m) => m.registry !== DOCKER_HUB);
  const hostsFiles = others.length ? await useRegistryHosts(configPath, others, record.registryHosts) : [];
  if (hostsFiles.length) {
    const names = hostsFiles.map((f) => f.registry).join(', ');
    core.info(
      hostsFiles.some((f) => f.buildkitOnly)
        ? `dockerd's BuildKit (\`docker build\`) now pulls ${names} images through their mirrors; \`docker pull\` of them goes around the cache (classic image store)`
        : `dockerd (containerd image store) now pulls ${names} images through their mirrors`,
    );
  }
  return !!hub;
}

/**
 * Merges the mirror into the daemon's config and reloads it; undoes its own change if the daemon does not take it.
 * `record` gets what post must undo as soon as there is something, and null once there is nothing left.
 */
export async function useMirror(configPath: string, mirror: string, record: (s: DaemonState | null) => void): Promise<void> {
  const pid = await findDockerd(configPath);
  await assertSameNetwork(pid, mirror);
  await withConfigLock(configPath, () => addMirror(configPath, pid, mirror, record));
}

async function addMirror(configPath: string, pid: number, mirror: string, record: (s: DaemonState | null) => void): Promise<void> {
  const original = await readConfig(configPath);
  await warnOfOtherJobsMirrors(configPath, original, mirror);
  const merged = withMirror(original?.toString('utf8') ?? null, mirror, configPath);
  const daemon: DaemonState = { configPath, original: original?.toString('base64') ?? null, written: digestOf(merged), pid, mirror };
  record(daemon);
  await writeAsRoot(configPath, merged);
  try {
    await reload(pid);
    await waitForMirrors(`the mirror to be listed by docker info after reloading dockerd (pid ${pid})`, (live) =>
      mirrorIsLive(live, mirror),
    );
  } catch (e) {
    await putBack(daemon).catch((r: Error) => {
      throw new Error(`${(e as Error).message}; putting ${configPath} back failed too (post tries again): ${r.message}`);
    });
    // Put back already: a second restore in post would only undo what the job's steps write to the file later.
    record(null);
    throw e;
  }
}

/**
 * On a host where jobs share one dockerd, the daemon tries every mirror its config lists: another job's pulls go
 * through this job's mirror (with its credentials, and the tags its cache restored), and this job's through theirs.
 * A mirror of this action tells itself by its instance header; one of another job already in the config is a warning.
 */
async function warnOfOtherJobsMirrors(configPath: string, config: Buffer | null, mirror: string): Promise<void> {
  const listed = otherMirrors(config?.toString('utf8') ?? null, mirror);
  const theirs = (await mapBounded(listed, 8, async (url) => ((await isPullCacheMirror(url)) ? [url] : []))).flat();
  if (theirs.length)
    warn(
      `${configPath} already names ${theirs.join(', ')}, the mirror of another job using pull-cache-action with this dockerd: the daemon tries every mirror it lists, so that job's pulls can go through this job's mirror (with this job's credentials and the tags its cache restored), and this job's through theirs. Give each job a dockerd of its own, or set daemon-config: none.`,
    );
}

/**
 * Takes the action's mirror out of daemon.json and reloads, so the mirror is gone from the file and the daemon.
 * The file main wrote goes back to the original byte for byte (or is removed when there was none); a file
 * changed since keeps every change, and only the mirror main added leaves it (see restoredConfig). When that
 * fails, the error says what is left for the user to take out: the mirror's port is free for anyone once post ends.
 */
export async function restoreDaemon(daemon: DaemonState): Promise<void> {
  try {
    await withConfigLock(daemon.configPath, () => putBack(daemon));
  } catch (e) {
    throw new Error(`${(e as Error).message}. ${await whatIsLeft(daemon)}`, { cause: e });
  }
}

/** After a put-back that failed: the line to take out of the file, or the reload still to do. */
async function whatIsLeft(daemon: DaemonState): Promise<string> {
  const text = (await readConfig(daemon.configPath).catch(() => null))?.toString('utf8') ?? '';
  const reload = `reload dockerd (sudo kill -HUP ${daemon.pid})`;
  return namesMirror(text, daemon.mirror)
    ? `${daemon.configPath} still names ${daemon.mirror}, whose port nothing of this job's serves once post ends and any local process may take: remove the line "${daemon.mirror}" from its "registry-mirrors" and ${reload}`
    : `${daemon.configPath} no longer names ${daemon.mirror}, but dockerd may still use it: ${reload}`;
}

async function putBack(daemon: DaemonState): Promise<void> {
  const saved = {
    original: daemon.original === null ? null : Buffer.from(daemon.original, 'base64'),
    written: daemon.written,
    mirror: daemon.mirror,
  };
  const final = restoredConfig(await readConfig(daemon.configPath), saved, daemon.configPath);
  try {
    if ((await isRunning(daemon.pid, isDockerd)) && (await isDaemonProcess(daemon.pid))) {
      // dockerd keeps its live mirrors when the key is merely absent on reload, so when the final config does
      // not name registry-mirrors, a copy of it that clears them explicitly is what gets reloaded.
      await writeAsRoot(daemon.configPath, clearingMirrors(final?.toString('utf8') ?? null, daemon.configPath) ?? final!);
      await reload(daemon.pid);
      await waitForMirrors('the mirror to leave docker info', (live) => !mirrorIsLive(live, daemon.mirror));
    }
  } finally {
    if (final === null) await removeAsRoot(daemon.configPath);
    else await writeAsRoot(daemon.configPath, final);
  }
}

async function readConfig(configPath: string): Promise<Buffer | null> {
  return readFile(configPath).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw new Error(`cannot read ${configPath}: ${e.message}`);
  });
}

/**
 * dockerd reads per-registry mirrors from certs.d beside its config file: with the containerd image store for its
 * pulls, and from Docker Engine 28 for its built-in BuildKit whatever the store. Where either reads them, writes
 * CERTS_DIR/HOST/hosts.toml for each mirror, except where the host already has one (the user's, kept). `record` gets
 * what was written as soon as it is, for post to remove. Nothing on an older engine with the classic image store.
 */
export async function useRegistryHosts(
  configPath: string,
  mirrors: MirrorAddress[],
  record: (files: RegistryHostsFile[]) => void,
  readers = async (): Promise<HostsTomlReaders> =>
    hostsTomlReaders(await dockerInfo('{{json .DriverStatus}}').catch(() => null), await serverVersion()),
): Promise<RegistryHostsFile[]> {
  const { pulls, buildkit } = await readers();
  if (!pulls && !buildkit) return [];
  const written: RegistryHostsFile[] = [];
  for (const mirror of mirrors) {
    const dir = join(dirname(configPath), 'certs.d', mirror.registry);
    const file = join(dir, 'hosts.toml');
    if (await exists(file)) continue;
    const createdDir = !(await exists(dir));
    await writeAsRoot(file, hostsToml(mirror));
    written.push({ registry: mirror.registry, file, createdDir, ...(pulls ? {} : { buildkitOnly: true }) });
    record(written);
  }
  return written;
}

/**
 * Removes the hosts.toml files useRegistryHosts wrote, and the directories it made for them; one that cannot go
 * does not keep the others, and the error at the end names every one left.
 */
export async function restoreRegistryHosts(files: RegistryHostsFile[]): Promise<void> {
  const left: string[] = [];
  for (const { file, createdDir } of files) {
    try {
      await removeAsRoot(file);
      if (createdDir) await removeDirAsRoot(dirname(file));
    } catch (e) {
      left.push((e as Error).message);
    }
  }
  if (left.length) throw new Error(`${left.length} of ${files.length} could not be removed: ${left.join('; ')}`);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** The images dockerd pulled since sinceMs, as each pull event names them; empty when the events cannot be read. */
export async function imagesPulledSince(sinceMs: number): Promise<string[]> {
  const args = [
    'events',
    '--since',
    String(Math.floor(sinceMs / 1000)),
    '--until',
    String(Math.ceil(Date.now() / 1000)),
    '--filter',
    'type=image',
    '--filter',
    'event=pull',
    '--format',
    '{{.Actor.ID}}',
  ];
  const out = await commandOutput('docker', args, { kind: 'docker', timeout: 10_000 }).catch(() => '');
  return [...new Set(out.split('\n').filter(Boolean))];
}

/**
 * The pid of the dockerd that reads configPath: named by --config-file, or its default path without the flag. Only a
 * daemon's process counts (see isDaemonProcess): what is picked here gets SIGHUP, through sudo when need be.
 */
export async function findDockerd(configPath: string): Promise<number> {
  const wanted = resolve(configPath);
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
    if (!isDockerd(argv) || !(await isDaemonProcess(Number(entry)))) continue;
    // Another user's process (root's dockerd, to a runner user) does not show its environment: it is no rootless one of ours.
    const environ = (await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
    if (resolve(daemonConfigOf(argv, environ)) === wanted) return Number(entry);
  }
  throw new Error(
    `no running dockerd reads ${configPath} (looked for --config-file ${configPath}, or none with a dockerd whose default it is); set daemon-config to the file your daemon reads`,
  );
}

/**
 * A dockerd in a network namespace of its own (rootless Docker's RootlessKit with slirp4netns, which also shuts out
 * the host's loopback) cannot reach the mirror: editing its config would only make every pull wait on a dead mirror.
 * A namespace this user may not read (root's dockerd) is taken to be the host's, where a rootful dockerd runs.
 */
async function assertSameNetwork(pid: number, mirror: string): Promise<void> {
  const [theirs, ours] = await Promise.all([
    readlink(`/proc/${pid}/ns/net`).catch(() => ''),
    readlink('/proc/self/ns/net').catch(() => ''),
  ]);
  if (theirs && ours && theirs !== ours) {
    throw new Error(
      `dockerd (pid ${pid}) runs in a network namespace of its own, as rootless Docker's RootlessKit makes with slirp4netns: ${mirror} is out of its reach, so its config was left alone. Run that daemon in the runner's network namespace, or point it at the mirror yourself and set daemon-config: none`,
    );
  }
}

/**
 * The config file a dockerd reads: its last --config-file, else its default. A rootless dockerd (run by
 * RootlessKit, which sets ROOTLESSKIT_STATE_DIR) defaults to $XDG_CONFIG_HOME/docker/daemon.json, or
 * $HOME/.config/docker/daemon.json; any other to /etc/docker/daemon.json.
 */
export function daemonConfigOf(argv: string[], environ: string[]): string {
  const flag = configFileOf(argv);
  if (flag) return flag;
  const env = (name: string) => environ.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1) ?? '';
  if (!env('ROOTLESSKIT_STATE_DIR')) return DOCKERD_CONFIG;
  return join(env('XDG_CONFIG_HOME') || join(env('HOME'), '.config'), 'docker', 'daemon.json');
}

/** The --config-file dockerd was started with; like dockerd, the last one given wins. */
export function configFileOf(argv: string[]): string | undefined {
  let file: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--config-file') file = argv[i + 1];
    else if (argv[i].startsWith('--config-file=')) file = argv[i].slice('--config-file='.length);
  }
  return file;
}

/** A command line that runs dockerd. */
function isDockerd(argv: string[]): boolean {
  return /(^|\/)dockerd$/.test(argv[0] ?? '');
}

/**
 * Anyone can name a process dockerd and give it --config-file: the daemon's is one whose every user id is root's,
 * or this user's (a rootless daemon), and whose program is a dockerd. A runner user may not read where root's
 * process's /proc/PID/exe points: that one's name is taken on root's word, as no other user can run as root.
 */
async function isDaemonProcess(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const exe = await readlink(`/proc/${pid}/exe`).catch((e: NodeJS.ErrnoException) => (isPermissionError(e) ? null : ''));
  return runsAsDaemon(uidsOf(status), exe, process.geteuid?.() ?? 0);
}

/** The real, effective, saved and file-system user ids in a /proc/PID/status; empty when it has none. */
export function uidsOf(status: string): number[] {
  return /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/m.exec(status)?.slice(1).map(Number) ?? [];
}

/**
 * Whether a process of user ids `uids`, running `exe` (where /proc/PID/exe points; null: not ours to read), may be
 * the daemon of a user whose id is `me`. A binary replaced while it runs reads "PATH (deleted)".
 */
export function runsAsDaemon(uids: number[], exe: string | null, me: number): boolean {
  if (!uids.length || !uids.every((uid) => uid === 0 || uid === me)) return false;
  if (exe === null) return uids.every((uid) => uid === 0);
  return basename(exe.replace(/ \(deleted\)$/, '')) === 'dockerd';
}

async function reload(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGHUP');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM')
      throw new Error(`cannot signal dockerd (pid ${pid}): ${(e as Error).message}`, { cause: e });
    await sudo(['kill', '-s', 'HUP', String(pid)]);
  }
}

/** The daemon's release, as `docker info` gives it (`20.10.24+dfsg1`); empty when docker info does not answer. */
async function serverVersion(): Promise<string> {
  const version = await dockerInfo('{{json .ServerVersion}}').catch(() => '');
  return typeof version === 'string' ? version : '';
}

/** The daemon's live mirrors. */
async function liveMirrors(): Promise<string[]> {
  return ((await dockerInfo('{{json .RegistryConfig.Mirrors}}')) as string[] | null) ?? [];
}

/** A field of `docker info`, parsed; a CLI that hangs is cut off, so every wait around it stays bounded. */
async function dockerInfo(format: string, timeoutMs = 5_000): Promise<unknown> {
  const stdout = await commandOutput('docker', ['info', '--format', format], { kind: 'docker', timeout: timeoutMs, killSignal: 'SIGKILL' });
  return JSON.parse(stdout.trim() || 'null');
}

async function waitForMirrors(what: string, ok: (live: string[]) => boolean, timeoutMs = 15_000): Promise<void> {
  let last: unknown;
  const seen = await pollUntil(
    async () => {
      try {
        return ok(await liveMirrors());
      } catch (e) {
        last = e;
        return false;
      }
    },
    timeoutMs,
    100,
  );
  if (!seen)
    throw new Error(
      `timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (${(last as Error).message})` : ''}; see the daemon's log`,
    );
}

/**
 * Replaces the file in one step: a temporary file beside it, synced, renamed over it. A crash leaves the old
 * file or the new one, never half of either. The file keeps its mode and owner (a new one gets 0644, owned by
 * whoever writes it: root through sudo); a symlink keeps pointing where it did, the file it names is replaced.
 * The daemon's config usually belongs to root: sudo when the runner user may not write it (hosted runners).
 */
export async function writeAsRoot(path: string, content: string | Buffer): Promise<void> {
  const target = await realpath(path).catch(() => path);
  const existing = await stat(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  const mode = existing ? existing.mode & 0o7777 : 0o644;
  const owner = existing && { uid: existing.uid, gid: existing.gid };
  const temp = join(dirname(target), `.${basename(target)}.pull-cache-${randomBytes(6).toString('hex')}`);
  const bytes = Buffer.from(content);
  try {
    await mkdir(dirname(target), { recursive: true });
    const handle = await open(temp, 'wx', mode);
    try {
      await handle.writeFile(bytes);
      await handle.chmod(mode); // past the umask
      if (owner) await handle.chown(owner.uid, owner.gid);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (e) {
    await rm(temp, { force: true }).catch(() => {});
    if (!isPermissionError(e)) throw e;
    await sudoWriteReplacing(target, temp, bytes, mode, owner ?? { uid: 0, gid: 0 });
  }
  await syncDir(dirname(target));
}

/** writeAsRoot through sudo: install (mode, owner) the content as the temporary file, sync it, rename it. */
async function sudoWriteReplacing(
  target: string,
  temp: string,
  bytes: Buffer,
  mode: number,
  owner: { uid: number; gid: number },
): Promise<void> {
  const staged = join(tmpdir(), `pull-cache-${randomBytes(6).toString('hex')}`);
  await writeFile(staged, bytes, { mode: 0o600, flag: 'wx' });
  try {
    await sudo(['mkdir', '-p', dirname(target)]);
    await sudo(['install', '-m', mode.toString(8), '-o', String(owner.uid), '-g', String(owner.gid), staged, temp]);
    await sudo(['sync', temp]);
    await sudo(['mv', '-f', '-T', temp, target]);
  } catch (e) {
    await sudo(['rm', '-f', temp]).catch(() => {});
    throw e;
  } finally {
    await rm(staged, { force: true });
  }
}

/** Makes a rename in dir durable; best effort (not every file system syncs directories). */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => null);
  await handle?.sync().catch(() => {});
  await handle?.close();
}

async function removeAsRoot(path: string): Promise<void> {
  try {
    await rm(path, { force: true });
  } catch (e) {
    if (!isPermissionError(e)) throw new Error(`cannot remove ${path}: ${(e as Error).message}`, { cause: e });
    await sudo(['rm', '-f', path]);
  }
}

async function removeDirAsRoot(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch (e) {
    if (!isPermissionError(e)) throw new Error(`cannot remove ${dir}: ${(e as Error).message}`, { cause: e });
    await sudo(['rmdir', dir]);
  }
}

function isPermissionError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EPERM';
}

async function sudo(args: string[]): Promise<void> {
  await commandOutput('sudo', ['-n', ...args], { timeout: 30_000 }).catch((e: Error) => {
    throw new Error(`sudo ${args[0]} failed: ${e instanceof CommandFailed ? e.stderr : e.message}`);
  });
  core.debug(`sudo ${args.join(' ')}`);
}
